"""CPTPP comparison table: joint-trained baselines vs pre-training + prompt tuning (CPTPP-H/M/R).

    python benchmarks/cptpp_table.py --datasets ml-1m-implicit --seeds 0,1,2 --epochs 20 --pretrain-epochs 10
    # the joint rows at equal epochs (no early stopping: ML-1M's curves dip after epoch 1, and patience 5
    # stopped some runs there)
    python benchmarks/cptpp_table.py --datasets ml-1m-implicit --seeds 0,1,2 --epochs 20 --pretrain-epochs 10 \
        --patience 0 --objectives sgl,simgcl,xsimgcl --profiles ""

For every dataset and seed: LightGCN, SGL/SimGCL/XSimGCL joint training (BPR + lambda * CL), and
for each objective a contrastive-only pre-training followed by prompt tuning with each profile
(historical = H, factorization = M, high_order = R), encoder frozen (``paper`` mode). Metrics are
test Recall/NDCG/Precision/HR @5 and @20 at the best-validation epoch; mean ± std over seeds.

Protocol notes (printed into the report): ML-1M uses the mirror's implicit 80/20 split of all
ratings (the paper used ratings >= 4 with an unseeded shuffle, which cannot be reproduced);
validation is a seeded 10% of each user's train items; epochs are capped (``--epochs``) on CPU.

Resumable: every finished row (and each pre-trained encoder) is kept under ``--cache``, keyed by
dataset, protocol and seed; a rerun skips what is done, so seeds can run in separate processes
(``--seeds 1`` beside ``--seeds 2``). The report is rebuilt from the cache after every row:
``benchmarks/results/cptpp.json`` and ``cptpp.md``, one section per dataset and protocol.
``cptpp.json`` keeps every seed's test metrics, and rows it records are written back into an empty
or partial cache before anything runs, so a lost ``runs/`` folder loses only the pre-trained
encoders: finished rows count as done (remove them from ``cptpp.json``, or use another ``--out``,
to run them again).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
if not os.environ.get("CPTPP_DATA_MIRROR") and (HERE.parent.parent / "shared" / "data").is_dir():
    os.environ["CPTPP_DATA_MIRROR"] = str(HERE.parent.parent / "shared" / "data")

from cptpp.io import write_json, write_text
from cptpp.recsys.datasets import load_dataset
from cptpp.recsys.prompt_tuning import (
    PromptTuneConfig,
    PromptTuningTask,
    load_pretrained,
    save_pretrained,
)
from cptpp.recsys.config import DataConfig
from cptpp.recsys.task import RecConfig, RecTask
from cptpp.train.params import count_parameters
from cptpp.train import TrainConfig, fit, seed_everything

METRICS = [f"{m}@{k}" for k in (5, 20) for m in ("recall", "ndcg", "precision", "hit")]
PROFILES = {"historical": "H", "factorization": "M", "high_order": "R"}
PER_SEED_KEYS = ("seed", "command", "seconds", "paused", "params", "best_epoch", "test")


def run_one(task, epochs: int, seed: int, patience: int, out: Path) -> dict:
    """Train one cell in the run folder ``out`` (a checkpoint per epoch): a killed table resumes the
    cell from its last epoch, and then its wall time is marked ``paused``."""
    t0 = time.time()
    resume = (out / "checkpoint.pt").exists()
    res = fit(task, TrainConfig(epochs=epochs, lr=1e-3, seed=seed, patience=patience, progress=False,
                                out=str(out), resume=resume))
    return {"test": {m: res["test"][m] for m in METRICS}, "best_epoch": res["best_epoch"],
            "seconds": time.time() - t0, "params": count_parameters(task.model).trainable,
            **({"paused": True} if resume else {})}


def row(label: str, make_task, epochs: int, patience: int, *, run_dir: Path, seed: int, command: str,
        cache: Path, out: Path, extra_seconds: float = 0.0) -> None:
    """Train and test one table cell unless the cache already holds it; then rebuild the report."""
    path = run_dir / f"{slug(label)}.json"
    if path.exists():
        return
    seed_everything(seed)
    result = run_one(make_task(), epochs, seed, patience, run_dir / "runs" / slug(label))
    result.update(label=label, seed=seed, command=command, seconds=result["seconds"] + extra_seconds)
    write_json(path, result)
    print(f"{run_dir.parent.parent.name:16s} seed {seed} {label:22s} recall@20={result['test']['recall@20']:.4f} "
          f"ndcg@20={result['test']['ndcg@20']:.4f} ({result['seconds']:.0f}s)", flush=True)
    write_report(cache, out)


def section_parts(key: str) -> tuple[str, str]:
    """``"ml-1m-implicit (epochs20-pre10-pat5)"`` (a report section, see ``write_report``) -> (dataset, protocol)."""
    name, protocol = key.removesuffix(")").split(" (")
    return name, protocol


def slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-1m-implicit")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--objectives", default="sgl,simgcl,xsimgcl")
    ap.add_argument("--profiles", default="historical,factorization,high_order",
                    help="CPTPP rows to run per objective; '' runs the joint-trained rows only")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--pretrain-epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--tune", default="prompt", choices=("prompt", "prompt+items"),
                    help="what CPTPP rows train: the prompt layers only (paper mode), or prompt+items, which also "
                         "trains an item table initialized from the encoder (rows labelled '+items')")
    ap.add_argument("--cache", default="runs/cptpp_table",
                    help="finished rows and pre-trained encoders are kept here; a rerun skips them")
    ap.add_argument("--report-only", action="store_true", help="only rebuild the report from --cache")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    profiles = [p for p in args.profiles.split(",") if p]
    cache = Path(args.cache)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    protocol = f"epochs{args.epochs}-pre{args.pretrain_epochs}-pat{args.patience}"
    restore_cache(cache, Path(args.out) / "cptpp.json")
    for name in ([] if args.report_only else args.datasets.split(",")):
        data = load_dataset(name, progress=False)
        for seed in seeds:
            run_dir = cache / name / protocol / f"seed{seed}"
            cell = {"run_dir": run_dir, "seed": seed, "command": command, "cache": cache, "out": Path(args.out)}
            row("LightGCN", partial(RecTask, data, RecConfig(recommender="lightgcn", ks=[5, 20])),
                args.epochs, args.patience, **cell)
            for obj in args.objectives.split(","):
                joint_cfg = RecConfig(recommender=obj, ks=[5, 20])
                row(f"{obj.upper()} (joint, λ={joint_cfg.cl_weight:g})", partial(RecTask, data, joint_cfg),
                    args.epochs, args.patience, **cell)
                if not profiles:  # joint rows only
                    continue
                pre_dir = run_dir / f"pretrain-{obj}"
                if not (pre_dir / "encoder.pt").exists():
                    seed_everything(seed)
                    pre = RecTask(data, RecConfig(recommender=obj, mode="pretrain", ks=[5, 20]))
                    pre_res = run_one(pre, args.pretrain_epochs, seed, patience=0, out=pre_dir / "run")
                    save_pretrained(pre.model, pre_dir)
                    # the keys `cptpp pretrain` records ("data" is how `prompt-tune` re-creates the split)
                    write_json(pre_dir / "config.json", {"data": asdict(DataConfig(dataset=name)), "model": obj,
                                                         "mode": "pretrain", "seed": seed, **pre_res})
                encoder, pre_info = load_pretrained(pre_dir)
                suffix = ", +items" if args.tune == "prompt+items" else ""
                for prof in profiles:
                    row(f"CPTPP-{PROFILES[prof]} ({obj.upper()}{suffix})",
                        partial(PromptTuningTask, encoder, data, PromptTuneConfig(prompt=prof, tune=args.tune, ks=[5, 20])),
                        args.epochs, args.patience, extra_seconds=pre_info["seconds"], **cell)
    write_report(cache, Path(args.out))
    return 0


def restore_cache(cache: Path, report_path: Path) -> None:
    """Write the rows recorded in a previous ``cptpp.json`` back into the cache where they are missing."""
    if not report_path.exists():
        return
    report = json.loads(report_path.read_text())
    for key, section in report["datasets"].items():
        name, protocol = section_parts(key)
        for label, summary in section["rows"].items():
            for result in summary.get("per_seed", []):
                path = cache / name / protocol / f"seed{result['seed']}" / f"{slug(label)}.json"
                if not path.exists():
                    write_json(path, {**result, "label": label, "restored_from": str(report_path)})


def write_report(cache: Path, out: Path) -> None:
    """Rebuild ``cptpp.json``/``cptpp.md`` from every finished row in the cache (all seeds found)."""
    report = {"datasets": {}}
    for protocol_dir in sorted(cache.glob("*/*")):
        rows: dict[str, list[dict]] = {}
        for path in sorted(protocol_dir.glob("seed*/*.json")):
            result = json.loads(path.read_text())
            rows.setdefault(result["label"], []).append(result)
        if rows:
            key = f"{protocol_dir.parent.name} ({protocol_dir.name})"
            report["datasets"][key] = {
                "commands": sorted({r["command"] for rs in rows.values() for r in rs}),
                "rows": {label: summarize(rs) for label, rs in rows.items()}}
    write_json(out / "cptpp.json", report)
    write_markdown(report, out / "cptpp.md")


def summarize(results: list[dict]) -> dict:
    timed = [r["seconds"] for r in results if not r.get("paused")]  # a paused run's wall time means nothing
    out = {"n": len(results), "seeds": sorted(r["seed"] for r in results), "params": results[0]["params"],
           "seconds": statistics.mean(timed) if timed else None,
           "per_seed": [{k: r[k] for k in PER_SEED_KEYS if k in r} for r in sorted(results, key=lambda r: r["seed"])]}
    for m in METRICS:
        vals = [r["test"][m] for r in results]
        out[m] = [statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0]
    return out


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# CPTPP vs joint training", "",
             ("Test metrics at the best-validation epoch; mean ± std over the seeds listed per row. Protocol "
             "per section: `epochsE` = at most E epochs for joint training and prompt tuning (early stopping "
             "on validation Recall@20, patience P; `pat0` = no early stopping: every run trains all E epochs "
             "and is tested at its best validation epoch), `preN` = N epochs of contrastive-only pre-training. "
             "ML-1M is the mirror's implicit 80/20 split (not the paper's unseeded ratings>=4 split, which "
             "cannot be reproduced); validation is a seeded 10% of each user's train items. "
             "Time `s` = training + evaluation seconds (CPTPP rows include their pre-training); — where "
             "the run was paused and its wall time means nothing."), "",
             ("SGL rows follow the library's defaults (cptpp/recsys/config.py): joint SGL is RecBole 1.2.1's "
              "form (each batch user and item against every node of the other view, τ 0.5, λ 0.05), CPTPP's "
              "SGL pre-training is SELFRec's (one InfoNCE over the batch's distinct users and items stacked, "
              "τ 0.2). The SGL rows of earlier versions (a two-term InfoNCE that SGL's reference codes do not "
              "use, with λ lowered to 0.01 to make it learn) were removed when the objective was corrected; "
              "datasets without SGL rows have not been rerun since."),
             "",
             ("CPTPP rows are `paper` mode: encoder frozen, prompt generator + fusion trained, and the "
              "pre-trained embeddings rescaled by one scalar to mean row norm 1 (`rescale`, the default). "
              "Contrastive losses compare cosines, so pre-training leaves the norms at their Xavier size "
              "(ML-1M XSimGCL: 0.045), and against frozen items that small the tanh-bounded prompted user "
              "vector cannot make BPR's logits large. Rows labelled `no rescale` are the same protocol run "
              "before the rescale existed (`cptpp prompt-tune --no-rescale` reproduces them); rows "
              "labelled `+items` also train an item table initialized from the encoder (`--tune prompt+items`: "
              "user embeddings and encoder frozen, no graph propagation during tuning)."),
             ""]
    lines += summary(report)
    for name, section in report["datasets"].items():
        rows = section["rows"]
        lines += [f"## {name}", ""] + [f"Command: `{c}`" for c in section["commands"]] + [
            "", "| model | seeds | " + " | ".join(METRICS) + " | trainable params | s | best epoch per seed |",
            "|---" * (len(METRICS) + 5) + "|"]
        for label, r in sorted(rows.items(), key=lambda kv: row_order(kv[0])):
            cells = [f"{r[m][0]:.4f}" + (f" ± {r[m][1]:.4f}" if r["n"] > 1 else "") for m in METRICS]
            seconds = "—" if r["seconds"] is None else f"{r['seconds']:.0f}"
            best_epochs = ", ".join(str(p.get("best_epoch", "—")) for p in r["per_seed"])
            lines.append(f"| {label} | {len(r['seeds'])} | " + " | ".join(cells)
                         + f" | {r['params']:,} | {seconds} | {best_epochs} |")
        def best_row(keep):  # (Recall@20, label) of the best row whose label passes ``keep``
            return max(((r["recall@20"][0], k) for k, r in rows.items() if keep(k)), default=None)

        joint = best_row(lambda k: not k.startswith("CPTPP"))
        prompt = best_row(lambda k: k.startswith("CPTPP"))
        prompt_r = best_row(lambda k: k.startswith("CPTPP-R"))
        frozen_r = best_row(lambda k: k.startswith("CPTPP-R") and "+items" not in k)
        if joint and prompt:
            best = [("best prompt-tuned", prompt), ("best CPTPP-R", prompt_r),
                    ("best CPTPP-R with the items frozen too", frozen_r if frozen_r != prompt_r else None)]
            lines += ["", f"Best joint-trained: {joint[1]} {joint[0]:.4f}; " + "; ".join(
                f"{what}: {b[1]} {b[0]:.4f} ({relative(b[0], joint[0])} Recall@20)" for what, b in best if b) + "."]
        lines.append("")
    write_text(path, "\n".join(lines) + "\n")


def relative(value: float, reference: float) -> str:
    return f"{(value - reference) / reference * 100:+.1f}%"


def row_order(label: str) -> tuple:
    """LightGCN, the joint-trained rows, then CPTPP by profile (H, M, R) and objective."""
    return (label != "LightGCN", label.startswith("CPTPP"), label)


def summary(report: dict) -> list[str]:
    """Test Recall@20 and NDCG@20 of every row on every dataset side by side (the README's table)."""
    names = list(report["datasets"])
    labels = sorted({k for s in report["datasets"].values() for k in s["rows"]}, key=row_order)

    def cell(name, label, metric):
        r = report["datasets"][name]["rows"].get(label)
        if r is None:
            return "—"
        return f"{r[metric][0]:.4f}" + (f" ± {r[metric][1]:.4f}" if r["n"] > 1 else "")

    parts = [section_parts(n) for n in names]
    datasets = [d for d, _ in parts]
    # a dataset with several protocol sections gets one column pair per protocol (its patience, e.g. pat0)
    titles = [d if datasets.count(d) == 1 else f"{d} {protocol.rsplit('-', 1)[1]}" for d, protocol in parts]
    head = [f"{t} {m}" for t in titles for m in ("R@20", "N@20")]
    lines = ["## Summary: test Recall@20 / NDCG@20", "",
             "Seeds and protocols per dataset in the sections below (mean ± std where a row has several seeds).", "",
             "| model | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for label in labels:
        cells = [cell(n, label, m) for n in names for m in ("recall@20", "ndcg@20")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
