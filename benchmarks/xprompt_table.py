"""Full fine-tuning vs linear probe vs prompt tuning vs XPrompt on SuperGLUE, mean ± std over seeds.

    python benchmarks/xprompt_table.py --seeds 0,1,2 --runs runs/xprompt_table            # then, if killed:
    python benchmarks/xprompt_table.py --seeds 0,1,2 --runs runs/xprompt_table --resume

Recorded command (Gemma 3 270M; RTE on 250 training examples, CB on its whole training split; three seeds;
estimated ~1.9 CPU-hours at one thread, see the sizing notes below). Its options are the defaults:

    nohup nice -n 19 python benchmarks/xprompt_table.py --model gemma3-270m --tasks RTE,CB --seeds 0,1,2 \
        --methods probe,xprompt --max-train 250 --max-valid 100 --max-test 0 --max-length 96 --batch-size 8 \
        --epochs-pt 1 --epochs-retrain 1 --token-ratios 0.5 --piece-ratios "" --threads 1 \
        --runs runs/xprompt_table --resume > runs/xprompt_table.log 2>&1 &

Protocol (printed and stored): official train split 90/10 (seeded) into train/valid, the official validation
split as test; BoolQ (no train file here) is few-shot: FewGLUE 32 train / dev32 valid. Every cut
(``--max-train``, ``--max-valid``, ``--max-test``, ``--max-length``; 0 = no cut) is written into the results.
XPrompt: prompt-tune (stage 1), then for each token ratio score, prune, rewind to stage 1 and retrain; then
pieces, from the best token ratio on validation. The probe is a linear head on the frozen model's pooled
features (mean-pooled for an encoder, the last real token for a decoder), computed once: the reference a
parameter-efficient method must beat. Beside them the best constant answer on the test labels.

Each (task, seed) is one `cptpp xprompt` run (``cptpp.peft.pipelines.xprompt``; its stages are the methods) in
``--runs``/<task>-seed<seed>; ``--resume`` continues killed runs and reads finished ones back (a finished run is
never redone). CPU time per method comes from each run's timing.json (stage CPU seconds). Needs ``cptpp``
importable (``pip install -e .``) and ``$CPTPP_DATA_MIRROR`` (or the cache).

Sizing notes (gemma3-270m, one thread, nice 19 beside two busy processes, 2026-12-03; CPU seconds): a prompt
-tuning step costs ~11.4 ms per position (8 RTE examples of 81 tokens + 20 prompt positions: 9.2 s), a forward
pass ~5.5 ms per position (the probe's features, every evaluation); XPrompt's importance scores cost a training
pass. Token lengths (Gemma tokenizer, cut at 96): RTE 69, CB 78 (WiC 40, BoolQ 93; BoolQ's test split has
3,270 examples). Per seed: CB (225 train / 25 valid / 56 test) probe 2 + prompt 5 + token0.5 9 = ~16 min; RTE
(250 / 100 / 277) 4 + 7 + 12 = ~23 min; three seeds ~1.9 CPU-hours. Full training sets do not fit: one
prompt-tuning epoch over RTE's 2,241 examples is ~38 CPU-minutes, WiC's 4,885 ~55, each XPrompt pruning step
costs two such passes, and a piece-pruning step would add ~40% to the table. Full fine-tuning (``full``)
updates all 268M parameters with AdamW every step (not timed here: its first steps did not finish inside the
timing budget); it is left out for the same reason.

Writes benchmarks/results/xprompt_table.{json,md}.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from cptpp.peft.pipelines.seeds import (best_constant, clearly_above, cpu_minutes, format_mean_std,
                                        protocol_over_seeds, run_or_read, write_table)
from cptpp.peft.pipelines.xprompt import XPromptRunConfig, run_xprompt

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("full", "probe", "prompt", "xprompt")  # table rows; prompt tuning always runs (XPrompt's stage 1)


def run_config(args, task: str, seed: int) -> XPromptRunConfig:
    methods = set(args.methods.split(","))
    return XPromptRunConfig(
        model=args.model, task=task, seed=seed, train_size=args.max_train, valid_size=args.max_valid,
        test_size=args.max_test, max_len=args.max_length, batch_size=args.batch_size,
        prompt_tokens=args.prompt_tokens, pieces=args.pieces, token_ratios=args.token_ratios,
        piece_ratios=args.piece_ratios, epochs_pt=args.epochs_pt, epochs_retrain=args.epochs_retrain,
        lr_pt=args.lr_pt, patience=args.patience, full_finetune="full" in methods, epochs_ft=args.epochs_ft,
        lr_ft=args.lr_ft, probe="probe" in methods, epochs_probe=args.epochs_probe, lr_probe=args.lr_probe)


def method_rows(res: dict, timing: dict) -> dict[str, dict]:
    """Per method of one run: test/valid metrics, trainable parameters, CPU seconds (None if not recorded)."""
    stage_cpu = timing.get("stage_cpu_seconds", {})
    rows = {}
    for m in ("full", "probe", "prompt"):
        if m in res:
            rows[m] = {"test": res[m]["results"]["test"], "valid": res[m]["results"]["valid"],
                       "trainable": res[m]["trainable"], "cpu_seconds": stage_cpu.get(m)}
    best = res["xprompt"]["best"]
    if best is not None:
        stages = [r["stage"] for r in res["xprompt"]["records"]]
        cpu = [stage_cpu.get(s) for s in ["prompt", *stages]]
        rows["xprompt"] = {"test": best["test"], "valid": best["valid"], "choice": f"{best['level']} {best['ratio']:g}",
                           "trainable": best["prompt_params"],
                           "cpu_seconds": None if None in cpu else sum(cpu)}
    return rows


def constant_baseline(task: str, cfg: XPromptRunConfig) -> float:
    """The best constant answer's score on this run's test labels (the task's metric)."""
    from cptpp.peft.superglue import LABELS, load_task, task_metrics

    few = task == "BoolQ"
    splits = load_task(task, few_shot=few, seed=cfg.seed, max_train=None if few else (cfg.train_size or None),
                       max_valid=cfg.valid_size or None, max_test=cfg.test_size or None)
    gold = [e.label for e in splits.test]
    groups = [e.group for e in splits.test]
    score, _ = best_constant(gold, lambda p, g: task_metrics(task, p, g, groups)["score"],
                             range(len(LABELS[task])))
    return score


def summarize(per_seed: list[dict], baselines: list[float]) -> dict:
    """One task's rows over seeds: values per method, mean ± std, and whether it beats the baseline."""
    baseline = sum(baselines) / len(baselines)
    out = {"baseline": baseline, "methods": {}}
    for m in METHODS:
        runs = [r["rows"][m] for r in per_seed if m in r["rows"]]
        if not runs:
            continue
        scores = [r["test"]["score"] for r in runs]
        out["methods"][m] = {
            "test_score": scores, "valid_score": [r["valid"]["score"] for r in runs],
            "trainable": runs[0]["trainable"], "cpu_seconds": [r["cpu_seconds"] for r in runs],
            "choice": [r["choice"] for r in runs if "choice" in r],
            "seeds": [r["seed"] for r in per_seed if m in r["rows"]],
            "clearly_above_baseline": clearly_above(scores, baseline)}
    return out


LABEL = {"full": "full fine-tuning", "probe": "linear probe (frozen, reference)", "prompt": "prompt tuning",
         "xprompt": "XPrompt (best ratio on valid)"}


def markdown(results: dict) -> str:
    a = argparse.Namespace(**results["args"])
    lines = [f"Model: {a.model}; test = official SuperGLUE validation split; valid = 10% of official train "
             f"(seeded per seed); BoolQ few-shot (FewGLUE 32/dev32). Cuts (0 = none): train {a.max_train}, valid "
             f"{a.max_valid}, test {a.max_test}, {a.max_length} tokens. Seeds {a.seeds}; test score x100, mean ± std "
             f"over seeds; ✓ = mean - 2 std above the best constant answer. {a.prompt_tokens} prompt tokens, "
             f"{a.pieces} pieces. Total {results['cpu_seconds'] / 60:.1f} CPU-minutes in this session.", ""]
    for task, block in results["tasks"].items():
        lines += [f"**{task}** ({block['protocol']}; {block['sizes']['train']} train / {block['sizes']['valid']} "
                  f"valid / {block['sizes']['test']} test)", "",
                  "| method | trainable params | CPU min / run | test score | > baseline |",
                  "|---|---:|---:|---:|:-:|",
                  f"| best constant answer | 0 | 0 | {100 * block['baseline']:.1f} | |"]
        for m, r in block["methods"].items():
            label = LABEL[m] + (f" ({', '.join(sorted(set(r['choice'])))})" if r["choice"] else "")
            lines.append(f"| {label} | {r['trainable']:,} | {cpu_minutes(r['cpu_seconds'])} | "
                         f"{format_mean_std(r['test_score'])} | {'✓' if r['clearly_above_baseline'] else ''} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv=None):
    floats = lambda s: [float(x) for x in s.split(",") if x]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="gemma3-270m", help="a model registry name or a local HF model folder")
    p.add_argument("--tasks", default="RTE,CB")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated; one run per (task, seed)")
    p.add_argument("--methods", default="probe,xprompt", help="any of full, probe, xprompt (prompt tuning, "
                   "XPrompt's stage 1, always runs)")
    p.add_argument("--max-train", type=int, default=250, help="training examples (0: all)")
    p.add_argument("--max-valid", type=int, default=100)
    p.add_argument("--max-test", type=int, default=0)
    p.add_argument("--max-length", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt-tokens", type=int, default=20)
    p.add_argument("--pieces", type=int, default=16)
    p.add_argument("--token-ratios", type=floats, default=[0.5])
    p.add_argument("--piece-ratios", type=floats, default=[], help='comma-separated; "" for none')
    p.add_argument("--epochs-ft", type=int, default=1)
    p.add_argument("--epochs-pt", type=int, default=1)
    p.add_argument("--epochs-retrain", type=int, default=1)
    p.add_argument("--epochs-probe", type=int, default=30)
    p.add_argument("--lr-ft", type=float, default=2e-5)
    p.add_argument("--lr-pt", type=float, default=1e-2)
    p.add_argument("--lr-probe", type=float, default=1e-2)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", default=None, help="folder of the `cptpp xprompt` run folders (default: "
                   "runs/xprompt_table-<time>)")
    p.add_argument("--resume", action="store_true", help="continue killed runs in --runs, read finished ones")
    p.add_argument("--out", default=str(RESULTS), help="folder for xprompt_table.{json,md}")
    return p.parse_args(argv)


def recorded_args(args) -> dict:
    """The table's settings as stored in its json (where its run folders were is not a setting)."""
    return {k: v for k, v in vars(args).items() if k not in ("runs", "resume", "out")}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    runs_dir = Path(args.runs or time.strftime("runs/xprompt_table-%Y%m%d-%H%M%S"))
    seeds = [int(s) for s in args.seeds.split(",") if s]
    t0 = time.process_time()
    results = {"args": recorded_args(args), "tasks": {}}
    for task in [t for t in args.tasks.split(",") if t]:
        per_seed, baselines = [], []
        for seed in seeds:
            cfg = run_config(args, task, seed)
            res, timing = run_or_read("xprompt", cfg, runs_dir / f"{task}-seed{seed}", run_xprompt, args.resume)
            per_seed.append({"seed": seed, "rows": method_rows(res, timing)})
            baselines.append(constant_baseline(task, cfg))
            print(f"{task} seed {seed}: " + ", ".join(f"{m} {100 * r['test']['score']:.1f}"
                                                      for m, r in per_seed[-1]["rows"].items()), flush=True)
        results["tasks"][task] = {"protocol": protocol_over_seeds(res["protocol"]), "sizes": res["sizes"],
                                  **summarize(per_seed, baselines)}
    results["cpu_seconds"] = time.process_time() - t0
    write_table(args.out, "xprompt_table", results, markdown(results))
    return results


if __name__ == "__main__":
    main()
