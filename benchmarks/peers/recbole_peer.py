"""Accuracy curves of cptpp and RecBole 1.2.1 (LightGCN, SGL) on one exported split.

    .venv/bin/python benchmarks/peers/recbole_peer.py --dataset ml-100k --epochs 100 [--seeds 2020,2021,2022] \\
        [--runs recbole:lightgcn,cptpp:lightgcn,recbole:sgl,cptpp:sgl-recbole,cptpp:sgl] \\
        [--recbole-python .venv-recbole/bin/python] [--out benchmarks/results/recbole_peer_ml-100k.json]

The driver (project venv) exports cptpp's train / valid / test split of ``--dataset`` to RecBole
atomic files (pre-split mode, ``benchmark_filename``), then runs each entry of ``--runs`` in its
own process (RecBole's with the RecBole venv's python), one after the other. Every run trains
``--epochs`` epochs, evaluates validation after each (full ranking, train items masked) and the
test split whenever validation Recall@20 improves, so the reported test numbers are those at the
best-validation epoch, the house protocol; nothing is chosen on test. Each run's record
(``<work>/<dataset>/seed<S>/<run>.json``) is kept: rerunning the driver skips finished runs (``--force``
redoes them), so a killed table resumes where it stopped, and records already in ``--out`` are
restored into the work folder first. Every ``--seeds`` seed runs every ``--runs`` entry; the table
gives the mean (± std over the seeds where a run has more than one) and each run's seed count, so
seeds can be added to some runs later (a run's seed seeds its initialization, negatives and views).

Runs:

* ``recbole:lightgcn``, ``cptpp:lightgcn``: dim 64, 3 layers, batch 2048, Adam lr 1e-3, BPR +
  L2 1e-4 (squared, halved, over batch: RecBole's ``require_pow=True``), one uniform negative.
* ``recbole:sgl``: RecBole's SGL with its own defaults (``SGL.yaml``): ED, drop 0.1, 3 layers,
  ``ssl_tau`` 0.5, ``ssl_weight`` 0.05, ``reg_weight`` 1e-5 (unsquared norms), same lr/batch.
* ``cptpp:sgl-recbole``: cptpp's SGL in RecBole's configuration: ``cl_negatives=all``, tau 0.5,
  ``cl_weight`` 0.05 and ``l2=0``. RecBole sums BPR and the contrastive term over the batch and
  cptpp averages both, the same ratio (Adam does not see a constant scale). RecBole's L2 term,
  ``1e-5 * sum ||E_b||_F / B`` beside a summed BPR of about ``0.69 B``, is below 1e-7 of the loss,
  so cptpp's ``l2=0`` is that configuration to within rounding. RecBole drops exactly 10% of the
  edges per view, cptpp each edge with probability 0.1.
* ``cptpp:sgl``, ``cptpp:simgcl``, ``cptpp:xsimgcl``: ``cptpp train --recommender X`` with its
  defaults (what a user gets), at the same lr and batch size.

Peak RSS is per run process (``benchmarks/peak_rss.py`` launcher). The recbole side imports
nothing from cptpp, so this file must stay importable in the RecBole venv. RecBole venv: see
``benchmarks/run_all.py`` (``recbole==1.2.1 numpy==1.26.4 scipy==1.11.4 pandas==2.1.4 torch==2.13.0``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEAK_RSS = HERE.parent / "peak_rss.py"  # launcher: run as a script, nothing imported from it here
sys.path.insert(0, str(HERE))
from recbole_lightgcn import export_atomic, recbole_name  # noqa: E402  (one export for both RecBole peers)

COMMON = dict(dim=64, layers=3, batch_size=2048, lr=1e-3, topk=20, eval_users_per_block=2048)
RUNS = {
    "recbole:lightgcn": dict(l2=1e-4),
    "cptpp:lightgcn": dict(recommender="lightgcn", l2=1e-4),
    "recbole:sgl": dict(ssl_tau=0.5, ssl_weight=0.05, reg_weight=1e-5, drop_ratio=0.1, type="ED"),
    "cptpp:sgl-recbole": dict(recommender="sgl", cl_negatives="all", tau=0.5, cl_weight=0.05, l2=0.0,
                              drop_ratio=0.1, sgl_aug="ed"),
    # the package defaults (what `cptpp train --recommender X` gives), beside RecBole's SGL and both LightGCNs
    "cptpp:sgl": dict(recommender="sgl"),
    "cptpp:simgcl": dict(recommender="simgcl"),
    "cptpp:xsimgcl": dict(recommender="xsimgcl"),
}
DEFAULTS_RUNS = ("cptpp:sgl", "cptpp:simgcl", "cptpp:xsimgcl")
CURVE_EPOCHS = (10, 20, 50, 100)


class Curve:
    """Per-epoch seconds and validation metrics; test metrics at the best validation epoch so far."""

    def __init__(self):
        self.epoch_seconds: list[float] = []
        self.valid: list[dict] = []
        self.best_epoch, self.best_value, self.test = 0, -1.0, {}

    def add(self, seconds: float, valid: dict, test_fn) -> None:
        self.epoch_seconds.append(seconds)
        self.valid.append(valid)
        key = f"recall@{COMMON['topk']}"
        if valid[key] > self.best_value:
            self.best_epoch, self.best_value = len(self.valid), valid[key]
            self.test = test_fn()
        print(f"  epoch {len(self.valid)}: {seconds:.2f} s, valid recall@20 {valid[key]:.4f} "
              f"(best {self.best_value:.4f} at {self.best_epoch})", flush=True)

    def result(self) -> dict:
        return {"epoch_seconds": self.epoch_seconds, "valid_curve": self.valid, "best_epoch": self.best_epoch,
                "valid_at_best": self.valid[self.best_epoch - 1], "test_at_best": self.test}


def _metrics(res) -> dict:
    k = COMMON["topk"]
    return {f"recall@{k}": float(res[f"recall@{k}"]), f"ndcg@{k}": float(res[f"ndcg@{k}"])}


def side_recbole(model_name: str, args) -> dict:
    """RecBole's model trained one epoch / one evaluation at a time with its own Trainer pieces."""
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import SGL, LightGCN
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    sys.argv = sys.argv[:1]  # RecBole's Config also parses --key=value from the command line
    work = Path(args.work)
    extra = dict(RUNS[f"recbole:{model_name}"])
    if model_name == "lightgcn":
        extra = {"reg_weight": extra.pop("l2"), "require_pow": True}
    config = Config(model="LightGCN" if model_name == "lightgcn" else "SGL", dataset=recbole_name(args.dataset),
                    config_dict={
        "data_path": str(work / "data"), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]}, "field_separator": "\t",
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "embedding_size": COMMON["dim"], "n_layers": COMMON["layers"], **extra,
        "learner": "adam", "learning_rate": COMMON["lr"], "weight_decay": 0.0,
        "train_batch_size": COMMON["batch_size"],
        "eval_batch_size": COMMON["eval_users_per_block"] * (args.num_items + 1),
        "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
        "eval_args": {"group_by": "user", "order": "RO", "mode": "full"},
        "metrics": ["Recall", "NDCG"], "topk": [COMMON["topk"]], "valid_metric": "Recall@20",
        "epochs": args.epochs, "seed": int(args.seeds), "reproducibility": True, "device": "cpu", "use_gpu": False,
        "show_progress": False, "checkpoint_dir": str(work / "saved"), "save_dataset": False,
        "save_dataloaders": False, "log_wandb": False, "state": "WARNING",
    })
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = (LightGCN if model_name == "lightgcn" else SGL)(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    curve = Curve()
    for epoch in range(args.epochs):
        t = time.perf_counter()
        trainer._train_epoch(train_data, epoch, show_progress=False)  # model.train(): SGL's new views
        seconds = time.perf_counter() - t
        valid = _metrics(trainer.evaluate(valid_data, load_best_model=False, show_progress=False))
        curve.add(seconds, valid,
                  lambda: _metrics(trainer.evaluate(test_data, load_best_model=False, show_progress=False)))
    return {"library": f"recbole {recbole.__version__}", "torch": torch.__version__,
            "threads": {"torch": torch.get_num_threads()}, "settings": {**COMMON, **RUNS[f"recbole:{model_name}"]}, **curve.result()}


def side_cptpp(variant: str, args) -> dict:
    """cptpp's RecTask with the shared loop's optimizer, one epoch / one evaluation at a time."""
    import torch

    from dataclasses import asdict

    from cptpp.recsys.datasets import load_dataset
    from cptpp.recsys.task import RecConfig, RecTask
    from cptpp.train import seed_everything
    from cptpp.train.loop import make_optimizer

    gen = seed_everything(int(args.seeds))
    data = load_dataset(args.dataset, progress=False)
    settings = dict(RUNS[f"cptpp:{variant}"])
    if f"cptpp:{variant}" not in DEFAULTS_RUNS:  # a defaults run takes everything from the package
        settings.update(dim=COMMON["dim"], layers=COMMON["layers"], batch_size=COMMON["batch_size"])
    cfg = RecConfig(**settings, ks=[COMMON["topk"]])
    task = RecTask(data, cfg)
    opt = make_optimizer("adam", task.model.parameters(), COMMON["lr"], 0.0)
    task.evaluate("valid")  # numba JIT warm-up, outside the timed epochs
    curve = Curve()
    for epoch in range(1, args.epochs + 1):
        task.model.train()
        t = time.perf_counter()
        for batch in task.batches(epoch, gen):
            loss = task.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t
        task.model.eval()
        curve.add(seconds, _metrics(task.evaluate("valid")), lambda: _metrics(task.evaluate("test")))
    import numba

    return {"library": "cptpp", "torch": torch.__version__, "settings": {**asdict(cfg), "lr": COMMON["lr"]},
            "threads": {"torch": torch.get_num_threads(), "numba": numba.get_num_threads()},
            **curve.result()}


# --------------------------------------------------------------------------- driver

def run_one(run: str, args, python: str, seed: int) -> dict:
    work = Path(args.work) / f"seed{seed}"
    out = work / f"{run.replace(':', '_')}.json"
    if out.exists() and not args.force:
        print(f"{run} seed {seed}: kept {out}", flush=True)
        return json.loads(out.read_text())
    work.mkdir(parents=True, exist_ok=True)
    side, variant = run.split(":")
    rss_file = out.with_suffix(".rss")
    cmd = [python, str(Path(__file__).resolve()), "--side", run, "--epochs", str(args.epochs),
           "--dataset", args.dataset, "--seeds", str(seed), "--work", str(args.work),
           "--num-items", str(args.num_items), "--side-out", str(out.with_suffix(".part"))]
    env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
    if "OMP_NUM_THREADS" in env:
        # the same thread count for cptpp's numba kernels as for torch: on a shared machine numba's
        # extra workers spin-wait for descheduled peers (ml-100k SGL epoch, 2 cores under load:
        # 10.5 CPU-s with 2 numba threads, 1.05 with 1)
        env.setdefault("NUMBA_NUM_THREADS", env["OMP_NUM_THREADS"])
    print(f"{run} seed {seed}: {args.epochs} epochs ({python})", flush=True)
    t = time.perf_counter()
    code = subprocess.run([sys.executable, str(PEAK_RSS), str(rss_file), *cmd], env=env, cwd=args.work).returncode
    if code != 0:
        raise SystemExit(f"{run} failed (exit {code}): {' '.join(cmd)}")
    res = json.loads(out.with_suffix(".part").read_text())
    res["peak_rss_MB"] = int(rss_file.read_text()) / 1024
    res["wall_seconds"] = time.perf_counter() - t
    res["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    res["command"] = " ".join([Path(sys.executable).name] + sys.argv)  # the invocation that ran this record
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    out.with_suffix(".part").unlink()
    return res


def restore_records(out: Path, work: Path, epochs: int) -> None:
    """Write the records of a previous ``--out`` file (same dataset and epochs) back into ``work``
    where they are missing, so a table extended by seeds or runs does not retrain what it has."""
    if not out.exists():
        return
    old = json.loads(out.read_text())
    if old.get("epochs") != epochs:
        return
    for seed, runs in old["per_seed"].items():
        for run, rec in runs.items():
            path = work / f"seed{seed}" / f"{run.replace(':', '_')}.json"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n")


def _mean_std(values: list[float], fmt: str = "{:.4f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def table(res: dict) -> str:
    """Markdown, one row per run over its seeds: mean validation Recall@20 at CURVE_EPOCHS, mean best
    epoch, test Recall@20 / NDCG@20 at the best epoch (mean ± std), median s/epoch, largest peak RSS."""
    epochs = [e for e in CURVE_EPOCHS if e <= res["epochs"]]
    head = (["run", "seeds"] + [f"valid R@20 ep {e}" for e in epochs]
            + ["best ep", "test R@20", "test N@20", "s/epoch", "peak RSS MB"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    runs = [run for run in RUNS if any(run in recs for recs in res["per_seed"].values())]
    for run in runs:
        recs = [recs[run] for recs in res["per_seed"].values() if run in recs]
        curve = [f"{statistics.mean(r['valid_curve'][e - 1]['recall@20'] for r in recs):.4f}" for e in epochs]
        sec = statistics.median(s for r in recs for s in r["epoch_seconds"])
        lines.append("| " + " | ".join([
            f"`{run}`", str(len(recs)), *curve, f"{statistics.mean(r['best_epoch'] for r in recs):.0f}",
            _mean_std([r["test_at_best"]["recall@20"] for r in recs]),
            _mean_std([r["test_at_best"]["ndcg@20"] for r in recs]),
            f"{sec:.2f}", f"{max(r['peak_rss_MB'] for r in recs):.0f}"]) + " |")
    return "\n".join(lines)


def driver(args) -> int:
    work = Path(args.work).resolve() / args.dataset
    work.mkdir(parents=True, exist_ok=True)
    args.work = str(work)
    recbole_python = Path(args.recbole_python)
    runs = [r for r in args.runs.split(",") if r]
    seeds = [int(s) for s in args.seeds.split(",")]
    for r in runs:
        if r not in RUNS:
            raise SystemExit(f"unknown run {r!r}; choose from {', '.join(RUNS)}")
    out = Path(args.out or HERE.parent / "results" / f"recbole_peer_{args.dataset}.json")
    restore_records(out, work, args.epochs)
    sizes = export_atomic(args.dataset, work / "data" / recbole_name(args.dataset))
    args.num_items = sizes["items"]
    for seed in seeds:
        for r in runs:
            if r.startswith("recbole:") and not recbole_python.exists():
                raise SystemExit(f"RecBole python {recbole_python} not found; benchmarks/run_all.py creates the venv")
            run_one(r, args, str(recbole_python) if r.startswith("recbole:") else sys.executable, seed)
    per_seed = {}  # every finished record in the work folder: earlier seeds and runs stay in the table
    for path in sorted(work.glob("seed*/*.json"), key=lambda p: (int(p.parent.name[4:]), p.name)):
        run = path.stem.replace("_", ":", 1)
        if run in RUNS:
            per_seed.setdefault(path.parent.name[4:], {})[run] = json.loads(path.read_text())
    res = {"dataset": args.dataset, "epochs": args.epochs, "split": sizes, "common": COMMON,
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}, "per_seed": per_seed,
           "command": " ".join([Path(sys.executable).name] + [str(a) for a in sys.argv])}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    print(table(res))
    print(f"wrote {out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--seeds", default="2020", help="comma-separated; each seed runs every --runs entry")
    ap.add_argument("--runs", default=",".join(RUNS))
    ap.add_argument("--force", action="store_true", help="redo runs whose record exists")
    ap.add_argument("--recbole-python", default=str(ROOT / ".venv-recbole" / "bin" / "python"))
    ap.add_argument("--work", default=str(ROOT / "runs" / "recbole_peer"))
    ap.add_argument("--out", default=None, help="default: benchmarks/results/recbole_peer_<dataset>.json")
    ap.add_argument("--side", choices=list(RUNS), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side-out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--num-items", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    if args.side is None:
        if not os.environ.get("CPTPP_DATA_MIRROR") and (ROOT.parent / "shared" / "data").is_dir():
            os.environ["CPTPP_DATA_MIRROR"] = str(ROOT.parent / "shared" / "data")
        return driver(args)
    side, variant = args.side.split(":")
    res = (side_recbole if side == "recbole" else side_cptpp)(variant, args)
    res["peak_rss_self_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(args.side_out).write_text(json.dumps(res, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
