"""MambaPEFT table: each method vs full fine-tuning, a random-init floor and a constant baseline, on tasks a
small byte-level Mamba can learn (UD-POS tagging, PAN-X NER, TNCC-title topics), several seeds.

    python benchmarks/mamba_table.py --runs runs/mamba-table-smoke     # tiny random Mamba, no pre-training: a smoke run
    # the recorded command (see "Cost" below): a base from `cptpp mamba-pretrain`, 2 seeds
    python benchmarks/mamba_table.py --model runs/mamba-byte --runs runs/mamba-table --resume \\
        --seeds 0,1 --max-train 128 --max-eval 200 --max-len 128 --epochs 3 --trials 4

Rows per task: the constant baseline (always the training set's most frequent tag / topic); the random-init
floor (full fine-tuning of an untrained model of the base's architecture: what pre-training adds); full
fine-tuning of the base (the ceiling); each single MambaPEFT method (``cptpp.peft.mamba.search.SINGLE_METHODS``;
a linear head trains with every method); the searched hybrid (``hybrid_search``: ``--trials`` Optuna trials
ranked on validation, run once per task at seed ``SEARCH_SEED``, then its best config is trained with every
reported seed). Inputs are UTF-8 bytes; how words and titles are read is in
:mod:`cptpp.peft.mamba.classification`. Numbers: test metric at the best validation epoch (POS token accuracy,
NER entity F1, TNCC macro-F1), mean ± sample std over ``--seeds`` (the seed draws the ``--max-train``
training subsample, the head, the adapters and the batch order; evaluation sets are fixed). Trainable
parameters include the head; peak memory is each run's own process (peak RSS on CPU, peak allocated CUDA
memory on a GPU), CPU time its process time.

Resumable: each (task, method, seed) runs in its own process and writes ``RUNS/<task>/<method>/seed<k>.json``
when done; ``--resume`` skips finished runs (the search continues from ``RUNS/<task>/search/study.db``) and
refuses settings that differ from ``RUNS/settings.json`` except ``--seeds``, ``--tasks``, ``--device``,
``--threads``. The table is rebuilt from whatever runs are finished.

Cost of the recorded command (measured 2026-12-03, one thread, niced, on a 2-core machine busy with other
jobs, with a random 2.7M-parameter base: hidden 256, 6 layers, state 16 -- speed does not depend on the
weights). CPU seconds per run, 3 epochs, evaluations included, interpreter start-up (~4 s) not, at
``--max-len 192`` (the measurement) and scaled to 128 by bytes (TNCC inputs are cut to it; few UD-POS / PAN-X
training sentences are longer):

    task   full FT / floor   LoRA in_proj x (r=64)   Additional-scan (N'=6)   at --max-len 128 (est.)
    pos           82                  68                      -                 ~75 per run
    ner           44                   -                      -                 ~42
    tncc         173                   -                     213                ~120

PEFT runs are not cheaper than full fine-tuning here: the frozen base still backpropagates through every
activation, and Additional-scan enlarges the scan (22 states instead of 16). Per task 28 trained runs
(floor and full FT, 9 methods and the hybrid, at 2 seeds; 4 search trials): pos ~35 min, ner ~20 min,
tncc ~57 min, about 2 CPU-hours in all (less on an idle core). Peak RSS per run 1.2-1.4 GB (0.4 GB of
it the interpreter with torch and transformers). To split the work over sessions run ``--tasks pos,ner``
first and ``--tasks tncc`` later with the same ``--runs`` and ``--resume``; the table covers every task in ``--runs``.

Writes ``--out``/mamba_table.{json,md} (default ``benchmarks/results``). The commonsense multiple-choice
table is ``benchmarks/mamba_commonsense.py`` (secondary).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # peak_rss (the launcher that measures each run's own peak memory)

TASKS = ("pos", "ner", "tncc")
TASK_NAMES = {"pos": "UD-POS (English), token accuracy", "ner": "PAN-X NER (English), entity F1",
              "tncc": "TNCC-title (Tibetan, 12 topics), macro-F1"}
SEARCH_SEED = 100  # the hybrid search's own seed: its trials never use a reported seed
FULL_LR = 1e-3
# rows in table order: (key, name); the PEFT rows come from SINGLE_METHODS
BASELINES = [("constant", "constant (majority class)"), ("random_init", "random-init floor (full FT, no pre-training)"),
             ("full", "full fine-tuning")]
HYBRID = ("hybrid", "searched hybrid")
# settings that may change between sessions of one runs folder
RESUMABLE = ("seeds", "tasks", "device", "threads", "resume", "in_process", "only", "out", "runs")


def single_methods():
    from cptpp.peft.mamba.search import SINGLE_METHODS
    return SINGLE_METHODS


def row_keys() -> list[tuple[str, str]]:
    return BASELINES + [(k, name) for k, name, _, _ in single_methods()] + [HYBRID]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="base: a `cptpp mamba-pretrain` folder (default: tiny random Mamba)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, from {', '.join(TASKS)}")
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (at least 2 for a std)")
    p.add_argument("--max-train", type=int, default=128, help="training sentences / titles per seed (0 = all)")
    p.add_argument("--max-eval", type=int, default=200, help="validation and test sentences / titles (0 = all)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--patience", type=int, default=2, help="epochs without validation gain before stopping")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-len", type=int, default=128,
                   help="training inputs (and titles, question included) cut to this many bytes")
    p.add_argument("--eval-batch-size", type=int, default=16)
    p.add_argument("--trials", type=int, default=4, help="hybrid search trials per task (0 = no hybrid row)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--runs", default="runs/mamba-table", help="folder of per-run results (resumable)")
    p.add_argument("--resume", action="store_true", help="keep finished runs in --runs, run the rest")
    p.add_argument("--in-process", action="store_true",
                   help="run everything in this process (tests; no per-run peak memory)")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # worker: TASK/KEY/SEED
    p.add_argument("--out", default=str(HERE / "results"))
    args = p.parse_args(argv)
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    bad = [t for t in args.tasks if t not in TASKS]
    if bad:
        p.error(f"--tasks: unknown {bad}; choose from {', '.join(TASKS)}")
    if not args.seeds:
        p.error("--seeds: give at least one seed")
    return args


# --------------------------------------------------------------------------- one run (in a worker process)

def run_path(runs: Path, task: str, key: str, seed: int) -> Path:
    return runs / task / key / f"seed{seed}.json"


def _base(args):
    import torch

    from cptpp.peft.mamba.experiment import load_base
    from cptpp.train.loop import resolve_device

    torch.set_num_threads(args.threads)
    base = load_base(args.model, seed=0, device=str(resolve_device(args.device)))
    if args.model is None:
        base.description = "tiny random byte-level Mamba (hidden 32, 2 layers), not pre-trained: a smoke run only"
    return base


def _train_config(args, lr: float, seed: int):
    from cptpp.train import TrainConfig
    return TrainConfig(epochs=args.epochs, lr=lr, seed=seed, patience=args.patience, progress=False)


def _data(args, task: str, seed: int):
    from cptpp.peft.mamba.classification import load_task
    return load_task(task, seed, max_train=args.max_train or None, max_eval=args.max_eval or None)


def run_one(args, task: str, key: str, seed: int) -> dict:
    """Train / score one row of one task at one seed; returns its record (also written to its run file)."""
    import torch

    from cptpp.io import write_json
    from cptpp.peft.mamba.classification import constant_baseline, finetune_classifier
    from cptpp.peft.mamba.tuners import MambaPeftConfig

    t0, c0 = time.perf_counter(), time.process_time()
    runs = Path(args.runs)
    base = _base(args)
    data = _data(args, task, seed)
    device = next(base.model.parameters()).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    methods = {k: (cfg, lr) for k, _, cfg, lr in single_methods()}
    record = {"task": task, "method": key, "seed": seed, "base": base.description, "data": data.protocol,
              "sizes": data.sizes(), "metric": data.metric}
    if key == "constant":
        res = constant_baseline(data)
        record |= {"valid": res["valid"], "test": res["test"], "constant": res["constant"], "trainable_params": 0,
                   "trainable_percent": 0.0, "config": None, "lr": None}
    else:
        lm, cfg, lr = base.model, None, FULL_LR
        if key == "random_init":
            from transformers import MambaForCausalLM
            torch.manual_seed(seed)
            lm = MambaForCausalLM(base.model.config).to(device)
        elif key == "hybrid":
            best = json.loads((runs / task / "search" / "best.json").read_text())
            cfg, lr = MambaPeftConfig(**best["config"]), best["lr"]
        elif key != "full":
            cfg, lr = methods[key]
        res = finetune_classifier(lm, data, cfg, _train_config(args, lr, seed), max_len=args.max_len,
                                  batch_size=args.batch_size, eval_batch_size=args.eval_batch_size)
        record |= {"valid": res["valid"], "test": res["test"], "best_epoch": res.get("best_epoch"),
                   "stopped": res.get("stopped"), "trainable_params": res["trainable_params"],
                   "base_params": res["base_params"], "trainable_percent": res["trainable_percent"],
                   "config": None if cfg is None else cfg.methods(), "lr": lr}
    record |= {"cpu_seconds": time.process_time() - c0, "wall_seconds": time.perf_counter() - t0,
               "threads": args.threads, "device": str(device), "torch": torch.__version__}
    if not args.in_process:
        record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        record["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    write_json(run_path(runs, task, key, seed), record)
    return record


def run_search(args, task: str) -> dict:
    """The hybrid search of one task (resumable: ``RUNS/<task>/search``); returns its best record."""
    from cptpp.peft.mamba.classification import finetune_classifier
    from cptpp.peft.mamba.search import hybrid_search

    base = _base(args)
    data = _data(args, task, SEARCH_SEED)
    out = Path(args.runs) / task / "search"

    def trial(cfg, lr):
        return finetune_classifier(base.model, data, cfg, _train_config(args, lr, SEARCH_SEED),
                                   max_len=args.max_len, batch_size=args.batch_size,
                                   eval_batch_size=args.eval_batch_size)

    return hybrid_search(trial, args.trials, out, seed=SEARCH_SEED, metric=data.metric,
                         resume=(out / "study.db").exists())


# --------------------------------------------------------------------------- the driver

def _check_settings(args) -> None:
    from cptpp.config import ConfigError, config_differences
    from cptpp.io import write_json

    runs = Path(args.runs)
    now = {k: v for k, v in vars(args).items() if k not in RESUMABLE}
    saved_path = runs / "settings.json"
    if saved_path.exists():
        if not args.resume:
            raise ConfigError(f"{runs} already holds runs ({saved_path}); pass --resume to continue them "
                              "or choose another --runs")
        diff = config_differences(json.loads(saved_path.read_text()), now)
        if diff:
            raise ConfigError(f"{saved_path}: cannot resume with different settings ("
                              + "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff)
                              + f"); only {', '.join(r for r in RESUMABLE if r not in ('only', 'resume'))} may change")
    else:
        write_json(saved_path, now)


def _worker_cmd(argv: list[str], only: str, rss_file: Path) -> list[str]:
    import peak_rss
    return peak_rss.measured([sys.executable, str(Path(__file__).resolve()), *argv, "--only", only], rss_file)


def _launch(args, argv, only: str) -> None:
    if args.in_process:
        task, key, seed = only.split("/")
        run_search(args, task) if key == "search" else run_one(args, task, key, int(seed))
        return
    rss = Path(args.runs) / "rss" / (only.replace("/", "_") + ".kib")
    rss.parent.mkdir(parents=True, exist_ok=True)
    code = subprocess.run(_worker_cmd(argv, only, rss)).returncode
    if code != 0:
        raise SystemExit(f"run {only} failed (exit {code}); rerun with --resume to continue after fixing it")


def drive(args, argv: list[str]) -> None:
    """Run every missing (task, row, seed), the search before the hybrid rows."""
    runs = Path(args.runs)
    for task in args.tasks:
        for key, name in row_keys():
            if key == "hybrid":
                if args.trials <= 0:
                    continue
                if not (runs / task / "search" / "best.json").exists() or _search_unfinished(runs / task, args):
                    print(f"[{task}] hybrid search ({args.trials} trials)", flush=True)
                    _launch(args, argv, f"{task}/search/{SEARCH_SEED}")
            for seed in args.seeds:
                if run_path(runs, task, key, seed).exists():
                    continue
                print(f"[{task}] {name}, seed {seed}", flush=True)
                _launch(args, argv, f"{task}/{key}/{seed}")


def _search_unfinished(folder: Path, args) -> bool:
    best = json.loads((folder / "search" / "best.json").read_text())
    return best.get("n_trials", 0) < args.trials


# --------------------------------------------------------------------------- the table

def collect(runs: Path, tasks: list[str], seeds: list[int]) -> dict[str, list[dict]]:
    """Per task, one summary per row with finished runs: the per-seed values and their mean ± std."""
    from cptpp.peft.pipelines.seeds import mean_std

    out: dict[str, list[dict]] = {}
    for task in tasks:
        rows = []
        for key, name in row_keys():
            recs = [json.loads(p.read_text()) for s in seeds if (p := run_path(runs, task, key, s)).exists()]
            if not recs:
                continue
            metric = recs[0]["metric"]
            valid = [r["valid"][metric] for r in recs]
            test = [r["test"][metric] for r in recs]

            def avg(field):
                vals = [r[field] for r in recs if r.get(field) is not None]
                return sum(vals) / len(vals) if vals else None

            rows.append({"key": key, "method": name, "metric": metric, "seeds": [r["seed"] for r in recs],
                         "valid": mean_std(valid), "test": mean_std(test), "valid_values": valid,
                         "test_values": test, "trainable_params": recs[0]["trainable_params"],
                         "trainable_percent": recs[0]["trainable_percent"], "config": recs[0].get("config"),
                         "lr": recs[0].get("lr"), "peak_rss_mb": avg("peak_rss_mb"),
                         "peak_cuda_mb": avg("peak_cuda_mb"), "cpu_seconds": [r.get("cpu_seconds") for r in recs],
                         "base": recs[0]["base"], "data": recs[0]["data"],
                         "sizes": recs[0]["sizes"]})
        out[task] = rows
    return out


def claims(rows: list[dict]) -> dict[str, str]:
    """Verdicts on the acceptance check and the paper's three claims for one task's rows, on test means; the
    best single method is the one with the best *validation* mean. "Clearly above" is the tables' shared
    rule (``seeds.clearly_above``: at least two seeds and mean - 2 std above the other row's mean); "matches"
    allows the larger of the two stds (at least 0.005)."""
    from cptpp.peft.pipelines.seeds import clearly_above

    by = {r["key"]: r for r in rows}
    single_keys = [k for k, _, _, _ in single_methods() if k in by]
    out: dict[str, str] = {}

    def t(k):
        return by[k]["test"][0]

    if "full" in by:
        for other in ("random_init", "constant"):
            if other in by:
                ok = clearly_above(by["full"]["test_values"], t(other))
                out[f"full FT clearly above {other}"] = f"{'yes' if ok else 'NO'} ({t('full'):.3f} vs {t(other):.3f})"
    if single_keys and "full" in by:
        best = max(single_keys, key=lambda k: by[k]["valid"][0])
        ok = t(best) >= t("full") - max(0.005, by[best]["test"][1], by["full"]["test"][1])
        out["PEFT matches or beats full FT"] = (f"{'yes' if ok else 'no'}: best single method on validation, "
                                                f"{by[best]['method']}, {t(best):.3f} vs full FT {t('full'):.3f}")
    if len(single_keys) >= 3:
        # 1 + the number of methods strictly better on test (ties share a rank)
        ranks = {k: 1 + sum(t(o) > t(k) for o in single_keys) for k in ("lora_in_proj_x", "additional_scan")
                 if k in single_keys}
        top = max(3, len(single_keys) // 3)
        ok = all(r <= top for r in ranks.values())
        out["LoRA in_proj and Additional-scan among the best single methods"] = (
            f"{'yes' if ok else 'no'}: test ranks " + ", ".join(f"{k} {r}/{len(single_keys)}" for k, r in ranks.items())
            + f" (among the best = top {top})")
    if single_keys and "hybrid" in by:
        best = max(single_keys, key=lambda k: by[k]["valid"][0])
        ok = t("hybrid") > t(best)
        out["searched hybrid beats the best single method"] = (
            f"{'yes' if ok else 'no'}: {t('hybrid'):.3f} vs {by[best]['method']} {t(best):.3f}")
    return out


def render(table: dict[str, list[dict]], verdicts: dict[str, dict[str, str]]) -> str:
    from cptpp.peft.pipelines.seeds import cpu_minutes, format_mean_std

    lines = []
    for task, rows in table.items():
        if not rows:
            continue
        lines += [f"### {TASK_NAMES[task]}", "", f"Base: {rows[0]['base']}.", f"Data: {rows[0]['data']}; sizes "
                  + ", ".join(f"{k} {v}" for k, v in rows[0]["sizes"].items()) + ".", "",
                  f"| method | trainable params | % of base | valid {rows[0]['metric']} | test {rows[0]['metric']} "
                  "| seeds | peak memory MB | CPU min / run |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            mem = r["peak_cuda_mb"] if r["peak_cuda_mb"] is not None else r["peak_rss_mb"]
            lines.append(f"| {r['method']} | {r['trainable_params']:,} | {r['trainable_percent']:.2f} | "
                         f"{format_mean_std(r['valid_values'])} | {format_mean_std(r['test_values'])} | "
                         f"{len(r['seeds'])} | {'—' if mem is None else f'{mem:.0f}'} | {cpu_minutes(r['cpu_seconds'])} |")
        hybrid = [r for r in rows if r["key"] == "hybrid"]
        if hybrid:
            lines += ["", f"Searched hybrid: {', '.join(hybrid[0]['config'])}; lr {hybrid[0]['lr']:.2e}."]
        lines += ["", "Test metric (x100) at the best validation epoch, mean ± sample std over seeds. Trainable "
                  "parameters include the linear head. Peak memory: each run's own process (peak RSS on CPU, about "
                  "0.4 GB of it the interpreter with torch and transformers; peak allocated memory on CUDA); CPU "
                  "min: its process time."]
        lines += ["", "Claims (test means; best single method chosen on validation):"]
        lines += [f"- {k}: {v}" for k, v in verdicts[task].items()] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.only:
        task, key, seed = args.only.split("/")
        run_search(args, task) if key == "search" else run_one(args, task, key, int(seed))
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    from cptpp.io import write_json, write_text

    _check_settings(args)
    t0 = time.perf_counter()
    drive(args, [a for a in argv if a != "--resume"])
    # every task with runs in the folder (an earlier session may have run other --tasks)
    table = collect(Path(args.runs), [t for t in TASKS if (Path(args.runs) / t).is_dir()], args.seeds)
    verdicts = {task: claims(rows) for task, rows in table.items()}
    shown = {k: v for k, v in vars(args).items() if k not in ("only", "in_process", "out")}
    results = {"args": shown, "command": "python benchmarks/mamba_table.py "
               + " ".join(a for a in argv if a != "--in-process"), "tables": table, "claims": verdicts,
               "search_seed": SEARCH_SEED, "seconds_this_session": time.perf_counter() - t0}
    out = Path(args.out)
    markdown = render(table, verdicts)
    write_json(out / "mamba_table.json", results)
    write_text(out / "mamba_table.md", markdown)
    print(markdown)
    print(f"wrote {out / 'mamba_table.json'} and {out / 'mamba_table.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
