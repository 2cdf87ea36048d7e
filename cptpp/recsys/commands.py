"""`cptpp train`: train a recommender (MF, LightGCN, SGL, SimGCL, XSimGCL) with the shared loop."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

from cptpp.config import ConfigError, add_dataclass_options, build_configs, from_dict, load_json_config
from cptpp.recsys.config import (MODELS, DataConfig, PromptTuneConfig, RecConfig, RecTrainConfig,
                                 check_ranking_metric)

CONFIG_CLASSES = (DataConfig, RecConfig, RecTrainConfig)


CONFIG_HELP = "JSON file of flat key: value pairs (keys are the option names with _); options given here override it"
PRETRAIN_RECOMMENDERS = ("sgl", "simgcl", "xsimgcl")


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a recommender and report validation/test ranking metrics",
                       description=f"Train a recommender ({', '.join(MODELS)}) on a dataset and report Recall, "
                                   "NDCG, Precision, HitRate and MRR at --ks on validation (best epoch) and test "
                                   "(once, at that epoch). The run folder --out holds config.json, metrics.jsonl, "
                                   "checkpoints and results.json; --resume continues it. Every option can also "
                                   "come from --config FILE.")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    add_dataclass_options(p, *CONFIG_CLASSES)
    p.set_defaults(func=run_train)

    p = sub.add_parser("pretrain", help="CPTPP stage 1: contrastive pre-training only; saves a reusable encoder",
                       description="Pre-train a LightGCN encoder with a contrastive objective alone "
                                   "(no recommendation loss) and save it to OUT/encoder.pt for `cptpp prompt-tune "
                                   "--pretrained OUT`. The saved encoder is the one of the epoch with the best "
                                   "validation metric (--save best, the default) or of the last epoch "
                                   "(--save last); results.json's best_epoch says which epoch that was.")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--recommender", choices=PRETRAIN_RECOMMENDERS,
                   help="contrastive objective over the LightGCN encoder (required, here or in --config)")
    p.add_argument("--save", choices=("best", "last"), default="best",
                   help="which epoch's encoder to save (and test): best = highest validation metric, "
                        "last = the final epoch (default: best)")
    add_dataclass_options(p, *CONFIG_CLASSES, skip=("recommender", "mode", "restore_best"),
                          defaults={"epochs": "10 (the reference code's pre-training length)"})
    p.set_defaults(func=run_pretrain)

    p = sub.add_parser("prompt-tune", help="CPTPP stage 2: personalized prompts on a frozen pre-trained encoder",
                       description="Generate user prompts from profiles (historical, factorization, high_order), "
                                   "fuse them with the pre-trained user embeddings and train with BPR. The data and "
                                   "its split are the pre-training run's (its config.json).")
    p.add_argument("--pretrained", required=True, metavar="DIR",
                   help="run folder written by `cptpp pretrain` (required)")
    p.add_argument("--config", metavar="FILE", help=CONFIG_HELP)
    p.add_argument("--device", default="auto", help=DataConfig.__dataclass_fields__["device"].metadata["help"]
                   + " (default: auto)")
    add_dataclass_options(p, PromptTuneConfig, RecTrainConfig)
    p.set_defaults(func=run_prompt_tune)

    from cptpp.recsys import search  # `cptpp search` lives in its own module

    search.add_parser(sub)


def load_data(cfg: DataConfig, progress: bool = True):
    """Load ``cfg.dataset`` and set ``cfg.rating_threshold`` to the threshold applied (recorded in config.json)."""
    from cptpp.recsys.datasets import load_dataset

    data = load_dataset(cfg.dataset, seed=cfg.data_seed, valid_ratio=cfg.valid_ratio,
                        rating_threshold=cfg.rating_threshold, kcore=cfg.kcore, progress=progress is not False)
    cfg.rating_threshold = data.rating_threshold
    for note in data.notes:
        print(f"note: {note}", file=sys.stderr)
    _check_trainable(data)
    return data


def _check_trainable(data) -> None:
    """BPR samples, for each training pair, an item the user has not interacted with: fail before the run
    folder is made when some user has none (tiny or degenerate data)."""
    import numpy as np

    degree = np.bincount(data.train[:, 0], minlength=data.num_users)
    full = np.flatnonzero(degree >= data.num_items)
    if len(data.train) == 0:
        raise ConfigError(f"{data.name}: no training interactions are left after loading (see the notes above)")
    if len(full):
        raw = data.raw_user_ids[full[:5]].tolist() if data.raw_user_ids is not None else full[:5].tolist()
        raise ConfigError(f"{data.name}: user(s) {', '.join(map(str, raw))} interacted with every one of the "
                          f"{data.num_items} items in training, so BPR has no negative item for them; a dataset "
                          "needs items each user has not interacted with")


def resumed_settings(file_values: dict, cli: dict, sections, classes) -> dict:
    """With ``--resume``, the settings saved in ``OUT/config.json`` (its ``sections``) are the defaults, so
    ``--out OUT --resume`` continues the run as it was run; options given again must match them (the
    loop refuses other differences). ``{}`` when not resuming or nothing is saved."""
    import dataclasses
    import json

    given = {**file_values, **{k: v for k, v in cli.items() if v is not None}}
    resume = given.get("resume")
    if not given.get("out") or not (resume is True or str(resume).lower() in ("1", "true", "yes", "on")):
        return {}
    try:
        saved = json.loads((Path(given["out"]) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    known = {f.name for cls in classes for f in dataclasses.fields(cls) if f.init}
    values = {}
    for section in sections:
        if isinstance(saved, dict) and isinstance(saved.get(section), dict):
            values.update({k: v for k, v in saved[section].items() if k in known})
    for key in ("out", "resume", "device", "progress"):  # where and how this process runs
        values.pop(key, None)
    return values


def check_out(train_cfg) -> None:
    """Before anything is loaded or written: --out is a run folder to resume, a new or empty folder."""
    from cptpp.train.loop import check_resumable, check_run_dir

    if train_cfg.resume:
        check_resumable(train_cfg.out)
    check_run_dir(train_cfg.out, train_cfg.resume, only_empty=True)


def _cli_values(args, drop=("func", "command", "config", "save", "pretrained", "device")) -> dict:
    return {k: v for k, v in vars(args).items() if k not in drop}


def _default_out(*parts: str) -> str:
    return "runs/" + "-".join(p.replace("/", "_") for p in parts) + time.strftime("-%Y%m%d-%H%M%S")


def _train_recommender(args, forced: dict) -> tuple:
    from cptpp.recsys.task import RecTask
    from cptpp.train.params import count_parameters
    from cptpp.train import fit, resolve_device, seed_everything

    file_values = load_json_config(args.config) if args.config else {}
    cli = _cli_values(args, drop=("func", "command", "config", "save"))
    saved = resumed_settings(file_values, cli, ("data", "model", "train"), CONFIG_CLASSES)
    cli.update({k: v for k, v in forced.items() if not (k == "epochs" and k in saved)})
    data_cfg, rec_cfg, train_cfg = build_configs(CONFIG_CLASSES, {**saved, **file_values}, cli,
                                                 source=args.config or "command line")
    if train_cfg.out is None:
        train_cfg.out = _default_out(data_cfg.dataset, rec_cfg.recommender, rec_cfg.mode)
    check_ranking_metric(train_cfg.metric, rec_cfg.ks)
    check_out(train_cfg)
    args.out = train_cfg.out  # so that an interrupted run can name the folder to --resume
    device = resolve_device(data_cfg.device)
    t0 = time.perf_counter()
    data = load_data(data_cfg, progress=train_cfg.progress)
    s = data.stats()
    print(f"{data.name}: {s['users']} users, {s['items']} items, train/valid/test "
          f"{s['train']}/{s['valid']}/{s['test']} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    seed_everything(train_cfg.seed)  # model initialization is part of the run's seed
    task = RecTask(data, rec_cfg, device)
    print(f"{rec_cfg.recommender} ({rec_cfg.mode}): {count_parameters(task.model).trainable:,} trainable parameters, "
          f"device {device}, run dir {train_cfg.out}", file=sys.stderr)
    results = fit(task, train_cfg, run_config={
        "data": asdict(data_cfg), "model": asdict(rec_cfg), "dataset_stats": s})
    print(format_results(results, rec_cfg.ks))
    return results, task, train_cfg


def run_train(args) -> int:
    _train_recommender(args, {})
    return 0


def run_pretrain(args) -> int:
    from cptpp.recsys.prompt_tuning import save_pretrained

    from cptpp.config import ConfigError, check_choice

    file_values = load_json_config(args.config) if args.config else {}
    recommender = args.recommender or file_values.get("recommender")
    if recommender is None:
        raise ConfigError(f"pretrain needs --recommender, one of: {', '.join(PRETRAIN_RECOMMENDERS)}")
    check_choice("recommender", recommender, PRETRAIN_RECOMMENDERS)
    forced = {"recommender": recommender, "mode": "pretrain", "restore_best": args.save == "best"}
    if args.epochs is None and "epochs" not in file_values:
        forced["epochs"] = 10  # the reference code's pre-training length
    results, task, train_cfg = _train_recommender(args, forced)
    path = save_pretrained(task.model, train_cfg.out)
    epoch = results["best_epoch"] if args.save == "best" else results["epochs_run"]
    print(f"pre-trained encoder of epoch {epoch} ({args.save}) saved to {path}")
    return 0


def run_prompt_tune(args) -> int:
    from cptpp.recsys.prompt_tuning import PromptTuningTask, load_pretrained
    from cptpp.train.params import count_parameters
    from cptpp.train import fit, resolve_device, seed_everything

    file_values = load_json_config(args.config) if args.config else {}
    classes = (PromptTuneConfig, RecTrainConfig)
    saved = resumed_settings(file_values, _cli_values(args), ("prompt_tuning", "train"), classes)
    tune_cfg, train_cfg = build_configs(classes, {**saved, **file_values}, _cli_values(args),
                                        source=args.config or "command line")
    check_ranking_metric(train_cfg.metric, tune_cfg.ks)
    encoder, pre_cfg = load_pretrained(args.pretrained)
    data_cfg = from_dict(DataConfig, {**pre_cfg["data"], "device": args.device},
                         source=str(Path(args.pretrained) / "config.json"))
    if train_cfg.out is None:
        train_cfg.out = _default_out(data_cfg.dataset, "cptpp", tune_cfg.prompt, tune_cfg.recipe)
    check_out(train_cfg)
    args.out = train_cfg.out  # so that an interrupted run can name the folder to --resume
    device = resolve_device(args.device)
    data = load_data(data_cfg, progress=train_cfg.progress)
    seed_everything(train_cfg.seed)
    task = PromptTuningTask(encoder, data, tune_cfg, device)
    print(f"CPTPP-{tune_cfg.prompt} ({tune_cfg.recipe}, tune={tune_cfg.tune}): "
          f"{count_parameters(task.model).trainable:,} trainable parameters, run dir {train_cfg.out}", file=sys.stderr)
    if tune_cfg.recipe == "official-code":
        print("recipe=official-code: prompt layers stay untrained and the best epoch is chosen on TEST, "
              "as in the reference implementation; do not report these as validated results", file=sys.stderr)
    results = fit(task, train_cfg, run_config={"data": asdict(data_cfg), "prompt_tuning": asdict(tune_cfg),
                                               "pretrained": str(args.pretrained),
                                               "pretrained_model": pre_cfg.get("model")})
    print(format_results(results, tune_cfg.ks))
    return 0


def format_results(results: dict, ks) -> str:
    lines = [f"best epoch {results['best_epoch']} of {results['epochs_run']} "
             f"({results['seconds_per_epoch']:.2f} s/epoch)"]
    metrics = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    lines.append(f"{'split':<6} " + " ".join(f"{m:>10}" for m in metrics))
    for split in ("valid", "test"):
        vals = results[split]
        lines.append(f"{split:<6} " + " ".join(f"{vals.get(m, float('nan')):>10.4f}" for m in metrics))
    return "\n".join(lines)

