"""`cptpp mamba-search`: Optuna hybrid search over MambaPEFT methods on the commonsense sets;
`cptpp mamba-pretrain`: a byte-level Mamba LM pre-trained here, to use as their base (`--model DIR`)."""
from __future__ import annotations

import argparse

PRETRAIN_HELP = """Pre-train a byte-level Mamba LM (UTF-8 bytes, vocab 257) for a bounded time (--minutes, --steps)
and save it to --out as a transformers checkpoint for `cptpp mamba-search --model OUT` and
`benchmarks/mamba_table.py --model OUT` (and `benchmarks/mamba_commonsense.py`). Defaults: 2,694,144 parameters.

Text (from $CPTPP_DATA_MIRROR/text, about 4.3 MB): SuperGLUE MultiRC, RTE, WiC, CB, COPA and WSC train+val
text fields, UD-POS and PAN-X English training sentences and TNCC-title training titles (no tags or labels; not
their validation/test text, which benchmarks/mamba_table.py evaluates on). BoolQ is left out (its validation
split is the commonsense BoolQ set), and so is everything under commonsense-llm-adapters. A seeded 2%
of documents is held out; the held-out loss (nats/byte) is reported every --eval-every steps, each evaluation
writes out/train/checkpoint.pt (the shared training loop's run folder), and --resume continues a killed run
(or a finished one with a larger budget). For a run over several sessions give a step budget and --minutes 0:
the LR schedule follows the budget, and a time budget counts every session's minutes."""


SEARCH_HELP = ("Optuna (TPE) hybrid search over MambaPEFT methods (LoRA targets, additional scan, affix tokens, "
               "partial tuning) and their learning rate, on commonsense multiple-choice sets; trials are ranked "
               "on validation accuracy, the best one is tested once.\n\n"
               "The run folder --out holds search.json (the options), study.db (the Optuna study), trials.jsonl "
               "(validation numbers per trial), best.json and one training run per trial; --resume continues a "
               "killed search with the same options (finished trials are kept; --trials may grow).")
PROGRESS_HELP = ("progress bar (--no-progress: no bar and no per-step lines) "
                 "(default: a bar on a terminal; plain lines when stderr is redirected)")
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda or cuda:N"
SEARCH_KEYS = ("model", "tasks", "trials", "epochs", "limit", "max_len", "batch_size", "seed")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("mamba-search", help="hybrid MambaPEFT search (Optuna) on commonsense multiple choice",
                              description=SEARCH_HELP)
    p.add_argument("--model", default=None, metavar="NAME|PATH",
                   help="local transformers Mamba checkpoint folder or a model registry name (`cptpp models list`) "
                        "(default: a tiny random byte-level Mamba "
                        "briefly LM-trained here; its numbers are NOT comparable to the paper)")
    p.add_argument("--tasks", default="boolq,piqa,winogrande", metavar="TASK,...",
                   help="comma-separated, from: boolq, piqa, siqa, winogrande, arc-e, arc-c, obqa "
                        "(default: boolq,piqa,winogrande)")
    p.add_argument("--trials", type=int, default=8, help="Optuna trial budget (default: 8)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs per trial (default: 2)")
    p.add_argument("--limit", type=int, default=96,
                   help="examples per task in train and test (valid: half); 0 = all (default: 96)")
    p.add_argument("--max-len", type=int, default=128,
                   help="tokens per sequence (the prompt is left-truncated) (default: 128)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per batch (default: 16)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the data halves, the sampler and training (default: 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + " (default: auto)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: search.json, study.db, trials.jsonl, best.json and per-trial runs (required)")
    p.add_argument("--resume", action="store_true",
                   help="continue the search in --out (same options; finished trials are kept)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON object of these options (keys with _, e.g. max_len); options given here win")
    p.set_defaults(func=run_search)
    p.config_file_defaults = True  # --config FILE sets the defaults of the options above (cptpp.cli)

    from cptpp.config import add_dataclass_options
    from cptpp.peft.mamba.pretrain_config import PretrainConfig

    p = subparsers.add_parser("mamba-pretrain", description=PRETRAIN_HELP,
                              help="pre-train a small byte-level Mamba LM on the mirror's English text")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder; the final model is saved in it (load it with --model OUT) (required)")
    p.add_argument("--resume", action="store_true", help="continue OUT/train/checkpoint.pt")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON object of the options below (keys with _); options given here override it")
    p.add_argument("--device", default="auto", help=DEVICE_HELP + " (default: auto)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=PROGRESS_HELP)
    add_dataclass_options(p, PretrainConfig)
    p.set_defaults(func=run_pretrain)


def run_pretrain(args) -> int:
    import torch

    from cptpp.config import ConfigError, build_configs, load_json_config
    from cptpp.peft.mamba.pretrain import pretrain
    from cptpp.peft.mamba.pretrain_config import PretrainConfig
    from cptpp.train.loop import resolve_device

    run_keys = ("func", "command", "out", "resume", "config", "device", "threads", "progress")
    file_values = load_json_config(args.config) if args.config else {}
    (cfg,) = build_configs((PretrainConfig,), file_values, {k: v for k, v in vars(args).items() if k not in run_keys},
                           source=args.config or "command line")
    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads} must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    _, info = pretrain(cfg, args.out, resume=args.resume, device=resolve_device(args.device),
                       progress=args.progress)
    print(f"saved {args.out}: {info['parameters']:,} parameters, {info['bytes_seen']:,} bytes seen in {info['steps']} "
          f"steps, held-out loss {info['heldout_loss']:.4f} nats/byte")
    return 0


def run_search(args) -> int:
    import json
    from pathlib import Path

    from cptpp.config import ConfigError
    from cptpp.io import write_json
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
    out = Path(args.out)
    options = {k: getattr(args, k) for k in SEARCH_KEYS}
    saved = out / "search.json"
    if args.resume and not (out / "study.db").exists():
        raise ConfigError(f"--resume: no search to continue in {out} (no study.db); drop --resume to start one")
    if args.resume and saved.exists():
        before = json.loads(saved.read_text())
        diff = [f"--{k.replace('_', '-')} {before.get(k)!r} in the run, {v!r} now"
                for k, v in options.items() if k != "trials" and before.get(k) != v]  # a larger budget is fine
        if diff:
            raise ConfigError(f"--resume: the options differ from the search in {out}: {'; '.join(diff)}")
    elif (out / "study.db").exists() and not args.resume:
        raise ConfigError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    device = resolve_device(args.device)
    splits = load_splits(tasks, args.seed, limit=args.limit or None)
    base = load_base(args.model, seed=args.seed, device=str(device))
    print(f"base: {base.description}")
    print("data: fine-tune on a seeded half of each set, test on the other half (no commonsense_170k here)")
    if args.model is None:
        pretrain_tiny(base, splits, max_len=args.max_len, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(saved, options)
    # trial folders continue after those of a killed session
    counter = iter(range(len(list(out.glob("trial_*"))), 10**6))

    def run(cfg, lr):
        train = TrainConfig(epochs=args.epochs, lr=lr, metric="accuracy", seed=args.seed, progress=False,
                            out=str(out / f"trial_{next(counter):03d}"))
        return finetune(base, splits, cfg, train, batch_size=args.batch_size, max_len=args.max_len)

    best = hybrid_search(run, args.trials, out, seed=args.seed, resume=args.resume)
    print(f"best of {best['completed']} trials: {best['methods']} lr={best['lr']:.2e} "
          f"valid={best['valid']['accuracy']:.4f} test={best['test']['accuracy']:.4f} "
          f"params={best['trainable_params']} ({best['trainable_percent']:.2f}%)")
    print(f"wrote {out / 'trials.jsonl'} and {out / 'best.json'}")
    return 0
