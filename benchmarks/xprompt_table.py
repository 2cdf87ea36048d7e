"""Full fine-tuning vs prompt tuning vs XPrompt on SuperGLUE with a real offline model.

    .venv/bin/python benchmarks/xprompt_table.py                 # defaults: MiniLM, RTE CB WiC BoolQ
    .venv/bin/python benchmarks/xprompt_table.py --model smollm2 --tasks RTE

Protocol (printed and stored): official train split 90/10 (seeded) into train/valid, the official
validation split as test; BoolQ (no train file here) is few-shot: FewGLUE 32 train / dev32 valid.
Defaults aim at ~10-15 minutes on 2 idle CPU cores (estimated from a measured ~0.8 s per MiniLM
training step of 16 x 64 tokens), so the training sets are subsampled (``--max-train``), inputs
truncated (``--max-length``) and valid/test sets capped (``--max-valid``, ``--max-test``); every cut
is written into the results. On shared cores use smaller settings; the committed results record theirs. XPrompt: prompt-tune (stage 1), then for each token ratio score,
prune, rewind to stage 1 and retrain; then pieces, from the best token ratio on validation.

Each task is one `cptpp xprompt` run (``cptpp.peft.pipelines.xprompt``, with its full fine-tuning reference)
in ``--runs`` (default ``runs/xprompt_table-<time>/<task>-seed<seed>``); ``--runs DIR --resume`` continues a
killed table. Needs ``cptpp`` importable (``pip install -e .``) and ``$CPTPP_DATA_MIRROR`` (or the cache).

Writes benchmarks/results/xprompt_table.{json,csv,md} and xprompt_pruning.png.
"""
from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

import torch

from cptpp.io import write_json
from cptpp.peft.pipelines.xprompt import XPromptRunConfig, run_xprompt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def run_task(args, task: str, runs: Path) -> dict:
    """One `cptpp xprompt` run (full fine-tuning reference included) with the table's settings."""
    cfg = XPromptRunConfig(
        model=args.model, task=task, seed=args.seed, train_size=args.max_train, valid_size=args.max_valid,
        test_size=args.max_test, max_len=args.max_length, batch_size=args.batch_size,
        prompt_tokens=args.prompt_tokens, pieces=args.pieces, token_ratios=args.token_ratios,
        piece_ratios=args.piece_ratios, epochs_pt=args.epochs_pt, epochs_retrain=args.epochs_retrain,
        lr_pt=args.lr_pt, patience=args.patience, full_finetune=True, epochs_ft=args.epochs_ft, lr_ft=args.lr_ft)
    t0 = time.perf_counter()
    out = run_xprompt(cfg, runs / f"{task}-seed{args.seed}", resume=args.resume)
    out["seconds"] = time.perf_counter() - t0
    print(f"\n== {task}: {out['sizes']['train']} train / {out['sizes']['valid']} valid / {out['sizes']['test']} test "
          f"({out['protocol']})", flush=True)
    print(f"  full FT       test acc {out['full']['results']['test']['accuracy']:.4f}", flush=True)
    print(f"  prompt tuning test acc {out['prompt']['results']['test']['accuracy']:.4f}", flush=True)
    for r in out["xprompt"]["records"]:
        print(f"  xprompt {r['stage']:<9} kept {r['prompt_params']:>5} values  "
              f"valid {r['valid']['accuracy']:.4f} test {r['test']['accuracy']:.4f}", flush=True)
    return out


def metric_name(task: str) -> str:
    return "score" if task in ("CB", "MultiRC") else "accuracy"


def write_tables(all_runs: list[dict], args, seconds: float) -> None:
    rows = []
    for r in all_runs:
        m = metric_name(r["task"])
        rows.append({
            "task": r["task"], "metric": m, "train": r["sizes"]["train"], "test": r["sizes"]["test"],
            "full_ft": r["full"]["results"]["test"][m], "prompt_tuning": r["prompt"]["results"]["test"][m],
            "xprompt": r["xprompt"]["best"]["test"][m],
            "xprompt_choice": f"{r['xprompt']['best']['level']} {r['xprompt']['best']['ratio']:g}",
            "prompt_params_pt": r["prompt"]["prompt_params"],
            "prompt_params_xprompt": r["xprompt"]["best"]["prompt_params"],
            "trainable_full": r["full"]["trainable"], "trainable_pt": r["prompt"]["trainable"],
        })
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "xprompt_table.json", {"args": recorded_args(args), "seconds": seconds, "runs": all_runs})
    with open(RESULTS / "xprompt_table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        f"Model: {args.model}; test = official SuperGLUE validation split; valid = 10% of official train "
        f"(seed {args.seed}); BoolQ few-shot (FewGLUE 32/dev32). Train subsampled to {args.max_train}, "
        f"valid to {args.max_valid}, "
        f"inputs truncated to {args.max_length} tokens, test capped at {args.max_test}. "
        f"{args.prompt_tokens} prompt tokens, {args.pieces} pieces. Total {seconds / 60:.1f} min on CPU.",
        "",
        "| task | metric | full FT | prompt tuning | XPrompt (choice) | prompt values PT -> XPrompt |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['task']} | {r['metric']} | {100 * r['full_ft']:.1f} | {100 * r['prompt_tuning']:.1f} | "
                     f"{100 * r['xprompt']:.1f} ({r['xprompt_choice']}) | "
                     f"{r['prompt_params_pt']} -> {r['prompt_params_xprompt']} |")
    lines += ["", "Test accuracy after each pruning step (rewind + retrain):", "",
              "| task | level | ratio | prompt values | valid acc | test acc |", "|---|---|---|---|---|---|"]
    for r in all_runs:
        for rec in r["xprompt"]["records"]:
            lines.append(f"| {r['task']} | {rec['level']} | {rec['ratio']:g} | {rec['prompt_params']} | "
                         f"{100 * rec['valid']['accuracy']:.1f} | {100 * rec['test']['accuracy']:.1f} |")
    (RESULTS / "xprompt_table.md").write_text("\n".join(lines) + "\n")
    plot(all_runs, RESULTS / "xprompt_pruning.png")


def plot(all_runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_runs), figsize=(3.2 * len(all_runs), 3), squeeze=False)
    for ax, r in zip(axes[0], all_runs):
        for level, marker in (("token", "o"), ("piece", "s")):
            recs = [x for x in r["xprompt"]["records"] if x["level"] == level]
            if recs:
                ax.plot([x["ratio"] for x in recs], [100 * x["test"]["accuracy"] for x in recs], marker=marker,
                        label=f"XPrompt {level} pruning")
        ax.axhline(100 * r["prompt"]["results"]["test"]["accuracy"], color="gray", ls="--", label="prompt tuning")
        ax.axhline(100 * r["full"]["results"]["test"]["accuracy"], color="k", ls=":", label="full FT")
        ax.set_title(r["task"])
        ax.set_xlabel("pruning ratio")
        ax.set_ylabel("test accuracy (%)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args(argv=None):
    floats = lambda s: [float(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="minilm, smollm2 or a local HF model folder")
    p.add_argument("--tasks", default="RTE,CB,WiC,BoolQ")
    p.add_argument("--max-train", type=int, default=128)
    p.add_argument("--max-valid", type=int, default=64)
    p.add_argument("--max-test", type=int, default=200)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--prompt-tokens", type=int, default=20)
    p.add_argument("--pieces", type=int, default=16)
    p.add_argument("--token-ratios", type=floats, default=[0.3, 0.6, 0.9])
    p.add_argument("--piece-ratios", type=floats, default=[0.5])
    p.add_argument("--epochs-ft", type=int, default=2)
    p.add_argument("--epochs-pt", type=int, default=3)
    p.add_argument("--epochs-retrain", type=int, default=2)
    p.add_argument("--lr-ft", type=float, default=5e-5)
    p.add_argument("--lr-pt", type=float, default=1e-2)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", default=None, help="folder for the `cptpp xprompt` run folders (default: "
                   "runs/xprompt_table-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --runs (a killed table)")
    return p.parse_args(argv)


def recorded_args(args) -> dict:
    """The table's settings as stored in its json (where its run folders were is not a setting)."""
    return {k: v for k, v in vars(args).items() if k not in ("runs", "resume")}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    runs_dir = Path(args.runs or time.strftime("runs/xprompt_table-%Y%m%d-%H%M%S"))
    t0 = time.perf_counter()
    runs = [run_task(args, t, runs_dir) for t in args.tasks.split(",") if t]
    seconds = time.perf_counter() - t0
    write_tables(runs, args, seconds)
    print(f"\nwrote {RESULTS}/xprompt_table.{{json,csv,md}} and xprompt_pruning.png ({seconds / 60:.1f} min)")
    print((RESULTS / "xprompt_table.md").read_text())


if __name__ == "__main__":
    main()
