"""ToPro vs vanilla token-classification fine-tuning vs soft prompt tuning, cross-lingual (train en, zero-shot).

    .venv/bin/python benchmarks/topro_table.py                       # defaults: MiniLM, NER + POS, ~5 CPU-minutes
    .venv/bin/python benchmarks/topro_table.py --model /path/to/xlm-roberta-base --max-train 2000 --max-eval 2000

Protocol: train on English, select the epoch on English validation, test once (English test) and zero-shot
on the other languages (PAN-X: labelled dev files, since XTREME's test files carry no tags; English dev is
halved into valid/test. UD-POS: test files; German = UD German-GSD test). Metrics: entity F1 (NER), token
accuracy (POS).

The default model is all-MiniLM-L6-v2, a 6-layer English-vocabulary sentence encoder whose MLM head is
not shipped: ToPro's verbalizer head is a fresh transform over the label words' (tied) input-embedding
rows. Its uncased English WordPiece vocabulary reads Latin script (de, sw) with English sub-words, holds
only single characters of Cyrillic/Arabic/Devanagari (words are read letter by letter, few [UNK]) and maps
about half of the Chinese and a quarter of the Japanese sub-tokens to [UNK]; the measured [UNK] rate per
language is in the table. These numbers
are for a small English model under a few CPU minutes, far from the paper's XLM-R / mT5 setting. Every
subsample is written into the results.

Each (task, method) is one `cptpp topro` run (``cptpp.peft.pipelines.topro``) in ``--runs`` (default
``runs/topro_table-<time>/<task>-<method>-seed<seed>``); ``--runs DIR --resume`` continues a killed table.
Needs ``cptpp`` importable (``pip install -e .``) and ``$CPTPP_DATA_MIRROR`` (or the cache).

Writes benchmarks/results/topro_table.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from cptpp.io import write_json
from cptpp.peft.pipelines.topro import METHODS, ToProRunConfig, run_topro

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_method(args, task_name: str, method: str, langs: list[str], runs: Path) -> dict:
    """One `cptpp topro` run with the table's settings."""
    cfg = ToProRunConfig(model=args.model, task=task_name, method=method, langs=langs, seed=args.seed,
                         train_size=args.max_train, eval_size=args.max_eval, max_len=args.max_length,
                         epochs=args.epochs, lr=args.lr, prompt_lr=args.prompt_lr, prompt_tokens=args.prompt_tokens,
                         batch_size=args.batch_size, max_tokens=args.max_tokens,
                         words_per_sentence=args.words_per_sentence)
    t0 = time.process_time()
    res = run_topro(cfg, runs / f"{task_name}-{method}-seed{args.seed}", resume=args.resume)
    return {**res, "cpu_seconds": time.process_time() - t0}


def markdown(results: dict) -> str:
    lines = []
    for task_name, block in results["tasks"].items():
        langs = block["languages"]
        metric = "entity F1" if task_name == "ner" else "accuracy"
        lines.append(f"**{'PAN-X NER' if task_name == 'ner' else 'UD-POS'}** ({metric} x100; train en, zero-shot "
                     f"others; {block['protocol']})\n")
        lines.append("| method | trainable params | " + " | ".join(langs) + " | avg (non-en) |")
        lines.append("|---|---:|" + "---:|" * (len(langs) + 1))
        order = [m for m in METHODS if m in block["methods"]]  # saved JSON sorts keys
        for method, r in ((m, block["methods"][m]) for m in order):
            other = [r["scores"][lang] for lang in langs if lang != "en"]
            cells = " | ".join(f"{100 * r['scores'][lang]:.1f}" for lang in langs)
            lines.append(f"| {method} | {r['trainable_params']:,} | {cells} | {100 * sum(other) / len(other):.1f} |")
        unk = next(iter(block["methods"].values()))["unk_rate"]
        rates = " | ".join(f"{100 * unk[lang]:.0f}%" for lang in langs)
        lines.append(f"| sub-tokens that are [UNK] | | {rates} | |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="minilm", help="minilm or a local MLM / seq2seq checkpoint path")
    p.add_argument("--tasks", default="ner,pos")
    p.add_argument("--ner-langs", default="de,sw,ru,ar,hi,zh")
    p.add_argument("--pos-langs", default="de,zh,ar,hi,ja")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-train", type=int, default=120)
    p.add_argument("--max-eval", type=int, default=40)
    p.add_argument("--words-per-sentence", type=int, default=4, help="ToPro copies per training sentence per epoch")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4, help="full fine-tuning (ToPro, vanilla)")
    p.add_argument("--prompt-lr", type=float, default=1e-2)
    p.add_argument("--prompt-tokens", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=512, help="ToPro copies x length per forward pass")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=None, help="folder for the `cptpp topro` run folders (default: "
                   "runs/topro_table-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --runs (a killed table)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.process_time()
    runs = Path(args.runs or time.strftime("runs/topro_table-%Y%m%d-%H%M%S"))
    settings = {k: v for k, v in vars(args).items() if k not in ("runs", "resume")}
    results = {"model": args.model, "settings": settings, "tasks": {}}
    for task_name in args.tasks.split(","):
        langs = [x for x in (args.ner_langs if task_name == "ner" else args.pos_langs).split(",") if x]
        block = {"languages": ["en", *langs], "methods": {}}
        for method in args.methods.split(","):
            r = run_method(args, task_name, method, langs, runs)
            block["protocol"] = r["protocol"]
            block["methods"][method] = r
            print(f"{task_name} {method}: " + " ".join(f"{k}={100 * v:.1f}" for k, v in r["scores"].items())
                  + f" ({r['cpu_seconds']:.0f} CPU s)", flush=True)
        results["tasks"][task_name] = block
    results["cpu_seconds_total"] = time.process_time() - t0
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "topro_table.json", results)
    md = markdown(results) + (f"\nModel: {args.model}; {args.epochs} epochs; train {args.max_train} English "
                              f"sentences (ToPro: {args.words_per_sentence} word copies per sentence per epoch); "
                              f"every evaluation set <= {args.max_eval} sentences; seed {args.seed}; "
                              f"{results['cpu_seconds_total'] / 60:.1f} CPU-minutes.\n")
    (RESULTS / "topro_table.md").write_text(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
