"""RecBole 1.2.1 LightGCN beside cptpp's LightGCN: same split, same settings, separate processes.

    .venv/bin/python benchmarks/peers/recbole_lightgcn.py --epochs 2 \\
        [--recbole-python .venv-recbole/bin/python] [--out benchmarks/results/recbole_lightgcn.json]

The driver (project venv) exports cptpp's ``ml-1m-implicit`` train / valid / test split to RecBole
atomic files and loads them in RecBole's pre-split mode (``benchmark_filename``), so both libraries
train and evaluate on exactly the same pairs. It then runs ``--side recbole`` with the RecBole venv's
python and ``--side cptpp`` with this python, one process each, and writes both sides and the ratios.

Settings on both sides: dim 64, 3 layers, batch 2048, Adam lr 1e-3, BPR + L2 1e-4 on the batch's
layer-0 embeddings (``sum ||e||^2 / 2 / batch``: RecBole's ``require_pow=True``), one uniform negative
per positive, xavier-uniform init, ``--epochs`` epochs and no model selection (metrics after the last
epoch). Evaluation is full ranking over all items in blocks of 2048 users (cptpp's ``eval_block``;
RecBole's ``eval_batch_size`` set to match), train items masked for validation and train + valid
items for test; Recall@20 / NDCG@20. Timed: each training epoch, each validation pass, the test
pass; setup (data loading, graph building, and for cptpp one warm-up evaluation that JIT-compiles
its numba kernels) is reported separately. Peak RSS is per side process (``ru_maxrss`` read by the
``benchmarks/peak_rss.py`` launcher).

The RecBole venv (see ``benchmarks/run_all.py``): ``recbole==1.2.1 numpy==1.26.4 scipy==1.11.4
pandas==2.1.4 torch==2.13.0`` (scipy 1.12 removed ``dok_matrix._update`` that its LightGCN uses;
pandas 3 turns its in-place ``fillna`` into a no-op) and ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``.
This file must stay importable there: the recbole side imports nothing from cptpp.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the checkout: default places for the RecBole venv and the work folder

SETTINGS = dict(dim=64, layers=3, batch_size=2048, lr=1e-3, l2=1e-4, topk=20, eval_users_per_block=2048)


def wall():
    return time.perf_counter()


class Timer:
    """Wall and CPU seconds (``process_time``: all threads of this process) of named phases.

    The two sides run one after the other, so other jobs on a shared machine can slow one more than
    the other; CPU seconds are far less sensitive to that than wall seconds, and both are reported.
    """

    def __init__(self):
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t, c = time.perf_counter(), time.process_time()
        yield
        self.wall.setdefault(name, []).append(time.perf_counter() - t)
        self.cpu.setdefault(name, []).append(time.process_time() - c)

    def last(self, name: str) -> str:
        return f"{self.wall[name][-1]:.2f} s wall, {self.cpu[name][-1]:.2f} s CPU"

    def result(self) -> dict:
        out = {}
        for name in self.wall:
            one = name == "test_eval"
            out[f"{name}_seconds"] = self.wall[name][0] if one else self.wall[name]
            out[f"{name}_cpu_seconds"] = self.cpu[name][0] if one else self.cpu[name]
        return out


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# --------------------------------------------------------------------------- data export (project venv)

def recbole_name(dataset: str) -> str:
    """RecBole's name for the exported split; a prefix keeps RecBole from substituting its own bundled
    copy of a dataset it knows by name (it does for ml-100k)."""
    return f"cptpp_{dataset}"


def export_atomic(dataset: str, folder: Path) -> dict:
    """Write ``folder/cptpp_<dataset>.{train,valid,test}.inter`` (``user_id:token  item_id:token``).

    Tokens are cptpp's contiguous ids; RecBole remaps them to its own (0 = padding), which changes
    nothing about which pairs are in which split.
    """
    import numpy as np

    from cptpp.recsys.datasets import load_dataset

    data = load_dataset(dataset, progress=False)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split in ("train", "valid", "test"):
        pairs = np.asarray(getattr(data, split))
        path = folder / f"{recbole_name(dataset)}.{split}.inter"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write("user_id:token\titem_id:token\n")
            np.savetxt(f, pairs, fmt="%d", delimiter="\t")
        os.replace(tmp, path)
        sizes[split] = len(pairs)
    return {"users": data.num_users, "items": data.num_items, **sizes}


# --------------------------------------------------------------------------- the two sides

def side_recbole(args) -> dict:
    """Train RecBole's LightGCN with its own Trainer pieces (one epoch / one evaluation at a time)."""
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    sys.argv = sys.argv[:1]  # RecBole's Config also reads --key=value options from the command line
    t0 = wall()
    work = Path(args.work)
    config = Config(model="LightGCN", dataset=recbole_name(args.dataset), config_dict={
        "data_path": str(work / "data"), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]}, "field_separator": "\t",
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "embedding_size": SETTINGS["dim"], "n_layers": SETTINGS["layers"], "reg_weight": SETTINGS["l2"],
        "require_pow": True, "learner": "adam", "learning_rate": SETTINGS["lr"], "weight_decay": 0.0,
        "train_batch_size": SETTINGS["batch_size"],
        # full ranking scores eval_batch_size // num_items users per batch: the default 4096 would be one
        # user at a time on ml-1m; this gives RecBole the same user block as cptpp's evaluation
        "eval_batch_size": SETTINGS["eval_users_per_block"] * (args.num_items + 1),
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [SETTINGS["topk"]], "valid_metric": "NDCG@20",
        "epochs": args.epochs, "seed": args.seed, "reproducibility": True, "device": "cpu", "use_gpu": False,
        "show_progress": False, "checkpoint_dir": str(work / "saved"), "save_dataset": False,
        "save_dataloaders": False, "log_wandb": False, "state": "WARNING",
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = LightGCN(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    setup_s = wall() - t0

    timer = Timer()
    for epoch in range(args.epochs):
        with timer("epoch"):
            loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        with timer("valid_eval"):
            valid = trainer.evaluate(valid_data, load_best_model=False, show_progress=False)
        print(f"  recbole epoch {epoch + 1}: {timer.last('epoch')}, loss {float(loss):.4f}, "
              f"valid recall@20 {valid['recall@20']:.4f} ({timer.last('valid_eval')})", flush=True)
    with timer("test_eval"):
        test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    return {"library": f"recbole {recbole.__version__}", "torch": torch.__version__,
            "threads": torch.get_num_threads(), "users": dataset.user_num - 1, "items": dataset.item_num - 1,
            "train_pairs": len(train_data.dataset), "batches_per_epoch": len(train_data),
            "setup_seconds": setup_s, **timer.result(), "valid": _metrics(valid), "test": _metrics(test)}


def side_cptpp(args) -> dict:
    """Train cptpp's LightGCN for the same epochs with the same settings, timing the same pieces."""
    import torch

    from cptpp.recsys.datasets import load_dataset
    from cptpp.recsys.task import RecConfig, RecTask
    from cptpp.train import seed_everything
    from cptpp.train.allocator import keep_freed_memory
    from cptpp.train.loop import make_optimizer

    keep_freed_memory()
    t0 = wall()
    gen = seed_everything(args.seed)
    data = load_dataset(args.dataset, progress=False)
    task = RecTask(data, RecConfig(recommender="lightgcn", dim=SETTINGS["dim"], layers=SETTINGS["layers"],
                                   batch_size=SETTINGS["batch_size"], l2=SETTINGS["l2"], ks=[SETTINGS["topk"]]))
    opt = make_optimizer("adam", task.model.parameters(), SETTINGS["lr"], 0.0)
    task.evaluate("valid")  # warm-up: numba JIT of the SpMM kernels
    setup_s = wall() - t0

    timer = Timer()
    n_batches = 0
    for epoch in range(args.epochs):
        task.model.train()
        with timer("epoch"):
            batches = task.batches(epoch, gen)
            n_batches = len(batches)
            total = 0.0
            for batch in batches:
                loss = task.loss(batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
        task.model.eval()
        with timer("valid_eval"):
            valid = task.evaluate("valid")
        print(f"  cptpp epoch {epoch + 1}: {timer.last('epoch')}, loss {total:.4f}, "
              f"valid recall@20 {valid['recall@20']:.4f} ({timer.last('valid_eval')})", flush=True)
    with timer("test_eval"):
        test = task.evaluate("test")
    import cptpp

    return {"library": f"cptpp {getattr(cptpp, '__version__', '')}".strip(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "users": data.num_users, "items": data.num_items,
            "train_pairs": int(len(data.train)), "batches_per_epoch": n_batches,
            "setup_seconds": setup_s, **timer.result(), "valid": _metrics(valid), "test": _metrics(test)}


def _metrics(res) -> dict:
    k = SETTINGS["topk"]
    return {f"recall@{k}": float(res[f"recall@{k}"]), f"ndcg@{k}": float(res[f"ndcg@{k}"])}


# --------------------------------------------------------------------------- driver

def _peak_rss():
    """The ``benchmarks/peak_rss.py`` launcher module, loaded from its file: this script runs from
    ``benchmarks/peers/``, so the launcher's folder is not on ``sys.path``."""
    spec = importlib.util.spec_from_file_location("peak_rss", HERE.parent / "peak_rss.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_side(python: str, side: str, args, env: dict) -> tuple[dict, float]:
    """Run one side in its own process; returns (its result, its peak RSS in MB)."""
    out = Path(args.work) / f"{side}.json"
    out.unlink(missing_ok=True)
    cmd = [python, str(Path(__file__).resolve()), "--side", side, "--epochs", str(args.epochs),
           "--num-items", str(args.num_items),
           "--dataset", args.dataset, "--seed", str(args.seed), "--work", str(args.work), "--side-out", str(out)]
    rss_file = Path(args.work) / f"{side}.rss"
    # RecBole writes ./log/ into its cwd; the launcher keeps this driver's size out of the side's peak RSS
    peak_rss = _peak_rss()
    code = subprocess.run(peak_rss.measured(cmd, rss_file), env=env, cwd=args.work).returncode
    if code != 0:
        raise SystemExit(f"{side} side failed (exit {code}): {' '.join(cmd)}")
    return json.loads(out.read_text()), peak_rss.read_peak_mb(rss_file)


def summarize(side: dict) -> dict:
    """Per-epoch means (the first epoch is dropped from the mean when there are several: warm-up)."""
    out = {}
    for kind in ("", "cpu_"):
        ep = side[f"epoch_{kind}seconds"]
        out[f"epoch_{kind}seconds_mean"] = statistics.mean(ep[1:] if len(ep) > 1 else ep)
        out[f"valid_eval_{kind}seconds_median"] = statistics.median(side[f"valid_eval_{kind}seconds"])
    return out


def driver(args) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.work = str(work.resolve())
    recbole_python = Path(args.recbole_python)
    if not recbole_python.exists():
        raise SystemExit(f"RecBole python {recbole_python} not found; benchmarks/run_all.py creates the venv")
    print(f"exporting {args.dataset} split to RecBole atomic files in {work / 'data'}", flush=True)
    sizes = export_atomic(args.dataset, work / "data" / recbole_name(args.dataset))
    args.num_items = sizes["items"]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    print(f"recbole side ({recbole_python}), {args.epochs} epoch(s)", flush=True)
    rb, rb_rss = run_side(str(recbole_python), "recbole", args, env)
    print(f"cptpp side ({sys.executable}), {args.epochs} epoch(s)", flush=True)
    cp, cp_rss = run_side(sys.executable, "cptpp", args, env)
    rb["peak_rss_MB"], cp["peak_rss_MB"] = rb_rss, cp_rss
    rb.update(summarize(rb))
    cp.update(summarize(cp))
    for key in ("users", "items", "train_pairs", "batches_per_epoch"):
        if rb[key] != cp[key]:
            print(f"WARNING: {key} differs: recbole {rb[key]} vs cptpp {cp[key]}", flush=True)
    res = {
        "dataset": args.dataset, "epochs": args.epochs, "seed": args.seed, "settings": SETTINGS, "split": sizes,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "recbole": rb, "cptpp": cp,
        "speedup_epoch": rb["epoch_seconds_mean"] / cp["epoch_seconds_mean"],
        "speedup_valid_eval": rb["valid_eval_seconds_median"] / cp["valid_eval_seconds_median"],
        "speedup_test_eval": rb["test_eval_seconds"] / cp["test_eval_seconds"],
        "speedup_epoch_cpu": rb["epoch_cpu_seconds_mean"] / cp["epoch_cpu_seconds_mean"],
        "speedup_valid_eval_cpu": rb["valid_eval_cpu_seconds_median"] / cp["valid_eval_cpu_seconds_median"],
        "command": " ".join([Path(sys.executable).name] + [str(a) for a in sys.argv]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    k = SETTINGS["topk"]
    print(f"{args.dataset}, {args.epochs} epoch(s), {cp['batches_per_epoch']} batches of {SETTINGS['batch_size']}:")
    print(f"  train epoch   : recbole {rb['epoch_seconds_mean']:8.2f} s | cptpp {cp['epoch_seconds_mean']:8.2f} s "
          f"| ratio {res['speedup_epoch']:.1f}x")
    print(f"  train epoch   : recbole {rb['epoch_cpu_seconds_mean']:8.2f} CPU-s | cptpp "
          f"{cp['epoch_cpu_seconds_mean']:8.2f} CPU-s | ratio {res['speedup_epoch_cpu']:.1f}x")
    print(f"  valid eval    : recbole {rb['valid_eval_seconds_median']:8.3f} s | cptpp "
          f"{cp['valid_eval_seconds_median']:8.3f} s | ratio {res['speedup_valid_eval']:.1f}x")
    for split in ("valid", "test"):
        print(f"  {split:5s} metrics : recbole recall@{k} {rb[split][f'recall@{k}']:.4f} ndcg@{k} "
              f"{rb[split][f'ndcg@{k}']:.4f} | cptpp recall@{k} {cp[split][f'recall@{k}']:.4f} "
              f"ndcg@{k} {cp[split][f'ndcg@{k}']:.4f}")
    print(f"  peak RSS      : recbole {rb_rss:.0f} MB | cptpp {cp_rss:.0f} MB")
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m-implicit")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--recbole-python", default=str(ROOT / ".venv-recbole" / "bin" / "python"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "recbole_peer"),
                    help="atomic files, RecBole's log/ and saved/ (default: %(default)s)")
    ap.add_argument("--out", default=str(HERE.parent / "results" / "recbole_lightgcn.json"))
    ap.add_argument("--side", choices=("recbole", "cptpp"), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--num-items", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    if args.side is None:
        if not os.environ.get("CPTPP_DATA_MIRROR") and (ROOT.parent / "shared" / "data").is_dir():
            os.environ["CPTPP_DATA_MIRROR"] = str(ROOT.parent / "shared" / "data")
        return driver(args)
    res = (side_recbole if args.side == "recbole" else side_cptpp)(args)
    res["peak_rss_self_MB"] = peak_rss_mb()
    Path(args.side_out).write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
