"""`cptpp train`: train a recommender (MF, LightGCN, SGL, SimGCL, XSimGCL) with the shared loop."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

from cptpp.config import add_dataclass_options, build_configs, check_range, load_json_config
from cptpp.recsys.task import MODELS, RecConfig
from cptpp.train.loop import TrainConfig


@dataclass
class DataConfig:
    """Which data and how it is split (see ``cptpp data list``)."""

    dataset: str = "ml-100k"
    data_seed: int = 0
    valid_ratio: float = 0.1
    rating_threshold: float | None = None
    kcore: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_range("valid_ratio", self.valid_ratio, 0)
        check_range("kcore", self.kcore, 0)


CONFIG_CLASSES = (DataConfig, RecConfig, TrainConfig)


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a recommender and report validation/test ranking metrics",
                       description=f"Train a recommender. --model is one of: {', '.join(MODELS)}. "
                                   "Every hyperparameter below can also come from --config FILE (JSON, flat keys).")
    p.add_argument("--config", help="JSON file of flat key: value pairs; command-line options override it")
    p.add_argument("--epochs", type=int, dest="epochs", default=None, help="training epochs (default 20)")
    add_dataclass_options(p, *CONFIG_CLASSES, skip=("epochs",))
    p.set_defaults(func=run_train)


def load_data(cfg: DataConfig, progress: bool = True):
    from cptpp.recsys.datasets import load_dataset

    return load_dataset(cfg.dataset, seed=cfg.data_seed, valid_ratio=cfg.valid_ratio,
                        rating_threshold=cfg.rating_threshold, kcore=cfg.kcore, progress=progress)


def run_train(args) -> int:
    from cptpp.recsys.task import RecTask, count_parameters
    from cptpp.train import fit, resolve_device, seed_everything

    file_values = load_json_config(args.config) if args.config else {}
    cli = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config")}
    data_cfg, rec_cfg, train_cfg = build_configs(CONFIG_CLASSES, file_values, cli,
                                                 source=args.config or "command line")
    if train_cfg.out is None:
        train_cfg.out = f"runs/{data_cfg.dataset.replace('/', '_')}-{rec_cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    device = resolve_device(data_cfg.device)
    t0 = time.perf_counter()
    data = load_data(data_cfg, progress=train_cfg.progress)
    s = data.stats()
    print(f"{data.name}: {s['users']} users, {s['items']} items, train/valid/test "
          f"{s['train']}/{s['valid']}/{s['test']} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    seed_everything(train_cfg.seed)  # model initialization is part of the run's seed
    task = RecTask(data, rec_cfg, device)
    print(f"{rec_cfg.model} ({rec_cfg.mode}): {count_parameters(task.model):,} trainable parameters, "
          f"device {device}, run dir {train_cfg.out}", file=sys.stderr)
    results = fit(task, train_cfg, run_config={
        "data": asdict(data_cfg), "model": asdict(rec_cfg), "dataset_stats": s})
    print(format_results(results, rec_cfg.ks))
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

