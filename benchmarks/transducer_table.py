"""Transducer Tuning vs PEFT baselines on the mirror's code tasks: per task, per method (mean ± std over seeds)
the trainable parameters, peak memory, training CPU time, and BLEU / CodeBLEU / EM / sBLEU / ChrF.

The recorded command of the Qwen2.5-Coder-0.5B table (issue 21); rerun as it is, it resumes (see "Resume"):

    nice -n 19 .venv/bin/python benchmarks/transducer_table.py --model qwen2.5-coder-0.5b --seeds 0,1 \\
        --methods frozen,frozen-instruct,transducer,transducer-as-released,lora,transducer-shuffled,transducer-zeros,prompt,prefix,ia3 \\
        --train-size 96 --valid-size 16 --test-size 32 --eval-batch-size 32 --max-source 64 --max-target 48 \\
        --lr 1e-3 --method-lr transducer=1e-3,prompt=3e-2,prefix=1e-2,ia3=3e-3 --jobs 2

The Transducers' rate (1e-3, for both fusions) was chosen on validation loss by a sweep on translation, seed 0
(records in benchmarks/results/transducer_lr_sweep/lr<LR>/, each from the command above with ``--tasks
translation --seeds 0 --methods transducer,transducer-as-released --method-lr transducer=<LR> --runs
benchmarks/results/transducer_lr_sweep/lr<LR> --out benchmarks/results/transducer_lr_sweep/lr<LR>``):
cross-attention valid loss 0.839 / 0.872 / 0.786 at 1e-2 / 3e-3 / 1e-3 (test BLEU 41.5 / 42.7 / 45.1;
at 1e-2 seed 1 fell to BLEU 22.5); as-released valid loss 3.09 / 3.04 / 3.12 and test BLEU 0.0 at every rate
(its ungated layer perturbs every input embedding from the first step). prompt / prefix / ia3 rates are
not tuned yet.

It costs about 5 CPU-hours (2.5 h wall with --jobs 2 on two free cores; a worker peaked at 9-12 GB RSS in the
Qwen runs of 2026-12-03, so --jobs 2 needs most of a 24 GB machine).
Its first five methods alone (``--methods frozen,frozen-instruct,transducer,transducer-as-released,lora``, the
same other options and ``--runs``) cost about 2 CPU-hours and are reused by the full command. Adding ``full``
costs ~0.9 CPU-h more and 13 GB per worker (``--jobs 1`` on a 24 GB machine). The old SmolLM2 smoke table (one
seed, 32 pairs, 4 steps): ``nice -n 19 .venv/bin/python benchmarks/transducer_table.py --jobs 3``.

Cost, measured by ``--probe 2`` (two timed training steps after a warm-up step, one generation batch) on
Qwen2.5-Coder-0.5B-Instruct, float32, one torch thread of an AVX2 EPYC core while two other jobs shared the
machine (2026-12-03), translation:

| method | pairs <= (source, target) tokens | tokens / step of 8 | train CPU-s / step | tokens / CPU-s | peak RSS |
|---|---|---:|---:|---:|---:|
| LoRA | 96, 64 | 498 | 32.7 | 15.2 | 7.6 GB |
| Transducer | 96, 64 | 498 | 37.5 | 13.3 | 7.3 GB |
| full | 64, 48 | 395 | 49.7 | 7.9 | 13.1 GB |

That is far from the ~90 training tokens/s once noted for this model: forward and backward through the whole
backbone (630 M parameters as prepared, the 152k-word LM head untied) run at ~40 GFLOP/s, about what one AVX2
core gives in float32. Greedy decoding is bound by reading the weights once per step: 8 prompts x 64 new tokens
took 50-58 CPU-s (~9-10 tokens/CPU-s), 32 prompts x 48 new tokens 85-87 CPU-s (~18 tokens/CPU-s), hence
``--eval-batch-size 32``. Per trained run of the command above (12 steps of ~395 tokens): load + CPGs ~25,
training ~12 x 26-30 = 310-360, validation ~20, test (teacher-forced + decoding) ~130, Transducer graph
readout ~80 CPU-s: ~500 (baselines) to ~610 (Transducers) CPU-s; 32 trained runs + 4 frozen ones (~150-220
each) ~18,500 CPU-s.

Methods. ``frozen``: the backbone as is, the same ``source + separator`` prompt the trained methods get;
``frozen-instruct``: the backbone prompted zero-shot through its chat template with the task in words
(``CodeTaskConfig.instruction``; the answer's code block is read as one line); ``transducer`` (corrected
cross-attention fusion) and ``transducer-as-released`` (the released ABFL); ``transducer-shuffled`` and
``transducer-zeros``: the graph ablation -- the cross-attention Transducer trained and tested with every
example given another example's graph, or with all node-label vectors zero (no information from the code;
``cptpp.code.tune.ablate_graphs``, ``cptpp code-tune --graph-ablation``); ``lora``, ``prompt``, ``prefix``,
``ia3`` (peft) and ``full`` fine-tuning. Each trained method sees the same pairs, batches of the same size and
the same number of optimizer steps (``--train-size / --batch-size x --epochs``), with AdamW at ``--lr`` or its
``--method-lr`` (the rates of the command are each method's usual scale, NOT tuned here: a zero-initialised
gate or a soft prompt barely moves in 12 steps at LoRA's rate), and is tested once at its best validation epoch
(teacher-forced token accuracy) by greedy decoding. A Transducer row also records the teacher-forced test loss
of the *trained* model with the graphs shuffled or zeroed at test time (does the trained model read its
graph?) and its mean |gate| (the corrected fusion starts from gate 0).

Seeds. ``--seeds`` seed each method's initialization and batch order; the data sample (train / valid / test
pairs) is drawn once with ``--data-seed`` and is the same for every method and seed, so rows compare on the
same test pairs. The two frozen rows do not depend on the seed and run once. Tables give mean ± sample std
over seeds; the "> frozen" column says whether every seed beat the frozen row in both BLEU and CodeBLEU
(CodeBLEU of code targets only).

Resume. Every (task, method, seed) runs in a fresh Python process (``--worker``; ``--jobs N`` at a time) and
writes ``RUNS/<task>/<method>/seed<k>.json`` when it has finished. A rerun of the same command skips every
finished run (a killed table loses only the runs it was in), after checking that the run used the same
settings (its learning rate included); other settings need another ``--runs`` folder. RUNS defaults to
``OUT_runs`` beside OUT (benchmarks/results/transducer_table_runs): small JSON records, committed between
working sessions, so a table that needs more CPU time than one session has is built over several.

Measured in each worker (the backbone loaded and the data encoded first):
* peak RSS: the process's resident memory at its highest during training + evaluation, frozen backbone
  included: the kernel's exact peak (``ru_maxrss``) when that rose during ``fit``, else the highest of
  /proc/self/statm samples taken every 5 ms. Train delta: that peak minus the RSS just before ``fit``.
* train CPU-s: process CPU seconds in ``fit`` minus those spent in evaluation (``--threads`` torch threads,
  one by default, so about the wall time on an idle core).

Results go to OUT.json and OUT.md (default benchmarks/results/transducer_table); ``--render OUT.json``
re-prints a table. THE NUMBERS ARE NOT COMPARABLE TO THE PAPER'S (CodeT5+ 220M, full training sets, 1 epoch).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("CPTPP_DATA_MIRROR", str(ROOT.parent / "shared" / "data"))

from cptpp.code.codebleu import csharp_available
from cptpp.code.tasks import TASKS, CodeGenTask, CodeTaskConfig
from cptpp.code.transducer import TransducerConfig, expected_parameters
from cptpp.code.tune import ablate_graphs, attach_all_graphs, build_lm, encode_task, label_embeddings, load_backbone
from cptpp.config import ConfigError, config_differences
from cptpp.io import write_json
from cptpp.train import TrainConfig, fit
from cptpp.train.params import count_parameters

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("frozen", "frozen-instruct", "transducer", "transducer-as-released", "transducer-shuffled",
           "transducer-zeros", "lora", "prompt", "prefix", "ia3", "full")
UNTRAINED = ("frozen", "frozen-instruct")
DEFAULT_METHODS = ("frozen", "transducer", "transducer-as-released", "lora", "prompt", "prefix", "ia3", "full")
PAGE = 4096 if not hasattr(os, "sysconf") else os.sysconf("SC_PAGE_SIZE")
MIB = 2 ** 20
# the settings a finished run is reused under (a resumed table must not mix two setups)
RUN_SETTINGS = ("model", "label_encoder", "data_seed", "train_size", "valid_size", "test_size", "max_source",
                "max_target", "max_nodes", "batch_size", "eval_batch_size", "epochs", "threads")


def transducer_setup(method: str) -> tuple[str, str] | None:
    """``(fusion, graph ablation)`` of a Transducer method, None for the others."""
    if not method.startswith("transducer"):
        return None
    if method == "transducer-as-released":
        return "as-released", "none"
    return "cross-attention", {"transducer": "none", "transducer-shuffled": "shuffle",
                               "transducer-zeros": "zeros"}[method]


# --------------------------------------------------------------------------- one (task, method, seed) per process

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class PeakRSS:
    """Highest RSS while the ``with`` block runs: ``ru_maxrss`` if it rose, else 5 ms samples."""

    def __enter__(self):
        self.start, self.max_before, self.sampled = rss_bytes(), maxrss_bytes(), rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.sampled = max(self.sampled, rss_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        after = maxrss_bytes()
        self.peak = after if after > self.max_before else max(self.sampled, rss_bytes())
        return False


class TimedTask(CodeGenTask):
    """A ``CodeGenTask`` that adds up the CPU seconds spent in ``evaluate``."""

    eval_cpu = 0.0

    def evaluate(self, split):
        t0 = time.process_time()
        try:
            return super().evaluate(split)
        finally:
            self.eval_cpu += time.process_time() - t0


def prepare(task: str, method: str, seed: int, args):
    """``(task object, data, protocol, available, trainable params)`` for one run; the seed is set before the
    adapter is built (its initialization is part of the run's seed)."""
    from cptpp.train import seed_everything

    torch.set_num_threads(args.threads)
    backbone, tok = load_backbone(args.model)
    encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))
    cfg = CodeTaskConfig(task=task, max_source_tokens=args.max_source, max_target_tokens=args.max_target,
                         train_size=args.train_size, valid_size=args.valid_size, test_size=args.test_size,
                         batch_size=args.batch_size, eval_batch_size=args.eval_batch_size or args.batch_size,
                         seed=args.data_seed,
                         instruction=method == "frozen-instruct")
    data, protocol, available = encode_task(cfg, tok, encoder_decoder)
    table, label_dim = None, 384
    setup = transducer_setup(method)
    if setup:
        labels, label_dim = label_embeddings(args.label_encoder)
        table = ablate_graphs(data, attach_all_graphs(data, task, labels, args.max_nodes), setup[1], seed)
    seed_everything(seed)
    lm = build_lm("transducer" if setup else method.removesuffix("-instruct"), backbone,
                  setup[0] if setup else "cross-attention", label_dim, args.max_nodes)
    task_obj = TimedTask(lm, tok, data, cfg, table)
    return task_obj, data, protocol, available, count_parameters(lm.module).trainable


def graph_readout(task_obj: CodeGenTask, seed: int, test_metrics: dict) -> dict:
    """Teacher-forced test loss / token accuracy of the trained Transducer with its test graphs as they are (from
    ``test_metrics``), shuffled between examples, or zeroed (no retraining): whether the trained model reads its
    graph."""
    test = task_obj.data["test"]
    graphs, table = [e.graph for e in test], task_obj.label_table
    out = {"none": {k: test_metrics[k] for k in ("loss", "token_acc")}}
    with torch.no_grad():
        for mode in ("shuffle", "zeros"):
            task_obj.label_table = ablate_graphs({"test": test}, table, mode, seed)
            out[mode] = task_obj._teacher_forced(test)
            task_obj.label_table = table
            for e, g in zip(test, graphs):
                e.graph = g
    gate = getattr(task_obj.lm.module.fusion, "gate", None)
    out["gate_abs_mean"] = None if gate is None else float(gate.detach().abs().mean())
    return out


def run_one(task: str, method: str, seed: int, args) -> dict:
    task_obj, data, protocol, available, params = prepare(task, method, seed, args)
    backbone = task_obj.lm.backbone if hasattr(task_obj.lm, "backbone") else task_obj.lm.module
    with torch.no_grad():  # page in the (memory-mapped) weights: the delta is then what training adds
        for t in [*backbone.parameters(), *backbone.buffers()]:
            t.sum()
    cpu0 = time.process_time()
    with PeakRSS() as mem:
        if method in UNTRAINED:
            with torch.no_grad():
                test, valid = task_obj.evaluate("test"), {}
        else:
            res = fit(task_obj, TrainConfig(epochs=args.epochs, lr=method_lr(args, method), optimizer="adamw",
                                            metric="token_acc",
                                            patience=0, seed=seed, progress=False))
            test, valid = res["test"], res["valid"]
    train_cpu = time.process_time() - cpu0 - task_obj.eval_cpu
    readout = graph_readout(task_obj, seed, test) if transducer_setup(method) else None
    return {"task": task, "protocol": protocol, "method": method, "seed": seed, "trainable": params, "test": test,
            "valid": valid, "pairs": {s: len(v) for s, v in data.items()}, "available_pairs": available,
            "steps": 0 if method in UNTRAINED else args.epochs * math.ceil(len(data["train"]) / args.batch_size),
            "peak_rss_mib": mem.peak / MIB, "train_delta_mib": (mem.peak - mem.start) / MIB,
            "train_cpu_seconds": 0.0 if method in UNTRAINED else train_cpu, "eval_cpu_seconds": task_obj.eval_cpu,
            "graph_readout": readout, "settings": run_settings(args, method),
            "example": task_obj.predictions.get("test", [""])[:2]}


def probe_one(task: str, method: str, args) -> dict:
    """CPU seconds of ``--probe`` training steps (after one untimed warm-up step) and of one generation batch of
    ``--batch-size`` test prompts forced to ``--max-target`` new tokens: what sizes the table."""
    task_obj, data, *_ , params = prepare(task, method, args.seeds[0], args)
    batches = task_obj.batches(0, torch.Generator().manual_seed(0))
    step = {}
    if method not in UNTRAINED:
        trainable = [p for p in task_obj.model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=args.lr)
        task_obj.model.train()
        times, tokens = [], []
        for i in range(args.probe + 1):
            batch = batches[i % len(batches)]
            t0 = time.process_time()
            loss = task_obj.loss(batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:  # the first step allocates the optimizer state
                times.append(time.process_time() - t0)
                tokens.append(int(batch["attention_mask"].sum()))
        step = {"train_step_cpu_s": sum(times) / len(times), "train_tokens_per_step": sum(tokens) / len(tokens),
                "train_tokens_per_cpu_s": sum(tokens) / sum(times)}
        task_obj.model.eval()
    batch = task_obj._batch(data["test"][:task_obj.cfg.eval_batch_size], False)
    t0 = time.process_time()
    ids = task_obj.lm.generate(batch, max_new_tokens=args.max_target, min_new_tokens=args.max_target,
                               pad_token_id=task_obj.pad_id)
    gen = time.process_time() - t0
    return {"task": task, "method": method, "trainable": params, **step, "gen_batch_cpu_s": gen,
            "gen_tokens_per_cpu_s": ids.numel() / gen, "peak_rss_mib": maxrss_bytes() / MIB}


def method_lr(args, method: str) -> float:
    """``--method-lr`` for ``method`` (a Transducer variant falls back to ``transducer``'s), else ``--lr``."""
    table = args.method_lr or {}
    return table.get(method, table.get("transducer", args.lr) if transducer_setup(method) else args.lr)


def run_settings(args, method: str) -> dict:
    """What a finished run is reused under: the shared settings and the method's learning rate."""
    return {**{k: getattr(args, k) for k in RUN_SETTINGS}, "lr": None if method in UNTRAINED else method_lr(args, method)}


def lrs(text: str) -> dict[str, float]:
    """``transducer=1e-2,prompt=3e-2`` -> {method: lr}; a name that is not a method is an error."""
    out = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, _, value = item.partition("=")
        if name not in METHODS or not value:
            raise argparse.ArgumentTypeError(f"{item!r}: expected METHOD=LR with METHOD one of {', '.join(METHODS)}")
        out[name] = float(value)
    return out


def worker_argv(args, job: str, out: Path) -> list[str]:
    cmd = [sys.executable, __file__, "--worker", job, "--worker-out", str(out), "--seeds", ",".join(map(str, args.seeds))]
    for k in (*RUN_SETTINGS, "lr"):
        if getattr(args, k) is not None:
            cmd += ["--" + k.replace("_", "-"), str(getattr(args, k))]
    if args.method_lr:
        cmd += ["--method-lr", ",".join(f"{m}={v!r}" for m, v in args.method_lr.items())]
    return cmd + (["--probe", str(args.probe)] if args.probe else [])


def run_path(runs: Path, task: str, method: str, seed: int) -> Path:
    return runs / task / method / f"seed{seed}.json"


def finished_row(path: Path, args) -> dict | None:
    """The row of a finished run, None when it has not finished; an error when it ran under other settings."""
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not finished (the file is written atomically, only at the end)
    diff = config_differences(row.get("settings", {}), json.loads(json.dumps(run_settings(args, row["method"]))))
    if diff:
        shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in diff)
        raise ConfigError(f"{path} was run with other settings ({shown}); use another --runs folder (or the "
                          "same settings) so that one table does not mix two setups")
    return row


def run_in_subprocess(job: str, args, out: Path) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(worker_argv(args, job, out), check=True)
    return json.loads(out.read_text())


# --------------------------------------------------------------------------- aggregation over seeds

METRICS = ("bleu", "codebleu", "em", "sbleu", "chrf", "token_acc")


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1; 0 for one value); ``(None, None)`` when any value is None."""
    if not values or any(v is None for v in values):
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def aggregate(rows: list[dict]) -> list[dict]:
    """One summary per (task, method), first-seen order: seeds, trainable params, mean peak RSS and train CPU-s,
    ``(mean, std)`` of each test metric, whether every seed beat the task's ``frozen`` row in BLEU and CodeBLEU,
    and (Transducer) the mean teacher-forced test loss with real / shuffled / zeroed graphs and mean |gate|."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["method"]), []).append(r)
    frozen = {task: rs[0]["test"] for (task, method), rs in groups.items() if method == "frozen"}
    out = []
    for (task, method), rs in groups.items():
        summary = {"task": task, "method": method, "seeds": [r["seed"] for r in rs], "trainable": rs[0]["trainable"],
                   "steps": rs[0].get("steps", 0), "pairs": rs[0]["pairs"], "protocol": rs[0]["protocol"],
                   "lr": (rs[0].get("settings") or {}).get("lr"),
                   "peak_rss_mib": mean_std([r["peak_rss_mib"] for r in rs])[0],
                   "train_cpu_seconds": mean_std([r["train_cpu_seconds"] for r in rs])[0],
                   "test": {m: mean_std([r["test"].get(m) for r in rs]) for m in METRICS}}
        base = frozen.get(task)
        if method in UNTRAINED or base is None:
            summary["above_frozen"] = None
        else:
            keys = [k for k in ("bleu", "codebleu") if base.get(k) is not None]
            summary["above_frozen"] = all(r["test"][k] > base[k] for r in rs for k in keys)
        readouts = [r["graph_readout"] for r in rs if r.get("graph_readout")]
        if readouts:
            summary["graph_readout"] = {m: mean_std([g[m]["loss"] for g in readouts])[0]
                                        for m in ("none", "shuffle", "zeros")}
            summary["graph_readout"]["gate_abs_mean"] = mean_std([g["gate_abs_mean"] for g in readouts])[0]
        out.append(summary)
    return out


# --------------------------------------------------------------------------- table

def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _pm(pair: tuple[float | None, float | None], n: int) -> str:
    mean, std = pair
    if mean is None:
        return "n/a"
    return f"{mean:.2f}" if n == 1 else f"{mean:.2f} ± {std:.2f}"


def codebleu_parts(row: dict) -> str:
    names = {"ngram": "n-gram", "weighted": "weighted n-gram", "syntax": "syntax", "dataflow": "dataflow"}
    have = [n for p, n in names.items() if row["test"].get(f"codebleu_{p}") is not None]
    return " + ".join(have)


def markdown(rows: list[dict], note: str) -> str:
    lines = [note]
    summaries = aggregate(rows)
    for task in dict.fromkeys(r["task"] for r in rows):
        first = next(r for r in rows if r["task"] == task)
        pairs = "/".join(str(first["pairs"][s]) for s in ("train", "valid", "test"))
        target = TASKS[task].target_language
        cb = (f"CodeBLEU ({target} target) averages the parts that could be computed: {codebleu_parts(first)}"
              if target else "text target: no CodeBLEU")
        lines += ["", f"### {task}", "",
                  f"Protocol {first['protocol']}; pairs train/valid/test {pairs}. {cb}.", "",
                  "| method | seeds | trainable params | steps | lr | peak RSS MiB | train CPU-s | BLEU | CodeBLEU "
                  "| EM | sBLEU | ChrF | tok-acc | > frozen |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|"]
        for s in (s for s in summaries if s["task"] == task):
            t, n = s["test"], len(s["seeds"])
            untrained = s["method"] in UNTRAINED
            verdict = "" if s["above_frozen"] is None else ("yes" if s["above_frozen"] else "no")
            lines.append(
                f"| {s['method']} | {n} | {s['trainable']:,} | {s['steps']} | {_num(s['lr'], 'g')} | "
                f"{s['peak_rss_mib']:.0f} | "
                f"{'-' if untrained else format(s['train_cpu_seconds'], '.0f')} | "
                + " | ".join(_pm(t[m], n) for m in METRICS) + f" | {verdict} |")
        readouts = [s for s in summaries if s["task"] == task and s.get("graph_readout")]
        if readouts:
            lines += ["", "Graph readout of the trained Transducers: teacher-forced test loss (nats/token, mean over "
                      "seeds) with the test graphs as they are, shuffled between examples, or zeroed; no retraining.",
                      "", "| method | own graphs | shuffled | zeroed | mean abs gate |", "|---|---:|---:|---:|---:|"]
            for s in readouts:
                g = s["graph_readout"]
                lines.append(f"| {s['method']} | {g['none']:.4f} | {g['shuffle']:.4f} | {g['zeros']:.4f} | "
                             f"{_num(g['gate_abs_mean'], '.2e')} |")
    return "\n".join(lines) + "\n"


def probe_markdown(rows: list[dict], note: str) -> str:
    lines = [note, "", "| task | method | trainable | train step CPU-s | tokens/step | train tokens/CPU-s "
             "| generation batch CPU-s | generated tokens/CPU-s | peak RSS MiB |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['method']} | {r['trainable']:,} | {_num(r.get('train_step_cpu_s'), '.1f')} | "
                     f"{_num(r.get('train_tokens_per_step'), '.0f')} | {_num(r.get('train_tokens_per_cpu_s'), '.1f')} | "
                     f"{r['gen_batch_cpu_s']:.1f} | {r['gen_tokens_per_cpu_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2",
                   help="a model registry name (smollm2, qwen2.5-coder-0.5b; `cptpp models list`) or a local HF folder")
    p.add_argument("--label-encoder", default=None, help="local sentence encoder folder (default: MiniLM package)")
    p.add_argument("--tasks", default="translation,assert", help=f"comma list of {', '.join(TASKS)}")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--seeds", type=ints, default=[0], help="comma list: each trained method runs once per seed")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/valid/test sample (same for all runs)")
    p.add_argument("--train-size", type=int, default=32)
    p.add_argument("--valid-size", type=int, default=8)
    p.add_argument("--test-size", type=int, default=24)
    p.add_argument("--max-source", type=int, default=48)
    p.add_argument("--max-target", type=int, default=24)
    p.add_argument("--max-nodes", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-batch-size", type=int, default=None,
                   help="pairs per evaluation batch (default: --batch-size); greedy decoding on CPU is bound by reading "
                        "the weights once per step, so a larger batch costs little more per step")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate of every trained method")
    p.add_argument("--method-lr", type=lrs, default=None, metavar="METHOD=LR,...",
                   help="per-method learning rates overriding --lr (a transducer-* variant without its own takes "
                        "transducer's), e.g. transducer=1e-2,prompt=3e-2")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="worker processes at once (each measures only itself)")
    p.add_argument("--runs", default=None, metavar="DIR",
                   help="one JSON per finished (task, method, seed); rerunning skips those (default: OUT_runs)")
    p.add_argument("--probe", type=int, default=0, metavar="STEPS",
                   help="instead of the table: time STEPS training steps and one generation batch per method")
    p.add_argument("--out", default=str(RESULTS / "transducer_table"), help="writes OUT.json and OUT.md")
    p.add_argument("--render", metavar="JSON", default=None, help="only re-print the table of a results JSON")
    p.add_argument("--worker", metavar="TASK:METHOD:SEED", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        print(markdown(saved["rows"], saved["note"]))
        return 0
    if args.worker:
        task, method, seed = args.worker.split(":")
        row = probe_one(task, method, args) if args.probe else run_one(task, method, int(seed), args)
        write_json(args.worker_out, row)
        return 0
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for t in args.tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    if not args.seeds:
        p.error("--seeds: give at least one seed")
    start = time.process_time()
    start_wall = time.perf_counter()
    from transformers import AutoConfig

    from cptpp.models import resolve_model

    try:
        model_path = resolve_model(args.model).path  # workers resolve it too: rows record the name, not this path
    except ConfigError as e:
        sys.exit(str(e))
    d_model = AutoConfig.from_pretrained(model_path).hidden_size
    label_name = "minilm" if args.label_encoder is None else Path(args.label_encoder).name
    label_dim = 384 if args.label_encoder is None else AutoConfig.from_pretrained(args.label_encoder).hidden_size
    out = Path(args.out)
    runs = Path(args.runs) if args.runs else out.parent / f"{out.name}_runs"
    paper_scale = {f: expected_parameters(TransducerConfig(fusion=f, label_dim=1024), 768)["total"]
                   for f in ("as-released", "cross-attention")}
    steps = args.epochs * math.ceil(args.train_size / args.batch_size)
    note = (f"Backbone: {args.model} (d_model={d_model}), frozen; node labels: {label_name} ({label_dim}-d). "
            f"Subsample (data seed {args.data_seed}, the same for every method and seed): train {args.train_size} / "
            f"valid {args.valid_size} / test {args.test_size} pairs per task, only pairs with source <= "
            f"{args.max_source} and target <= {args.max_target} tokens; AdamW lr {args.lr}"
            f"{''.join(f', {m} {v:g}' for m, v in (args.method_lr or {}).items())} (column lr), batch {args.batch_size}, "
            f"{args.epochs} epoch(s) = {steps} optimizer steps for every trained method, seeds "
            f"{','.join(map(str, args.seeds))} (mean ± sample std; the frozen rows run once), {args.threads} torch "
            f"thread(s). Each run is a fresh process ({args.jobs} at a time): peak RSS = highest resident memory "
            f"during training + evaluation (frozen backbone included), train CPU-s = CPU seconds of the training "
            f"steps (evaluation excluded). frozen-instruct = the frozen model prompted through its chat template with "
            f"the task's instruction. transducer-shuffled / -zeros = the cross-attention Transducer trained and "
            f"tested with graphs shuffled between examples / zero node vectors. Test: greedy decoding; BLEU = corpus "
            f"BLEU-4 on code tokens, sBLEU = mean smoothed sentence BLEU-4, EM = exact match %, ChrF = corpus chrF "
            f"(n=6, beta=2), CodeBLEU with our CPG (docs/code_metrics.md), tok-acc = teacher-forced next-token "
            f"accuracy on the target; > frozen = every seed above the frozen row in BLEU and CodeBLEU. NOT "
            f"comparable to the paper (CodeT5+ 220M, full training sets). Paper-scale Transducer size (d=768, "
            f"1024-d labels) from the formula: as-released {paper_scale['as-released']:,}, cross-attention "
            f"{paper_scale['cross-attention']:,} (paper reports 30,728).")
    if "translation" in args.tasks and not csharp_available():
        note += " tree-sitter-c-sharp is not installed: the C# CodeBLEU has no syntax part."
    print(note, flush=True)
    done = 0

    def one(job: tuple[str, str, int]) -> dict:
        nonlocal done
        task, method, seed = job
        if args.probe:
            row = run_in_subprocess(f"{task}:{method}:{seed}", args, runs / "probe" / f"{task}-{method}.json")
            print(f"[probe {task}] {method}: step {_num(row.get('train_step_cpu_s'), '.1f')} CPU-s, "
                  f"generation batch {row['gen_batch_cpu_s']:.1f} CPU-s", flush=True)
            return row
        path = run_path(runs, task, method, seed)
        row = finished_row(path, args)
        if row is None:
            row = run_in_subprocess(f"{task}:{method}:{seed}", args, path)
        done += 1
        t = row["test"]
        print(f"[{done}/{len(jobs)} {task}] {method} seed {seed}: params {row['trainable']:,} peak "
              f"{row['peak_rss_mib']:.0f} MiB train {row['train_cpu_seconds']:.0f} CPU-s | bleu={t['bleu']:.2f} "
              f"codebleu={_num(t.get('codebleu'), '.2f')} em={t['em']:.1f} token_acc={t['token_acc']:.1f}", flush=True)
        return row

    jobs = [(task, method, seed) for task in args.tasks for method in args.methods
            for seed in (args.seeds[:1] if method in UNTRAINED or args.probe else args.seeds)]
    if not args.probe:  # settings clash: say so before anything runs
        for job in jobs:
            finished_row(run_path(runs, *job), args)
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(one, jobs))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() - start + children.ru_utime + children.ru_stime
    command = shlex.join(["benchmarks/transducer_table.py", *(argv if argv is not None else sys.argv[1:])])
    md = probe_markdown(rows, note) if args.probe else markdown(rows, note)
    print(md)
    print(f"total {total:.0f} CPU-s this invocation (finished runs reused: not counted), "
          f"{time.perf_counter() - start_wall:.0f} s wall")
    out.parent.mkdir(parents=True, exist_ok=True)
    recorded = {k: v for k, v in vars(args).items() if k not in ("worker", "worker_out", "render", "runs", "out")}
    write_json(out.with_suffix(".json"), {"args": recorded, "command": command, "note": note,
                                          "rows": rows, "summary": None if args.probe else aggregate(rows),
                                          "cpu_seconds_this_invocation": total,
                                          "cpu_seconds_all_runs": None if args.probe else sum(
                                              r["train_cpu_seconds"] + r["eval_cpu_seconds"] for r in rows)})
    out.with_suffix(".md").write_text(md + f"\nCommand: `{command}`.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
