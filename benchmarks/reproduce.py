"""Train LightGCN / SGL / SimGCL / XSimGCL with the papers' settings and compare with published numbers.

    python benchmarks/reproduce.py --dataset gowalla --models xsimgcl --epochs 40

Settings (LightGCN/SGL/SimGCL/XSimGCL papers): dim 64, batch 2048, Adam lr 0.001, L2 1e-4, each
model's own defaults from ``cptpp.recsys.task.MODEL_DEFAULTS``. Model selection uses a seeded
validation split carved from the published train split (``--valid-ratio``); test is evaluated
once at the best validation epoch. Results: ``benchmarks/results/reproduce_<dataset>.json`` and
``.md`` (with the command that produced them); run directories (checkpoints) go to ``runs/``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if not os.environ.get("CPTPP_DATA_MIRROR") and (HERE.parent.parent / "shared" / "data").is_dir():
    os.environ["CPTPP_DATA_MIRROR"] = str(HERE.parent.parent / "shared" / "data")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cptpp.io import write_json  # noqa: E402
from cptpp.recsys.datasets import load_dataset  # noqa: E402
from cptpp.recsys.task import RecConfig, RecTask  # noqa: E402
from cptpp.train import TrainConfig, fit, seed_everything  # noqa: E402

# Published test Recall@20 / NDCG@20 on the LightGCN splits (LightGCN SIGIR'20 Table 3;
# SGL, SimGCL, XSimGCL papers' yelp2018 tables).
PUBLISHED = {
    "gowalla": {"lightgcn": (0.1830, 0.1554)},
    "yelp2018": {"lightgcn": (0.0639, 0.0525), "sgl": (0.0675, 0.0555),
                 "simgcl": (0.0721, 0.0601), "xsimgcl": (0.0723, 0.0604)},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--models", default="lightgcn,sgl,simgcl,xsimgcl")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--valid-ratio", type=float, default=0.1)
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--runs", default="runs/reproduce")
    ap.add_argument("--resume", action="store_true", help="continue interrupted model runs")
    ap.add_argument("--refit", action="store_true",
                    help="after model selection, retrain on train + valid for the selected number of epochs "
                         "(no validation) and test that model too")
    args = ap.parse_args(argv)

    data = load_dataset(args.dataset, valid_ratio=args.valid_ratio)
    out_json = Path(args.out) / f"reproduce_{args.dataset}.json"
    report = json.loads(out_json.read_text()) if out_json.exists() else {"models": {}}
    report.update({
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "dataset": args.dataset, "stats": data.stats(), "machine": f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
    })
    for model in args.models.split(","):
        seed_everything(args.seed)
        task = RecTask(data, RecConfig(recommender=model, dim=64, batch_size=2048, l2=1e-4, ks=[20]))
        run_dir = Path(args.runs) / f"{args.dataset}-{model}"
        t0 = time.time()
        res = fit(task, TrainConfig(epochs=args.epochs, lr=1e-3, seed=args.seed, metric="recall@20",
                                    patience=args.patience, eval_every=args.eval_every,
                                    out=str(run_dir), resume=args.resume))
        curve = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        report["models"][model] = {
            "test": {k: res["test"][k] for k in ("recall@20", "ndcg@20")},
            "valid": {k: res["valid"][k] for k in ("recall@20", "ndcg@20")},
            "best_epoch": res["best_epoch"], "epochs_run": res["epochs_run"],
            "seconds_per_epoch": res["seconds_per_epoch"], "wall_seconds": time.time() - t0,
            "published_test": PUBLISHED.get(args.dataset, {}).get(model),
            "valid_curve": [(r["epoch"], r["valid"]["recall@20"], r["valid"]["ndcg@20"]) for r in curve if "valid" in r],
        }
        if args.refit:
            full = dataclasses.replace(data, train=np.concatenate([data.train, data.valid]), valid=data.valid[:0])
            seed_everything(args.seed)
            refit_task = RecTask(full, RecConfig(recommender=model, dim=64, batch_size=2048, l2=1e-4, ks=[20]))
            refit = fit(refit_task, TrainConfig(epochs=res["best_epoch"], lr=1e-3, seed=args.seed, eval_every=0,
                                                out=str(run_dir) + "-refit", resume=args.resume))
            report["models"][model]["refit_test"] = {k: refit["test"][k] for k in ("recall@20", "ndcg@20")}
        write_json(out_json, report)
        write_markdown(report, out_json.with_suffix(".md"))
        print(json.dumps(report["models"][model]["test"]), f"best epoch {res['best_epoch']}")
    return 0


def write_markdown(report: dict, path: Path) -> None:
    pub = PUBLISHED.get(report["dataset"], {})
    lines = [f"# Reproduction on {report['dataset']}", "",
             f"Command: `{report['command']}`  ", f"Machine: {report['machine']}", "",
             "Test at the best-validation epoch (validation = a seeded 10% of each user's train pairs, so the "
             "model trains on 90% of the train pairs). Refit: the same number of epochs retrained on "
             "train + valid (for gowalla: the whole published train split), no validation, tested once at the end (`--refit`).", "",
             "| model | test Recall@20 | test NDCG@20 | best epoch / run | refit test R@20 / N@20 | s/epoch "
             "| published (R@20 / N@20) |",
             "|---|---|---|---|---|---|---|"]
    for model, r in report["models"].items():
        p = r.get("published_test") or pub.get(model)
        ptxt = f"{p[0]:.4f} / {p[1]:.4f}" if p else "—"
        refit = r.get("refit_test")
        rtxt = f"{refit['recall@20']:.4f} / {refit['ndcg@20']:.4f}" if refit else "—"
        lines.append(f"| {model} | {r['test']['recall@20']:.4f} | {r['test']['ndcg@20']:.4f} | "
                     f"{r['best_epoch']} / {r['epochs_run']} | {rtxt} | {r['seconds_per_epoch']:.1f} | {ptxt} |")
    if "lightgcn" in pub and "lightgcn" not in report["models"]:
        lines.append(f"| lightgcn (published, converged) | — | — | — | — | — | {pub['lightgcn'][0]:.4f} / {pub['lightgcn'][1]:.4f} |")
    Path(path).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
