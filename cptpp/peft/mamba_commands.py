"""`cptpp mamba-search`: Optuna hybrid search over MambaPEFT methods on the commonsense sets."""
from __future__ import annotations

import argparse


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("mamba-search", help="hybrid MambaPEFT search (Optuna) on commonsense multiple choice",
                              description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None, help="local transformers Mamba checkpoint folder; default: a tiny random "
                   "byte-level Mamba briefly LM-trained here (numbers NOT comparable to the paper)")
    p.add_argument("--tasks", default="boolq,piqa,winogrande",
                   help="comma-separated: boolq,piqa,siqa,winogrande,arc-e,arc-c,obqa")
    p.add_argument("--trials", type=int, default=8, help="Optuna trial budget")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--limit", type=int, default=96, help="examples per task in train and test (valid: half); 0 = all")
    p.add_argument("--max-len", type=int, default=128, help="tokens per sequence (prompt left-truncated)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", required=True, help="folder for trials.jsonl, best.json and per-trial runs")
    p.set_defaults(func=run_search)


def run_search(args) -> int:
    from pathlib import Path

    from cptpp.config import ConfigError
    from cptpp.peft.mamba.experiment import finetune, load_base, load_splits, pretrain_tiny
    from cptpp.peft.mamba.search import hybrid_search
    from cptpp.peft.multiple_choice import COMMONSENSE
    from cptpp.train import TrainConfig
    from cptpp.train.loop import resolve_device

    tasks = [t for t in args.tasks.split(",") if t]
    for t in tasks:
        if t not in COMMONSENSE:
            raise ConfigError(f"--tasks: {t!r} is not valid; choose from: {', '.join(COMMONSENSE)}")
    if args.trials < 1:
        raise ConfigError("--trials must be >= 1")
    device = resolve_device(args.device)
    splits = load_splits(tasks, args.seed, limit=args.limit or None)
    base = load_base(args.model, seed=args.seed, device=str(device))
    print(f"base: {base.description}")
    print("data: fine-tune on a seeded half of each set, test on the other half (no commonsense_170k here)")
    if args.model is None:
        pretrain_tiny(base, splits, max_len=args.max_len, seed=args.seed)
    out = Path(args.out)
    counter = iter(range(10**6))

    def run(cfg, lr):
        train = TrainConfig(epochs=args.epochs, lr=lr, metric="accuracy", seed=args.seed, progress=False,
                            out=str(out / f"trial_{next(counter):03d}"))
        return finetune(base, splits, cfg, train, batch_size=args.batch_size, max_len=args.max_len)

    best = hybrid_search(run, args.trials, out, seed=args.seed)
    print(f"best of {best['completed']} trials: {best['methods']} lr={best['lr']:.2e} "
          f"valid={best['valid']['accuracy']:.4f} test={best['test']['accuracy']:.4f} "
          f"params={best['trainable_params']} ({best['trainable_percent']:.2f}%)")
    print(f"wrote {out / 'trials.jsonl'} and {out / 'best.json'}")
    return 0
