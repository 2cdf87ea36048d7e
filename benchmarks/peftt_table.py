"""PEFTT on TNCC-title: linear probe vs full fine-tuning vs prompt tuning vs adapters vs prompt + adapter, over seeds.

    python benchmarks/peftt_table.py --seeds 0,1 --runs runs/peftt_table          # then, if killed: add --resume

Recorded command (Gemma 3 270M, the model whose tokenizer reads Tibetan best, see the comparison the table
prints; two seeds; estimated ~1.9 CPU-hours at one thread, see the sizing notes below). Its options are the
defaults:

    nohup nice -n 19 python benchmarks/peftt_table.py --model gemma3-270m --seeds 0,1 \
        --methods probe,prompt,adapter,prompt+adapter --max-train 800 --max-valid 200 --max-test 0 \
        --max-length 64 --epochs 1 --threads 1 --runs runs/peftt_table --resume > runs/peftt_table.log 2>&1 &

The backbone is chosen by how its tokenizer reads the training titles (:func:`cptpp.peft.tncc.tokenizer_coverage`,
printed for every ``--compare-tokenizers`` model, with the published spaces and with the tsheg restored):
Gemma 3's 262k vocabulary has no unknown token on them and 2.75 tokens per syllable with the tsheg (3.97 with
spaces); SmolLM2's byte-level BPE also knows every byte but needs 7.7; multilingual-e5 (XLM-R) maps 48% of the
tokens to <unk>, MiniLM 21%. The published titles have their syllable delimiter replaced by spaces, so
``--tsheg restore`` (the pipeline's default) writes it back before tokenizing.

Protocol: the published train/validation/test split (train and valid stratified-subsampled, seeded, when capped;
``--max-test 0`` keeps the whole test split); the epoch is chosen on validation, test is reported once, beside
the majority class of the training split and the best constant answer on the test labels. Every cut is written
into the results. The probe is a linear head on the frozen backbone's last-token states, computed once.

Each (method, seed) is one `cptpp peftt` run (``cptpp.peft.pipelines.peftt``) in ``--runs``/<method>-seed<seed>;
``--resume`` continues killed runs and reads finished ones back (a finished run is never redone). CPU time per
run comes from its timing.json. Needs ``cptpp`` importable (``pip install -e .``) and ``$CPTPP_DATA_MIRROR``.

Sizing notes (gemma3-270m, one thread, nice 19 beside two busy processes, 2026-12-03; CPU seconds): with the
tsheg restored a title with its question is 54 tokens at the median (p90 74, p99 96; cut at 64). A training
step of 8 titles costs ~10.8 ms per token with adapters (4.7 s for 432 tokens), ~13.8 with prompt + adapter
(6.0 s, 10 prompt positions per title uncounted); a forward pass ~5.3 ms per token (the probe's features,
every evaluation). Per seed: probe ~9 min (one forward pass over 800 + 200 + 927 titles), prompt ~17,
adapter ~14, prompt+adapter ~17 (one epoch over 800 titles, validation once, the 927 test titles once): ~56
min, two seeds ~1.9 CPU-hours. The whole training split (7,422 titles) does not fit beside the other methods:
one adapter epoch over it is ~75 CPU-minutes; ``full`` (AdamW over 268M parameters) is left out for the same
reason.

Writes benchmarks/results/peftt_table.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from cptpp.peft.pipelines.peftt import METHODS, PefttRunConfig, run_peftt
from cptpp.peft.pipelines.seeds import (best_constant, clearly_above, cpu_minutes, format_mean_std, run_or_read,
                                        write_table)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CANDIDATES = "gemma3-270m,smollm2-135m-instruct,multilingual-e5-small,all-minilm-l6-v2"


def tokenizer_comparison(models: list[str], texts: list[str]) -> dict[str, dict]:
    """Per model that is installed: :func:`tokenizer_coverage` of ``texts`` as published (spaces) and with the
    tsheg restored. Only tokenizers are loaded."""
    from transformers import AutoTokenizer

    from cptpp.config import ConfigError
    from cptpp.models import resolve_model
    from cptpp.peft.tncc import restore_tsheg, tokenizer_coverage

    out = {}
    for name in models:
        try:
            src = resolve_model(name)
        except (ConfigError, FileNotFoundError) as e:
            print(f"tokenizer comparison: skipping {name} ({e})", flush=True)
            continue
        tok = AutoTokenizer.from_pretrained(src.path, **src.kwargs())
        out[name] = {"spaces": tokenizer_coverage(tok, texts),
                     "tsheg": tokenizer_coverage(tok, [restore_tsheg(t) for t in texts])}
    return out


def constant_baselines(data: dict) -> dict[str, float]:
    """Accuracy / macro-F1 on test of the training split's majority class, and the best constant answer on test."""
    import numpy as np

    from cptpp.peft.tncc import LABELS, tncc_metrics

    train = [t.label for t in data["train"]]
    gold = [t.label for t in data["test"]]
    majority = max(range(len(LABELS)), key=train.count)
    maj = tncc_metrics(np.full(len(gold), majority), np.array(gold))
    best_acc, _ = best_constant(gold, lambda p, g: tncc_metrics(p, g)["accuracy"], range(len(LABELS)))
    best_f1, _ = best_constant(gold, lambda p, g: tncc_metrics(p, g)["macro_f1"], range(len(LABELS)))
    return {"majority_accuracy": maj["accuracy"], "majority_macro_f1": maj["macro_f1"],
            "best_constant_accuracy": best_acc, "best_constant_macro_f1": best_f1}


def markdown(results: dict) -> str:
    """The README table from a results dict (also usable on a saved peftt_table.json)."""
    a = argparse.Namespace(**results["settings"])
    base = results["baselines"]
    md = [f"**TNCC-title** ({a.model}, {results['architecture']}; test accuracy / macro-F1 x100, mean ± std over "
          f"seeds {a.seeds}; ✓ = accuracy mean - 2 std above the best constant answer)\n",
          "| method | trainable params | % of base | lr | CPU min / run | accuracy | macro-F1 | > baseline |",
          "|---|---:|---:|---:|---:|---:|---:|:-:|",
          f"| majority class of train | 0 | | | 0 | {100 * base['majority_accuracy']:.1f} | "
          f"{100 * base['majority_macro_f1']:.1f} | |",
          f"| best constant answer on test | 0 | | | 0 | {100 * base['best_constant_accuracy']:.1f} | "
          f"{100 * base['best_constant_macro_f1']:.1f} | |"]
    for method, r in results["methods"].items():
        md.append(f"| {method} | {r['trainable_params']:,} | {r['trainable_percent']:.3g}% | {r['lr']:g} | "
                  f"{cpu_minutes(r['cpu_seconds'])} | {format_mean_std(r['accuracy'])} | "
                  f"{format_mean_std(r['macro_f1'])} | {'✓' if r['clearly_above_baseline'] else ''} |")
    md += ["", "Tokenizers on the training titles (unknown-token fraction, tokens per syllable; published spaces "
           "-> tsheg restored):", "", "| model | [UNK] spaces | [UNK] tsheg | tokens/syllable spaces | "
           "tokens/syllable tsheg | tokens/title tsheg | titles sharing their tokens, tsheg |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for name, c in results["tokenizers"].items():
        sp, ts = c["spaces"], c["tsheg"]
        md.append(f"| {name} | {100 * sp['unk_fraction']:.0f}% | {100 * ts['unk_fraction']:.0f}% | "
                  f"{sp['tokens_per_syllable']:.2f} | {ts['tokens_per_syllable']:.2f} | {ts['tokens_per_text']:.0f} | "
                  f"{100 * ts['collided_fraction']:.0f}% |")
    sizes = results["sizes"]
    md.append(f"\nSubsamples (stratified, seeded; 0 = all): train {sizes['train']}, valid {sizes['valid']}, test "
              f"{sizes['test']} titles; --tsheg {a.tsheg}; titles cut to {a.max_length} tokens (with the question); "
              f"{a.epochs} epoch(s), batch {a.batch_size}, AdamW; adapters {a.adapter_kind} r={a.reduction_factor}; "
              f"prompt {a.prompt_tokens} tokens; {results['cpu_seconds_total'] / 60:.1f} CPU-minutes in this "
              "session.\n")
    return "\n".join(md)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gemma3-270m", help="a model registry name or a local checkpoint folder")
    p.add_argument("--methods", default="probe,prompt,adapter,prompt+adapter", help=f"any of {', '.join(METHODS)}")
    p.add_argument("--seeds", default="0,1", help="comma-separated; one run per (method, seed)")
    p.add_argument("--tsheg", default="restore", choices=("restore", "keep"))
    p.add_argument("--compare-tokenizers", default=CANDIDATES, help="models whose tokenizers the table compares")
    p.add_argument("--max-train", type=int, default=800, help="0: the whole training split")
    p.add_argument("--max-valid", type=int, default=200)
    p.add_argument("--max-test", type=int, default=0)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr-full", type=float, default=5e-5)
    p.add_argument("--lr-probe", type=float, default=1e-2)
    p.add_argument("--epochs-probe", type=int, default=30, help="the probe trains on cached features: cheap")
    p.add_argument("--lr-prompt", type=float, default=3e-2)
    p.add_argument("--lr-adapter", type=float, default=3e-3, help="adapter and prompt+adapter")
    p.add_argument("--prompt-tokens", type=int, default=10)
    p.add_argument("--adapter-kind", default="houlsby")
    p.add_argument("--reduction-factor", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=None, help="folder for the `cptpp peftt` run folders (default: "
                   "runs/peftt_table-<time>)")
    p.add_argument("--resume", action="store_true", help="continue killed runs in --runs, read finished ones")
    p.add_argument("--out", default=str(RESULTS), help="folder for peftt_table.{json,md}")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.process_time()
    runs = Path(args.runs or time.strftime("runs/peftt_table-%Y%m%d-%H%M%S"))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    lrs = {"full": args.lr_full, "probe": args.lr_probe, "prompt": args.lr_prompt, "adapter": args.lr_adapter,
           "prompt+adapter": args.lr_adapter}
    rows, first, baselines = {}, None, []
    from cptpp.peft.tncc import load_tncc

    train_titles = [t.text for t in load_tncc(seed=seeds[0])["train"]]  # the whole published training split
    tokenizers = tokenizer_comparison([m for m in args.compare_tokenizers.split(",") if m], train_titles)
    for name, c in tokenizers.items():
        print(f"tokenizer {name}: " + "; ".join(f"{k} {100 * v['unk_fraction']:.0f}% unknown, "
                                                f"{v['tokens_per_syllable']:.2f} tokens/syllable" for k, v in c.items()),
              flush=True)

    for method in [m for m in args.methods.split(",") if m]:
        per_seed = []
        for seed in seeds:
            cfg = PefttRunConfig(model=args.model, method=method, seed=seed, train_size=args.max_train,
                                 valid_size=args.max_valid, test_size=args.max_test, max_len=args.max_length,
                                 epochs=args.epochs_probe if method == "probe" else args.epochs,
                                 batch_size=args.batch_size, lr=lrs[method], tsheg=args.tsheg,
                                 prompt_tokens=args.prompt_tokens, adapter_kind=args.adapter_kind,
                                 reduction_factor=args.reduction_factor)
            res, timing = run_or_read("peftt", cfg, runs / f"{method}-seed{seed}", run_peftt, args.resume)
            first = first or res
            per_seed.append({**res, "cpu_seconds": timing.get("cpu_seconds")})
            print(f"{method} seed {seed}: acc={res['test']['accuracy']:.3f} macro_f1={res['test']['macro_f1']:.3f} "
                  f"params={res['trainable_params']:,} ({timing.get('cpu_seconds', float('nan')):.0f} CPU s)",
                  flush=True)
        rows[method] = {"seeds": seeds, "accuracy": [r["test"]["accuracy"] for r in per_seed],
                        "macro_f1": [r["test"]["macro_f1"] for r in per_seed],
                        "valid_macro_f1": [r["valid"]["macro_f1"] for r in per_seed],
                        "trainable_params": per_seed[0]["trainable_params"],
                        "trainable_percent": per_seed[0]["trainable_percent"], "lr": per_seed[0]["lr"],
                        "cpu_seconds": [r["cpu_seconds"] for r in per_seed]}
    for seed in seeds:
        baselines.append(constant_baselines(load_tncc(seed=seed, max_train=args.max_train or None,
                                                      max_valid=args.max_valid or None,
                                                      max_test=args.max_test or None)))
    base = {k: sum(b[k] for b in baselines) / len(baselines) for k in baselines[0]}
    for r in rows.values():
        r["clearly_above_baseline"] = clearly_above(r["accuracy"], base["best_constant_accuracy"])
    settings = {k: v for k, v in vars(args).items() if k not in ("runs", "resume", "out")}
    results = {"model": args.model, "architecture": first["architecture"], "settings": settings,
               "tokenizers": tokenizers, "sizes": first["sizes"], "baselines": base, "methods": rows,
               "cpu_seconds_total": time.process_time() - t_all}
    write_table(args.out, "peftt_table", results, markdown(results))
    return results


if __name__ == "__main__":
    main()
