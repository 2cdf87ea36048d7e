"""ToPro vs token-classification fine-tuning vs prompt tuning vs a linear probe, cross-lingual (train en, zero-shot).

    python benchmarks/topro_table.py --seeds 0,1 --runs runs/topro_table            # then, if killed: add --resume

Recorded command (multilingual-e5-small: its XLM-R vocabulary reads every PAN-X / UD-POS language of the
mirror; two seeds; estimated ~2 CPU-hours at one thread, see the sizing notes below). Its options are the
defaults:

    nohup nice -n 19 python benchmarks/topro_table.py --model multilingual-e5-small --seeds 0,1 \
        --methods probe,finetune,prompt,topro --max-train 1000 --max-eval 80 --epochs 1 \
        --words-per-sentence 2 --threads 1 --runs runs/topro_table --resume > runs/topro_table.log 2>&1 &

Protocol: train on English, select the epoch on English validation, test once (English test) and zero-shot
on the other languages (PAN-X: labelled dev files, since XTREME's test files carry no tags; English dev is
halved into valid/test. UD-POS: test files; German = UD German-GSD test). Metrics: entity F1 (NER), token
accuracy (POS). Beside the methods, the best constant tag per evaluation set (for NER every constant tag has
an entity F1 near 0; for POS it is the most frequent tag's share). The probe is a per-token linear head on
the frozen encoder's first-sub-token states, computed once: the reference row. multilingual-e5-small ships no
MLM head, so ToPro's verbalizer head is a fresh transform over the label words' (tied) input-embedding rows.

Each (task, method, seed) is one `cptpp topro` run (``cptpp.peft.pipelines.topro``) in
``--runs``/<task>-<method>-seed<seed>; ``--resume`` continues killed runs and reads finished ones back (a
finished run is never redone). CPU time per run comes from its timing.json. Needs ``cptpp`` importable
(``pip install -e .``) and ``$CPTPP_DATA_MIRROR`` (or the cache).

Sizing notes (multilingual-e5-small, one thread, nice 19 beside two busy processes, 2026-12-03; CPU seconds;
English PAN-X sentences have 5.5 words at the median): a fine-tuning step of 8 sentences costs 2.6 s (AdamW over
118M parameters, 96M of them the 250k-row embedding), a prompt-tuning step 0.6 s, a ToPro step (one packed
batch of <= 512 prompted tokens) 3.4 s, and ToPro evaluates every word as its own prompted copy (~0.5 s per
NER sentence; UD-POS sentences are ~3x longer). Per seed: NER probe ~1 + prompt ~3 + finetune ~7 + ToPro ~14
(train 2,000 copies, 8 evaluation sets of 80) = ~25 min; UD-POS ~1.5 + 3 + 8 + ~26 = ~38 min; two seeds ~2.1
CPU-hours. ``--words-per-sentence`` 2 and one epoch are what fits: the paper's setting (every word, several
epochs) multiplies ToPro's training cost by ~3 per epoch.

Writes benchmarks/results/topro_table.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from cptpp.peft.pipelines.seeds import (clearly_above, cpu_minutes, format_mean_std, protocol_over_seeds,
                                        run_or_read, write_table)
from cptpp.peft.pipelines.topro import METHODS, METRIC, ToProRunConfig, run_topro

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def constant_tag_scores(task: str, splits) -> dict[str, float]:
    """Per evaluation set (en = the English test split, and each zero-shot language): the best score of one
    tag predicted for every word."""
    from cptpp.peft.tagging_data import TAGS, tagging_metrics

    metric = METRIC[task]
    sets = {"en": splits.test, **splits.zero_shot}
    out = {}
    for lang, sents in sets.items():
        gold = [list(s.tags) for s in sents]
        out[lang] = max(tagging_metrics(task, gold, [[t] * len(g) for g in gold])[metric] for t in TAGS[task])
    return out


def summarize(runs: list[dict], langs: list[str], baseline: dict[str, float]) -> dict:
    """One (task, method) over seeds: per-language values, the non-English average per seed, and whether the
    English test score and the non-English average beat the constant baseline by 2 std."""
    scores = {lang: [r["scores"][lang] for r in runs] for lang in langs}
    other = [lang for lang in langs if lang != "en"]
    avg = [sum(r["scores"][lang] for lang in other) / len(other) for r in runs] if other else []
    base_avg = sum(baseline[lang] for lang in other) / len(other) if other else 0.0
    return {"seeds": [r["seed"] for r in runs], "scores": scores, "avg_non_en": avg,
            "trainable_params": runs[0]["trainable_params"], "cpu_seconds": [r["cpu_seconds"] for r in runs],
            "unk_rate": runs[0]["unk_rate"],
            "clearly_above_baseline": {"en": clearly_above(scores["en"], baseline["en"]),
                                       "avg_non_en": clearly_above(avg, base_avg) if other else False}}


def markdown(results: dict) -> str:
    lines = []
    for task_name, block in results["tasks"].items():
        langs = block["languages"]
        metric = "entity F1" if task_name == "ner" else "accuracy"
        base = block["baseline"]
        other = [lang for lang in langs if lang != "en"]
        lines.append(f"**{'PAN-X NER' if task_name == 'ner' else 'UD-POS'}** ({metric} x100, mean ± std over seeds "
                     f"{results['settings']['seeds']}; train en, zero-shot others; ✓ = mean - 2 std above the best "
                     f"constant tag; {block['protocol']})\n")
        lines.append("| method | trainable params | CPU min / run | " + " | ".join(langs) + " | avg (non-en) |")
        lines.append("|---|---:|---:|" + "---:|" * (len(langs) + 1))
        base_avg = sum(base[lang] for lang in other) / max(len(other), 1)
        lines.append("| best constant tag | 0 | 0 | " + " | ".join(f"{100 * base[lang]:.1f}" for lang in langs)
                     + f" | {100 * base_avg:.1f} |")
        for method, r in block["methods"].items():
            mark = r["clearly_above_baseline"]
            cells = [format_mean_std(r["scores"][lang]) + (" ✓" if lang == "en" and mark["en"] else "")
                     for lang in langs]
            avg = format_mean_std(r["avg_non_en"]) + (" ✓" if mark["avg_non_en"] else "")
            lines.append(f"| {method} | {r['trainable_params']:,} | {cpu_minutes(r['cpu_seconds'])} | "
                         + " | ".join(cells) + f" | {avg} |")
        unk = next(iter(block["methods"].values()))["unk_rate"]
        lines.append("| sub-tokens that are unknown | | | " + " | ".join(f"{100 * unk[lang]:.0f}%" for lang in langs)
                     + " | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="multilingual-e5-small", help="a model registry name or a local MLM / "
                   "seq2seq checkpoint folder")
    p.add_argument("--tasks", default="ner,pos")
    p.add_argument("--ner-langs", default="de,sw,ru,ar,hi,zh")
    p.add_argument("--pos-langs", default="de,zh,ar,hi,ja")
    p.add_argument("--methods", default="probe,finetune,prompt,topro", help=f"any of {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0,1", help="comma-separated; one run per (task, method, seed)")
    p.add_argument("--max-train", type=int, default=1000)
    p.add_argument("--max-eval", type=int, default=80)
    p.add_argument("--words-per-sentence", type=int, default=2, help="ToPro copies per training sentence per epoch")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--epochs-probe", type=int, default=10, help="the probe trains on cached features: cheap")
    p.add_argument("--lr", type=float, default=5e-5, help="full fine-tuning (ToPro, finetune)")
    p.add_argument("--prompt-lr", type=float, default=1e-2)
    p.add_argument("--probe-lr", type=float, default=1e-2)
    p.add_argument("--prompt-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=512, help="ToPro copies x length per forward pass")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=None, help="folder for the `cptpp topro` run folders (default: "
                   "runs/topro_table-<time>)")
    p.add_argument("--resume", action="store_true", help="continue killed runs in --runs, read finished ones")
    p.add_argument("--out", default=str(RESULTS), help="folder for topro_table.{json,md}")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from cptpp.peft.tagging_data import load_tagging_splits

    t0 = time.process_time()
    runs = Path(args.runs or time.strftime("runs/topro_table-%Y%m%d-%H%M%S"))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    settings = {k: v for k, v in vars(args).items() if k not in ("runs", "resume", "out")}
    results = {"model": args.model, "settings": settings, "tasks": {}}
    for task_name in [t for t in args.tasks.split(",") if t]:
        langs = [x for x in (args.ner_langs if task_name == "ner" else args.pos_langs).split(",") if x]
        baselines = [constant_tag_scores(task_name, load_tagging_splits(
            task_name, langs, seed=s, max_train=args.max_train or None, max_eval=args.max_eval or None))
            for s in seeds]
        baseline = {lang: sum(b[lang] for b in baselines) / len(baselines) for lang in ["en", *langs]}
        block = {"languages": ["en", *langs], "baseline": baseline, "methods": {}}
        for method in [m for m in args.methods.split(",") if m]:
            per_seed = []
            for seed in seeds:
                cfg = ToProRunConfig(model=args.model, task=task_name, method=method, langs=langs, seed=seed,
                                     train_size=args.max_train, eval_size=args.max_eval, max_len=args.max_length,
                                     epochs=args.epochs_probe if method == "probe" else args.epochs, lr=args.lr,
                                     prompt_lr=args.prompt_lr, probe_lr=args.probe_lr,
                                     prompt_tokens=args.prompt_tokens, batch_size=args.batch_size,
                                     max_tokens=args.max_tokens, words_per_sentence=args.words_per_sentence)
                res, timing = run_or_read("topro", cfg, runs / f"{task_name}-{method}-seed{seed}", run_topro,
                                          args.resume)
                per_seed.append({**res, "seed": seed, "cpu_seconds": timing.get("cpu_seconds")})
                block["protocol"] = protocol_over_seeds(res["protocol"])
                print(f"{task_name} {method} seed {seed}: " + " ".join(f"{k}={100 * v:.1f}"
                                                                       for k, v in res["scores"].items())
                      + f" ({timing.get('cpu_seconds', float('nan')):.0f} CPU s)", flush=True)
            block["methods"][method] = summarize(per_seed, block["languages"], baseline)
        results["tasks"][task_name] = block
    results["cpu_seconds_total"] = time.process_time() - t0
    s = argparse.Namespace(**settings)
    md = markdown(results) + (f"\nModel: {s.model}; {s.epochs} epochs ({s.epochs_probe} for the probe); train "
                              f"{s.max_train} English sentences (ToPro: {s.words_per_sentence} word copies per "
                              f"sentence per epoch); every evaluation set <= {s.max_eval} sentences; "
                              f"{results['cpu_seconds_total'] / 60:.1f} CPU-minutes in this session.\n")
    write_table(args.out, "topro_table", results, md)
    return results


if __name__ == "__main__":
    main()
