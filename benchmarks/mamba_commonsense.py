"""MambaPEFT secondary table: commonsense multiple choice (LM likelihood), full FT vs each method vs the best hybrid.

The primary table is ``benchmarks/mamba_table.py`` (tasks a small byte-level Mamba can learn); this one is kept
because the paper reports these sets, but a small byte-level base only reaches "always the first choice" here.
One seed (``--seed``).

    python benchmarks/mamba_commonsense.py                      # tiny random byte-level Mamba (minutes on 2 cores)
    cptpp mamba-pretrain --out runs/mamba-byte --minutes 25 --threads 1 && \
        python benchmarks/mamba_commonsense.py --model runs/mamba-byte --max-len 384 --limit 64  # a 2.7M-param Mamba pre-trained here
    python benchmarks/mamba_commonsense.py --model PATH --limit 0 --max-len 512 --epochs 3 --trials 20

Data: BoolQ/PIQA/WinoGrande by default (any of boolq,piqa,siqa,winogrande,arc-e,arc-c,obqa), LLM-Adapters
format. No commonsense_170k or HellaSwag copy exists here, so each set is split by a seed: one half
fine-tunes (10% of it for validation/model selection), the other half is the test set. Scoring is by
LM likelihood of the answer label. Without --model the base is a tiny random Mamba briefly LM-trained on
the fine-tuning prompts: its numbers only show that the pipeline runs and are NOT comparable to the
paper (Mamba-1.4B: full FT 53.0, Additional-scan 53.5, Affix 53.9, LoRA in_proj-x 53.7).
With a byte-level checkpoint from ``cptpp mamba-pretrain`` a token is a byte: prompts are 300-500 bytes
and are left-truncated to --max-len, so 128 keeps little more than the answer format; use 384 or more.
The pre-training record of such a base (its marker file) goes into the json's meta.
Writes benchmarks/results/mamba_commonsense.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from cptpp.io import write_json
from cptpp.peft.mamba.experiment import finetune, load_base, load_splits, pretrain_tiny
from cptpp.peft.mamba.pretrain import byte_lm_info
from cptpp.peft.mamba.search import SINGLE_METHODS, hybrid_search
from cptpp.train import TrainConfig
from cptpp.train.loop import resolve_device

# (row name, config or None for full fine-tuning, learning rate)
METHODS = [("full fine-tuning", None, 1e-3)] + [(name, cfg, lr) for _, name, cfg, lr in SINGLE_METHODS]


def _shown(path: Path) -> str:
    """``path`` relative to the repo root when inside it: no machine's absolute path in the results."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="local transformers Mamba checkpoint (default: tiny random)")
    p.add_argument("--tasks", default="boolq,piqa,winogrande")
    p.add_argument("--limit", type=int, default=64, help="examples per task in train and test (valid: half); 0 = all")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--trials", type=int, default=4, help="hybrid search trials")
    p.add_argument("--max-len", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    device = resolve_device(args.device)
    tasks = [t for t in args.tasks.split(",") if t]

    t0 = time.perf_counter()
    splits = load_splits(tasks, args.seed, limit=args.limit or None)
    base = load_base(args.model, seed=args.seed, device=str(device))
    print(f"base: {base.description}")
    print(f"data: {', '.join(tasks)}; seeded halves (fine-tune/test); sizes "
          + ", ".join(f"{k}={len(v)}" for k, v in splits.items()))
    if args.model is None:
        pre = pretrain_tiny(base, splits, max_len=args.max_len, seed=args.seed)
        print(f"tiny base LM-trained: held-out loss {-pre['valid']['neg_loss']:.3f} nats/byte")

    def train_cfg(lr):
        return TrainConfig(epochs=args.epochs, lr=lr, metric="accuracy", seed=args.seed, progress=False, patience=0)

    def scores(res):
        return {"valid": res["valid"]["accuracy"], "test": res["test"]["accuracy"],
                "valid_nll": res["valid"]["choice_nll"], "test_nll": res["test"]["choice_nll"],
                "test_per_task": {k.split("/", 1)[1]: v for k, v in res["test"].items() if "/" in k}}

    rows = []
    for name, cfg, lr in METHODS:
        t = time.perf_counter()
        res = finetune(base, splits, cfg, train_cfg(lr), max_len=args.max_len)
        rows.append({"method": name, "config": None if cfg is None else cfg.methods(), "lr": lr,
                     "trainable_params": res["trainable_params"], "trainable_percent": res["trainable_percent"],
                     **scores(res), "seconds": time.perf_counter() - t})
        print(f"{name:45s} params={res['trainable_params']:>8d} ({res['trainable_percent']:6.2f}%) "
              f"valid={rows[-1]['valid']:.4f} test={rows[-1]['test']:.4f} test_nll={rows[-1]['test_nll']:.4f}")

    out = Path(args.out)
    best = hybrid_search(lambda cfg, lr: finetune(base, splits, cfg, train_cfg(lr), max_len=args.max_len),
                         args.trials, out / "mamba_search", seed=args.seed)
    rows.append({"method": f"best hybrid ({args.trials} Optuna trials)", "config": best["methods"], "lr": best["lr"],
                 "trainable_params": best["trainable_params"], "trainable_percent": best["trainable_percent"],
                 **scores(best)})
    print(f"{rows[-1]['method']:45s} params={best['trainable_params']:>8d} ({best['trainable_percent']:6.2f}%) "
          f"valid={best['valid']['accuracy']:.4f} test={best['test']['accuracy']:.4f}  {best['methods']}")

    meta = {"base": base.description, "base_pretraining": byte_lm_info(args.model) if args.model else None,
            "tasks": tasks, "split": "seeded half fine-tune (10% of it valid) / half test",
            "sizes": {k: len(v) for k, v in splits.items()}, "args": {**vars(args), "out": _shown(out)},
            "device": str(device), "torch": torch.__version__, "seconds": time.perf_counter() - t0}
    write_json(out / "mamba_commonsense.json", {"meta": meta, "rows": rows})
    lines = [f"Base: {base.description}. Tasks: {', '.join(tasks)} (seeded half fine-tune / half test; "
             f"test n={len(splits['test'])}). Accuracy by LM likelihood of the answer label; choice NLL = mean "
             "-log softmax over the choices' scores at the gold one (lower is better; ln 2 = 0.693 for an "
             "indifferent model on two-choice sets). Model selection on valid accuracy.", "",
             "| method | trainable params | % of base | valid acc | test acc | valid choice NLL | test choice NLL |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['method']} | {r['trainable_params']:,} | {r['trainable_percent']:.2f} | {r['valid']:.3f} | "
              f"{r['test']:.3f} | {r['valid_nll']:.4f} | {r['test_nll']:.4f} |" for r in rows]
    (out / "mamba_commonsense.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'mamba_commonsense.json'} and {out / 'mamba_commonsense.md'} ({meta['seconds']:.0f}s)")
    print(json.dumps({"best_hybrid": best["config"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
