"""`cptpp xprompt | topro | peftt | prompt-attention`: the PEFT pipelines of :mod:`cptpp.peft.pipelines`.

Every command takes ``--out DIR`` (the run folder: config.json, metrics.jsonl, results.json, stages/),
``--resume`` (continue a killed run there, to the same results) and ``--config FILE`` (a JSON object of
options; command-line options override it); the other options are the fields of the pipeline's config.
"""
from __future__ import annotations

import importlib
import json

# command -> (module, config class, run function, one-line help)
PIPELINES = {
    "xprompt": ("cptpp.peft.pipelines.xprompt", "XPromptRunConfig", "run_xprompt",
                "XPrompt on a SuperGLUE task: prompt tuning, then token/piece pruning with rewinding"),
    "topro": ("cptpp.peft.pipelines.topro", "ToProRunConfig", "run_topro",
              "ToPro (or a fine-tuning / prompt-tuning baseline) on PAN-X NER or UD-POS, zero-shot cross-lingual"),
    "peftt": ("cptpp.peft.pipelines.peftt", "PefttRunConfig", "run_peftt",
              "PEFTT on TNCC-title: full, prompt, adapter or prompt+adapter tuning"),
    "prompt-attention": ("cptpp.peft.pipelines.prompt_attention", "PromptAttentionRunConfig", "run_prompt_attention",
                         "prompt-attention vs self-attention vs linear models on the contextual mixture"),
}
RUN_KEYS = ("func", "command", "out", "resume", "config", "threads")


def add_commands(subparsers) -> None:
    from cptpp.config import add_dataclass_options

    for command, (module, cls_name, _, help_line) in PIPELINES.items():
        mod = importlib.import_module(module)
        p = subparsers.add_parser(command, help=help_line, description=mod.__doc__)
        p.add_argument("--out", required=True, metavar="DIR",
                       help="run folder: config.json, metrics.jsonl, results.json and one folder per stage")
        p.add_argument("--resume", action="store_true", help="continue the run in --out (finished stages are skipped)")
        p.add_argument("--config", default=None, metavar="FILE", help="JSON object of options (overridden by the CLI)")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        add_dataclass_options(p, getattr(mod, cls_name))
        p.set_defaults(func=run_command)


def run_command(args) -> int:
    from cptpp.config import ConfigError, build_configs, load_json_config

    module, cls_name, fn_name, _ = PIPELINES[args.command]
    mod = importlib.import_module(module)
    file_values = load_json_config(args.config) if args.config else {}
    cli_values = {k: v for k, v in vars(args).items() if k not in RUN_KEYS}
    (cfg,) = build_configs((getattr(mod, cls_name),), file_values, cli_values, source=args.config or "command line")
    if args.threads < 0:
        raise ConfigError(f"--threads {args.threads} must be >= 0")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = getattr(mod, fn_name)(cfg, args.out, resume=args.resume)
    summary = {k: results[k] for k in ("task", "method", "seed", "test", "scores") if k in results}
    print(json.dumps({"command": args.command, "out": args.out, **summary}, sort_keys=True))
    return 0
