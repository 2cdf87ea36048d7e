"""Run every benchmark at one size and regenerate ``benchmarks/RESULTS.md``.

    .venv/bin/python benchmarks/run_all.py --quick      # minutes: speed benchmarks + RecBole peer (1 epoch)
    .venv/bin/python benchmarks/run_all.py --full       # hours to days: every script at its committed size
    .venv/bin/python benchmarks/run_all.py --report     # only rebuild RESULTS.md from benchmarks/results/
    options: --only NAME,...  --skip NAME,...  --timeout SECONDS  --no-recbole-venv

Sizes. ``--full`` writes into ``benchmarks/results/`` (the committed, full-size files) and reruns the
accuracy tables with the arguments recorded in their committed JSON (the documented command when
there is none). ``--quick`` writes into ``benchmarks/results/quick/``, so it never overwrites a
full-size file: it reruns the fast speed benchmarks at a smaller size and leaves the long accuracy
tables alone. RESULTS.md shows, per section and per size, the command, the date, the machine and the
numbers; long tables appear with the command and date that produced their committed file.

Each step runs as a child process (``nice`` is inherited). Its peak memory is the largest resident
set of the child and its reaped descendants, read from its ``rusage`` (``os.wait4``, Linux
``ru_maxrss``) by a small launcher (``benchmarks/peak_rss.py``) so that this process's own size does
not leak into the number. Output goes to ``results[/quick]/logs/<step>.log`` and a record of the run
(command, dates, exit status, seconds, peak RSS, machine, load average) to
``results[/quick]/run_all/<step>.json``. A failing step is reported in RESULTS.md, the others
still run, and run_all exits 1 at the end.

The RecBole peer needs its own venv (``.venv-recbole``, git-ignored): created here when missing
(``recbole==1.2.1 numpy==1.26.4 scipy==1.11.4 pandas==2.1.4 torch==2.13.0``); when pip fails the
step is skipped with the reason in RESULTS.md.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peak_rss  # benchmarks/peak_rss.py: run as a script, this file's own folder is on sys.path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

RESULTS = HERE / "results"
REPORT = HERE / "RESULTS.md"
RECBOLE_VENV = ROOT / ".venv-recbole"
RECBOLE_PINS = ["recbole==1.2.1", "numpy==1.26.4", "scipy==1.11.4", "pandas==2.1.4", "torch==2.13.0"]
LOG_TAIL_LINES = 40


# --------------------------------------------------------------------------- steps

@dataclass
class Cmd:
    """One child process: ``argv`` (``{py}`` = the project python); ``stdout_to`` saves its stdout
    (not stderr) under the output folder, for scripts that only print their numbers."""

    argv: list[str]
    stdout_to: str | None = None


@dataclass
class Step:
    name: str                                       # RESULTS.md anchor: #name
    title: str
    script: str                                     # path relative to the repo root
    what: str                                       # what is measured, one paragraph
    quick: Callable[[Path], list[Cmd]] | None       # out folder -> commands; None = not rerun by --quick
    full: Callable[[Path], list[Cmd]]
    outputs: list[str]                              # glob patterns in the out folder, rendered in order
    render: Callable[[Path], str] | None = None     # numbers of one output file as markdown
    recorded_args: str | None = None                # committed json whose stored args give the --full command
    needs_recbole: bool = False


def py(script: str, *args: str, stdout_to: str | None = None) -> Cmd:
    return Cmd(["{py}", script, *args], stdout_to)


def rel(path: Path) -> str:
    """``path`` relative to the repo root when inside it (symlinks such as ``.venv/bin/python`` kept)."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(ROOT))
    except ValueError:
        return str(path)


def code_data_args() -> list[str]:
    mirror = os.environ.get("CPTPP_DATA_MIRROR")
    return ["--data", str(Path(mirror) / "code")] if mirror else []


def comex_args(sample: int) -> list[str]:
    """The comex cross-check of cpg_speed.py when a comex venv exists (docs/cpg.md describes its setup):
    ``$CPTPP_COMEX_PYTHON``, else the path docs/cpg.md uses."""
    python = os.environ.get("CPTPP_COMEX_PYTHON") or ".venv-comex/bin/python"
    return ["--peer-python", python, "--peer-sample", str(sample)] if Path(python).exists() else []


def recorded_full(step_script: str, json_name: str, fallback: list[str]) -> Callable[[Path], list[Cmd]]:
    """--full command: the arguments recorded in the committed results json, else ``fallback``. Output goes
    to the scripts' default folder, ``benchmarks/results/`` (the full-size one)."""

    def make(out: Path) -> list[Cmd]:
        args = command_args_from_json(ROOT / step_script, RESULTS / json_name)
        return [py(step_script, *(fallback if args is None else args))]

    return make


# benchmarks/mamba_table.py's recorded command (its docstring), until a results json records one
MAMBA_TABLE_ARGS = ["--model", "runs/mamba-byte", "--runs", "runs/mamba-table", "--resume", "--seeds", "0,1",
                    "--max-train", "128", "--max-eval", "200", "--max-len", "128", "--epochs", "3",
                    "--trials", "4"]


def steps() -> list[Step]:
    b = "benchmarks/"
    return [
        Step("recsys-speed", "LightGCN training epoch and full-ranking evaluation: cptpp vs torch_geometric",
             b + "recsys_speed.py",
             "One LightGCN training epoch on ml-1m-implicit (dim 64, 3 layers, batch 2048, Adam 1e-3, BPR + "
             "L2 1e-4) timed whole for cptpp; torch_geometric's `LightGCN` loop timed over a few batches in the "
             "same process and scaled to the epoch's batch count. Full-ranking evaluation of all validation "
             "users: cptpp's blocked evaluation vs PyG embeddings + dense mask + `topk`.",
             quick=lambda o: [py(b + "recsys_speed.py", "--pyg-batches", "3", "--out", rel(o / "recsys_speed.json"))],
             full=lambda o: [py(b + "recsys_speed.py", "--out", rel(o / "recsys_speed.json"))],
             outputs=["recsys_speed.json"], render=render_recsys_speed),
        Step("eval-speed", "Full-ranking evaluation vs a per-user loop; BPR sampling throughput", b + "eval_speed.py",
             "`evaluate_embeddings` over every ml-1m user with random embeddings against a naive per-user numpy "
             "loop (mask, full `argsort`) in the same process, checking that both give the same numbers; one "
             "epoch of vectorized BPR negative sampling.",
             quick=lambda o: [py(b + "eval_speed.py", "--repeats", "3", stdout_to="eval_speed.txt")],
             full=lambda o: [py(b + "eval_speed.py", stdout_to="eval_speed.txt")],
             outputs=["eval_speed.txt"], render=render_text),
        Step("propagate-speed", "Full-batch propagation and memory bandwidth", b + "propagate_speed.py",
             "3-layer `graph_tools.sparse.propagate` on gowalla's train graph (70,839 nodes, 1.62 M nonzeros, "
             "dim 64): the numba kernel, torch CSR `@`, torch COO `sparse.mm` and PyG `LGConv`, best of "
             "repeats; this machine's memory bandwidth from a numpy copy in the same process, and the fraction "
             "of it propagation reaches under a minimal-traffic model (issue #10 asks for at least 40%).",
             quick=lambda o: [py(b + "propagate_speed.py", "--repeats", "5", "--out", rel(o / "propagate_speed.json"))],
             full=lambda o: [py(b + "propagate_speed.py", "--out", rel(o / "propagate_speed.json"))],
             outputs=["propagate_speed.json"], render=render_propagate_speed),
        Step("memory-per-node", "Peak RSS of LightGCN training per node", b + "memory_per_node.py",
             "RSS growth (from the process's own peak RSS) from building a LightGCN model (dim 64, 3 layers, "
             "Adam) and running three training steps, divided by the number of user + item nodes; one process "
             "per dataset.",
             quick=lambda o: [py(b + "memory_per_node.py", d, stdout_to=f"memory_per_node_{d}.json")
                              for d in ("ml-100k", "ml-1m-implicit")],
             full=lambda o: [py(b + "memory_per_node.py", d, stdout_to=f"memory_per_node_{d}.json")
                             for d in ("ml-1m-implicit", "gowalla")],
             outputs=["memory_per_node_*.json"], render=render_memory),
        Step("cpg-speed", "Code property graph builder: robustness and throughput", b + "cpg_speed.py",
             "Builds a CPG (AST + CFG + DFG + calls) for every method of every code dataset in the mirror "
             "(exceptions must be 0), then single-core graphs per second per language against tree-sitter "
             "parsing alone over the same inputs (ratio = build / parse); when a comex venv is present, AST node "
             "and edge counts against comex on a sample of Java methods. --quick caps the inputs per dataset.",
             quick=lambda o: [py(b + "cpg_speed.py", *code_data_args(), "--limit", "200", "--speed-sample", "500",
                                 "--repeats", "1", *comex_args(20), stdout_to="cpg_speed.txt")],
             full=lambda o: [py(b + "cpg_speed.py", *code_data_args(), *comex_args(500), stdout_to="cpg_speed.txt")],
             outputs=["cpg_speed.txt"], render=render_text),
        Step("recbole-lightgcn", "LightGCN: cptpp vs RecBole 1.2.1 on the same split", b + "peers/recbole_lightgcn.py",
             "RecBole 1.2.1's LightGCN (its own venv) and cptpp's LightGCN, each in its own process, on cptpp's "
             "ml-1m-implicit train/valid/test split exported to RecBole atomic files (pre-split mode); dim 64, "
             "3 layers, batch 2048, Adam 1e-3, L2 1e-4, the same epoch count. Seconds per training epoch, "
             "full-ranking evaluation time and Recall/NDCG@20 after the last epoch; peak RSS per side.",
             quick=lambda o: [py(b + "peers/recbole_lightgcn.py", "--epochs", "1",
                                 "--out", rel(o / "recbole_lightgcn.json"))],
             full=lambda o: [py(b + "peers/recbole_lightgcn.py", "--epochs", "10",
                                "--out", rel(o / "recbole_lightgcn.json"))],
             outputs=["recbole_lightgcn.json"], render=render_recbole, needs_recbole=True),
        Step("recbole-peer", "Accuracy curves: cptpp vs RecBole 1.2.1 LightGCN and SGL on one split",
             b + "peers/recbole_peer.py",
             "cptpp's ml-100k split exported to RecBole atomic files; RecBole's LightGCN and SGL (its defaults: "
             "ED 0.1, tau 0.5, ssl_weight 0.05), cptpp's LightGCN, cptpp's SGL in RecBole's configuration "
             "(cl_negatives=all, tau 0.5, cl_weight 0.05, l2 0) and with cptpp's defaults; 100 epochs each, one "
             "process per run. Validation Recall@20 at epochs 10/20/50/100, test Recall/NDCG@20 at the "
             "best-validation epoch, median seconds per epoch, peak RSS.",
             quick=None,
             full=lambda o: [py(b + "peers/recbole_peer.py", "--dataset", "ml-100k", "--epochs", "100",
                                "--out", rel(o / "recbole_peer_ml-100k.json"))],
             outputs=["recbole_peer_*.json"], render=render_recbole_peer, needs_recbole=True),
        Step("reproduce", "LightGCN / SGL / SimGCL / XSimGCL with the papers' settings vs published numbers",
             b + "reproduce.py",
             "Paper settings, validation curves and test Recall@20 / NDCG@20 at the best validation epoch, "
             "beside the published numbers.",
             quick=None,
             full=recorded_full(b + "reproduce.py", "reproduce_gowalla.json",
                                ["--dataset", "gowalla", "--models", "xsimgcl", "--epochs", "40", "--refit"]),
             outputs=["reproduce_*.md"], recorded_args="reproduce_gowalla.json"),
        Step("cptpp-table", "CPTPP: joint-trained baselines vs pre-training + prompt tuning", b + "cptpp_table.py",
             "LightGCN and SGL/SimGCL/XSimGCL joint training vs contrastive pre-training + CPTPP prompt tuning "
             "(profiles H/M/R, encoder frozen); test metrics at the best validation epoch, mean ± std over seeds.",
             quick=None,
             full=lambda o: [py(b + "cptpp_table.py", "--datasets", "ml-1m-implicit", "--seeds", "0,1,2", "--epochs",
                                "30", "--pretrain-epochs", "10", "--out", rel(o))],  # its docstring's command
             outputs=["cptpp.md"]),
        Step("transducer-table", "Transducer Tuning vs PEFT baselines on code tasks", b + "transducer_table.py",
             "Frozen LM, Transducer (cross-attention and as-released fusion), LoRA, prompt and prefix tuning, "
             "full fine-tuning: trainable parameters, sBLEU, exact match and token accuracy.",
             quick=None, full=recorded_full(b + "transducer_table.py", "transducer_table.json", []),
             outputs=["transducer_table.md"], recorded_args="transducer_table.json"),
        Step("xprompt-table", "XPrompt vs prompt tuning vs full fine-tuning on SuperGLUE", b + "xprompt_table.py",
             "Full fine-tuning, soft prompt tuning and XPrompt (token/piece pruning with rewinding) on RTE, CB, "
             "WiC and BoolQ; the pruning ratio is chosen on validation.",
             quick=None, full=recorded_full(b + "xprompt_table.py", "xprompt_table.json", []),
             outputs=["xprompt_table.md", "xprompt_pruning.png"], recorded_args="xprompt_table.json"),
        Step("prompt-attention", "Prompt-attention vs self-attention vs linear models (contextual mixture)",
             b + "prompt_attention_study.py",
             "Test accuracy over training-set size, noise strength and fraction of relevant tokens, and the "
             "attention mass the prompt puts on the relevant tokens.",
             quick=None, full=recorded_full(b + "prompt_attention_study.py", "prompt_attention.json", []),
             outputs=["prompt_attention.md", "prompt_attention.png"], recorded_args="prompt_attention.json"),
        Step("topro-table", "ToPro vs fine-tuning vs prompt tuning (NER, POS; cross-lingual)", b + "topro_table.py",
             "Entity F1 (PAN-X) and accuracy (UD-POS), trained on English and evaluated on other languages.",
             quick=None, full=recorded_full(b + "topro_table.py", "topro_table.json", []),
             outputs=["topro_table.md"], recorded_args="topro_table.json"),
        Step("peftt-table", "PEFTT on TNCC-title: full vs prompt vs adapter vs prompt + adapter", b + "peftt_table.py",
             "Test accuracy and macro-F1 at the best validation epoch, trainable parameters.",
             quick=None, full=recorded_full(b + "peftt_table.py", "peftt_table.json", []),
             outputs=["peftt_table.md"], recorded_args="peftt_table.json"),
        Step("mamba-table", "MambaPEFT on UD-POS / PAN-X / TNCC-title: constant, random-init floor, full FT, each "
             "method, searched hybrid", b + "mamba_table.py",
             "Byte-level token and title classification with a base from `cptpp mamba-pretrain`: test metric "
             "mean ± std over seeds, trainable parameters, peak memory and CPU time per method, and which of the "
             "paper's claims hold.",
             quick=None, full=recorded_full(b + "mamba_table.py", "mamba_table.json", MAMBA_TABLE_ARGS),
             outputs=["mamba_table.md"], recorded_args="mamba_table.json"),
        Step("mamba-commonsense", "MambaPEFT on commonsense multiple choice (secondary): full FT vs each method vs "
             "the best hybrid", b + "mamba_commonsense.py",
             "Accuracy (LM likelihood of the answer) on BoolQ / PIQA / WinoGrande and trainable parameters per "
             "method.",
             quick=None, full=recorded_full(b + "mamba_commonsense.py", "mamba_commonsense.json", []),
             outputs=["mamba_commonsense.md"], recorded_args="mamba_commonsense.json"),
    ]


# --------------------------------------------------------------------------- commands from recorded arguments

def script_options(script: Path) -> set[str]:
    """The ``--options`` a script's argparse parser defines (read from its source, nothing imported)."""
    return set(re.findall(r"add_argument\(\s*[\"'](--[\w-]+)[\"']", script.read_text()))


def stored_args(data: dict) -> dict | None:
    """The argparse namespace a results json recorded: ``args``, ``settings`` or ``meta.args``."""
    for holder in (data, data.get("meta") or {}):
        for key in ("args", "settings"):
            if isinstance(holder.get(key), dict):
                return holder[key]
    return None


def args_to_argv(args: dict, options: set[str], drop=("out",)) -> list[str]:
    """Namespace -> command-line arguments, keeping only the script's own options; lists are joined by
    commas (how these scripts parse them), ``None`` / ``False`` are left to the default."""
    argv = []
    for key, value in args.items():
        opt = "--" + key.replace("_", "-")
        if key in drop or opt not in options or value is None or value is False:
            continue
        if value is True:
            argv.append(opt)
        elif isinstance(value, (list, tuple)):
            argv += [opt, ",".join(str(v) for v in value)]
        else:
            argv += [opt, str(value)]
    return argv


def command_args_from_json(script: Path, json_path: Path, drop=("--resume",)) -> list[str] | None:
    """The arguments a results json recorded: its ``command`` string (minus ``drop`` flags, so a rerun
    starts fresh) or its stored argparse namespace; ``None`` when it recorded neither."""
    try:
        data = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("command"), str):
        argv = shlex.split(data["command"])
        while argv and not argv[0].startswith("-"):  # python, the script path
            argv = argv[1:]
        return [a for a in argv if a not in drop]
    args = stored_args(data)
    return None if args is None else args_to_argv(args, script_options(script))


def recorded_command(step: Step, path: Path) -> tuple[str, str]:
    """(command, where it came from) for an output file not produced by run_all."""
    data = None
    json_path = path.with_suffix(".json")
    if json_path.exists():
        try:
            data = json.loads(json_path.read_text())
        except ValueError:
            data = None
    if isinstance(data, dict):
        for holder in (data, data.get("meta") or {}):
            if isinstance(holder.get("command"), str):
                return holder["command"], f"recorded in `{json_path.name}`"
        args = stored_args(data)
        if args is not None:
            argv = args_to_argv(args, script_options(ROOT / step.script))
            return (shlex.join(["python", step.script, *argv]),
                    f"rebuilt from the arguments recorded in `{json_path.name}`")
    text = path.read_text(errors="replace") if path.suffix == ".md" else ""
    m = re.search(r"[Cc]ommand: `([^`]+)`", text)
    if m:
        return m.group(1), f"recorded in `{path.name}`"
    return f"python {step.script}", "not recorded in the file; the script's defaults are assumed"


# --------------------------------------------------------------------------- machine, dates

def machine_info() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_GB"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = "not installed"
    return info


def machine_line(m: dict) -> str:
    parts = [f"{m.get('cpus', '?')} CPUs" + (f" ({m['cpu_model']})" if m.get("cpu_model") else "")]
    if m.get("memory_GB"):
        parts.append(f"{m['memory_GB']} GB RAM")
    parts.append(f"torch {m.get('torch', '?')}, {m.get('torch_threads', '?')} torch threads by default")
    parts.append(f"Python {m.get('python', '?')}")
    return "; ".join(parts)


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z")


def file_date(path: Path) -> str:
    """The commit date when the file is committed and unchanged, else its modification time."""
    try:
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=path.parent,
                               capture_output=True, text=True, timeout=20)
        if dirty.returncode == 0 and not dirty.stdout.strip():
            out = subprocess.run(["git", "log", "-1", "--format=%ct", "--", str(path)], cwd=path.parent,
                                 capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and out.stdout.strip():
                return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(int(out.stdout))) + " (commit date)"
    except (OSError, subprocess.SubprocessError):
        pass
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(path.stat().st_mtime)) + " (file modification time)"


# --------------------------------------------------------------------------- running

@dataclass
class CmdResult:
    exit_code: int
    peak_rss_MB: float | None
    seconds: float
    stdout: str = ""
    timed_out: bool = False


def shown_path(arg: str) -> str:
    """An argument as the report shows it: a path in the checkout relative to the repo root, one in
    the data mirror relative to it too (``../shared/data/code``), so no machine's absolute path
    gets into RESULTS.md; anything else unchanged."""
    if arg.startswith(str(ROOT) + os.sep):
        return rel(Path(arg))
    mirror = os.environ.get("CPTPP_DATA_MIRROR")
    if mirror and os.path.isabs(arg) and (arg == mirror or arg.startswith(mirror.rstrip(os.sep) + os.sep)):
        return os.path.relpath(arg, ROOT)
    return arg


def display(argv: list[str]) -> str:
    """The command as a reader would type it from the repo root."""
    shown = [shown_path(a) for a in argv]
    if argv and argv[0] == sys.executable and not sys.executable.startswith(str(ROOT) + os.sep):
        shown[0] = "python"
    return shlex.join(shown)


def run_command(argv: list[str], log, *, env: dict | None = None, timeout: float | None = None,
                echo: bool = True, cwd: Path = ROOT) -> CmdResult:
    """Run ``argv``, streaming its output to ``log`` (and the console), and measure it.

    Peak RSS: ``ru_maxrss`` of the command, read by the ``peak_rss`` launcher (max over the command
    and the descendants it waited for).
    """
    import tempfile

    fd, rss_file = tempfile.mkstemp(prefix="run_all_rss_")
    os.close(fd)
    t0 = time.perf_counter()
    proc = subprocess.Popen(peak_rss.measured(argv, rss_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=cwd, start_new_session=True)
    lock = threading.Lock()
    captured: list[str] = []

    def pump(stream, keep: bool):
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            # progress bars redraw with \r: keep the last state of the line only
            line = line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r\n") else line
            with lock:
                if keep:
                    captured.append(line)
                log.write(line)
                log.flush()
                if echo:
                    sys.stdout.write("    | " + line if line.endswith("\n") else "    | " + line + "\n")
                    sys.stdout.flush()
        stream.close()

    threads = [threading.Thread(target=pump, args=(proc.stdout, True), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, False), daemon=True)]
    for t in threads:
        t.start()
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill) if timeout else None
    if timer:
        timer.start()
    proc.wait()
    if timer:
        timer.cancel()
    for t in threads:
        t.join(timeout=10)
    peak = peak_rss.read_peak_mb(rss_file)
    os.unlink(rss_file)
    return CmdResult(proc.returncode, peak, time.perf_counter() - t0, "".join(captured), timed_out.is_set())


def ensure_recbole_venv(log, *, create: bool = True, venv: Path | None = None) -> tuple[bool, str]:
    """Make sure the RecBole venv exists with the pinned versions; (ok, note)."""
    venv = venv or RECBOLE_VENV
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import recbole, numpy, scipy, pandas, torch; "
             "print(recbole.__version__, numpy.__version__, scipy.__version__, pandas.__version__, torch.__version__)"]
    if python.exists():
        r = subprocess.run(check, capture_output=True, text=True)
        if r.returncode == 0:
            return True, f"RecBole venv {rel(venv)}: recbole/numpy/scipy/pandas/torch {r.stdout.strip()}"
    if not create:
        return False, f"RecBole venv {rel(venv)} missing and --no-recbole-venv given"
    print(f"  creating the RecBole venv {rel(venv)} ({' '.join(RECBOLE_PINS)})", flush=True)
    for argv in ([sys.executable, "-m", "venv", str(venv)],
                 [str(python), "-m", "pip", "install", *RECBOLE_PINS]):
        res = run_command(argv, log, echo=False, timeout=3600)
        if res.exit_code != 0:
            return False, f"creating the RecBole venv failed (`{display(argv)}` exited {res.exit_code}; see the log)"
    r = subprocess.run(check, capture_output=True, text=True)
    if r.returncode != 0:
        return False, f"RecBole venv created but `import recbole` fails: {r.stderr.strip()[-300:]}"
    return True, f"RecBole venv {rel(venv)} created: recbole/numpy/scipy/pandas/torch {r.stdout.strip()}"


def tail(text: str, n: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-n:])


def run_step(step: Step, size: str, out: Path, machine: dict, *, timeout: float | None = None,
             make_recbole: bool = True, env: dict | None = None) -> dict:
    """Run one step's commands (all of them, even after a failure) and write its run record."""
    cmds = (step.quick if size == "quick" else step.full)(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{step.name}.log"
    record = {"step": step.name, "size": size, "script": step.script, "started": now(), "machine": machine,
              "load_average_start": list(os.getloadavg()), "commands": [], "status": "ok", "note": ""}
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        if step.needs_recbole:
            ok, note = ensure_recbole_venv(log, create=make_recbole)
            record["note"] = note
            print(f"  {note}", flush=True)
            if not ok:
                record["status"] = "skipped"
                cmds = []
        for cmd in cmds:
            argv = [sys.executable if a == "{py}" else a for a in cmd.argv]
            shown = display(argv)
            print(f"  $ {shown}", flush=True)
            log.write(f"$ {shown}\n")
            log.flush()
            res = run_command(argv, log, env=env, timeout=timeout)
            if cmd.stdout_to and res.exit_code == 0:  # a failed run's partial output stays in the log only
                (out / cmd.stdout_to).write_text(res.stdout)
            record["commands"].append({"command": shown, "exit_code": res.exit_code, "seconds": round(res.seconds, 1),
                                       "peak_rss_MB": None if res.peak_rss_MB is None else round(res.peak_rss_MB, 1), "timed_out": res.timed_out,
                                       "stdout_to": rel(out / cmd.stdout_to) if cmd.stdout_to else None})
            if res.exit_code != 0:
                record["status"] = "failed"
                if res.timed_out:
                    record["note"] = (record["note"] + f" timed out after {timeout:.0f} s.").strip()
    record["seconds"] = round(time.perf_counter() - t0, 1)
    record["finished"] = now()
    record["load_average_end"] = list(os.getloadavg())
    record["peak_rss_MB"] = max((c["peak_rss_MB"] for c in record["commands"] if c["peak_rss_MB"] is not None),
                                default=None)
    record["log"] = rel(log_path)
    if record["status"] != "ok":
        record["log_tail"] = tail(log_path.read_text(errors="replace"))
    write_record(out / "run_all" / f"{step.name}.json", record)
    return record


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1")
    if not env.get("CPTPP_DATA_MIRROR") and (ROOT.parent / "shared" / "data").is_dir():
        env["CPTPP_DATA_MIRROR"] = str(ROOT.parent / "shared" / "data")
    return env


# --------------------------------------------------------------------------- rendering numbers

def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def fmt_s(x: float) -> str:
    return f"{x:.3f} s" if x < 1 else f"{x:.1f} s" if x < 100 else f"{x:.0f} s"


def render_recsys_speed(path: Path) -> str:
    d = _load(path)
    c, g = d["cptpp"], d["torch_geometric"]
    return "\n".join([
        f"{d['dataset']}: {d['users']:,} users, {d['items']:,} items, {d['train_pairs']:,} train pairs, "
        f"{d['batches_per_epoch']} batches of 2048; {d.get('threads', '?')} torch threads.", "",
        "| | cptpp | torch_geometric | ratio |", "|---|---:|---:|---:|",
        f"| training epoch | {fmt_s(c['epoch_seconds'])} | {fmt_s(g['epoch_seconds_extrapolated'])} "
        f"({g['batch_seconds']:.3f} s/batch over {g['batches_timed']} batches, scaled) | {d['speedup_epoch']:.1f}x |",
        f"| full-ranking evaluation (valid users) | {fmt_s(c['eval_valid_seconds'])} | {fmt_s(g['eval_seconds'])} "
        f"| {d['speedup_eval']:.1f}x |",
        "", f"cptpp valid Recall@20 after one epoch: {c['valid_recall@20_after_1_epoch']:.4f}.",
    ])


def render_propagate_speed(path: Path) -> str:
    d = _load(path)
    best = min(v for k, v in d["seconds"].items() if k in ("numba", "torch_csr"))
    rows = [f"| {k} | {v * 1e3:.1f} ms | {v / best:.1f}x |" for k, v in d["seconds"].items()]
    frac = d["fraction_of_copy_bandwidth"]
    return "\n".join([
        f"{d['dataset']}: {d['nodes']:,} nodes, {d['nnz']:,} nonzeros, dim {d['dim']}, {d['layers']} layers, "
        f"{d.get('threads', '?')} torch threads.", "",
        "| propagation (all layers) | best time | vs fastest cptpp kernel |", "|---|---:|---:|", *rows, "",
        f"Memory bandwidth (numpy copy, same process): {d['copy_bandwidth_GBps']:.1f} GB/s; propagation moves "
        f"{d['propagate_bandwidth_GBps']:.2f} GB/s under the minimal-traffic model = **{100 * frac:.0f}%** of it "
        f"(target: at least 40%: {'met' if frac >= 0.4 else 'not met'}).",
    ])


def render_memory(path: Path) -> str:
    d = json.loads(path.read_text().strip().splitlines()[-1])
    return (f"| {d['dataset']} | {d['nodes']:,} | {d['train_pairs']:,} | {d['rss_before_model_MB']:.0f} | "
            f"{d['rss_growth_MB']:.1f} | {d['bytes_per_node_if_all_node_state']:,.0f} |")


MEMORY_HEADER = ("| dataset | user + item nodes | train pairs | RSS before the model (MB) | RSS growth (MB) | "
                 "bytes per node (growth / nodes) |\n|---|---:|---:|---:|---:|---:|")


def render_recbole_peer(path: Path) -> str:
    from peers.recbole_peer import table

    d = _load(path)
    sp = d["split"]
    return (f"{d['dataset']}: {sp['users']:,} users, {sp['items']:,} items; train / valid / test {sp['train']:,} / "
            f"{sp['valid']:,} / {sp['test']:,} pairs; {d['epochs']} epochs, seeds {', '.join(d['per_seed'])}.\n\n" + table(d)
            + "\n\nRuns differ in random initialization and negatives, not in settings. s/epoch is the median "
              "wall time of a training epoch; runs that shared the cores with other jobs read slower, so use "
              "it as a rough figure and `recbole-lightgcn` for speed.")


def render_recbole(path: Path) -> str:
    d = _load(path)
    r, c = d["recbole"], d["cptpp"]
    k = d["settings"]["topk"]

    def row(label, rv, cv, fmt, ratio=True):
        cell = f" {rv / cv:.1f}x |" if ratio and cv else " |"
        return f"| {label} | {fmt(rv)} | {fmt(cv)} |" + cell

    epochs_note = ("mean over epochs 2.." + str(d["epochs"])) if d["epochs"] > 1 else "1 epoch"
    lines = [
        f"{d['dataset']}: {d['split']['users']:,} users, {d['split']['items']:,} items; train / valid / test "
        f"{d['split']['train']:,} / {d['split']['valid']:,} / {d['split']['test']:,} pairs; {d['epochs']} "
        f"epoch(s), {c['batches_per_epoch']} batches of {d['settings']['batch_size']}; torch threads: RecBole "
        f"{r['threads']}, cptpp {c['threads']} ({r['library']}, torch {r['torch']} | {c['library']}, torch "
        f"{c['torch']}).", "",
        "| | RecBole | cptpp | ratio (RecBole / cptpp) |", "|---|---:|---:|---:|",
        row(f"training epoch, wall ({epochs_note})", r["epoch_seconds_mean"], c["epoch_seconds_mean"], fmt_s),
    ]
    if "epoch_cpu_seconds_mean" in r:
        lines.append(row(f"training epoch, CPU time of all threads ({epochs_note})", r["epoch_cpu_seconds_mean"],
                         c["epoch_cpu_seconds_mean"], fmt_s))
    lines += [
        row("full-ranking evaluation, valid, wall (median)", r["valid_eval_seconds_median"],
            c["valid_eval_seconds_median"], fmt_s),
    ]
    if "valid_eval_cpu_seconds_median" in r:
        lines.append(row("full-ranking evaluation, valid, CPU time (median)", r["valid_eval_cpu_seconds_median"],
                         c["valid_eval_cpu_seconds_median"], fmt_s))
    lines += [
        row("full-ranking evaluation, test, wall", r["test_eval_seconds"], c["test_eval_seconds"], fmt_s),
        row("setup (data, graph; cptpp: + JIT warm-up)", r["setup_seconds"], c["setup_seconds"], fmt_s),
        row("peak RSS of the side's process", r["peak_rss_MB"], c["peak_rss_MB"], lambda x: f"{x:,.0f} MB"),
    ]
    for split in ("valid", "test"):
        for m in (f"recall@{k}", f"ndcg@{k}"):
            lines.append(row(f"{split} {m.replace('recall', 'Recall').replace('ndcg', 'NDCG')}",
                             r[split][m], c[split][m], lambda x: f"{x:.4f}", ratio=False))
    lines += ["", "The two sides run one after the other: wall seconds include whatever else the shared cores were "
              "doing at the time, CPU seconds (`time.process_time`, all threads of the side's process) much less so. "
              "Metrics are after the last epoch on both sides (same epoch count, no model selection); the two "
              "libraries draw different random initializations and negatives."]
    return "\n".join(lines)


def render_text(path: Path, max_lines: int = 80) -> str:
    text = path.read_text(errors="replace").rstrip("\n")
    lines = text.splitlines()
    if len(lines) > max_lines:
        lines = [f"... ({len(lines) - max_lines} earlier lines in {rel(path)})"] + lines[-max_lines:]
    return "```text\n" + "\n".join(lines) + "\n```" if lines else "(empty output)"


def include_markdown(path: Path) -> str:
    """An accuracy table's own markdown, headings pushed below this report's section level."""
    out = []
    for line in path.read_text(errors="replace").rstrip("\n").splitlines():
        m = re.match(r"^(#{1,6})\s+(.*)", line)
        out.append(f"{'#' * min(6, len(m.group(1)) + 3)} {m.group(2)}" if m else line)
    return "\n".join(out)


def render_file(step: Step, path: Path, report_dir: Path) -> str:
    if path.suffix == ".png":
        return f"![{path.name}]({os.path.relpath(path, report_dir)})"
    if step.render is not None:
        return step.render(path)
    if path.suffix == ".md":
        return include_markdown(path)
    return render_text(path)


# --------------------------------------------------------------------------- the report

SIZES = (("quick", "quick"), ("full", ""))  # (size, subfolder of the results folder)


def load_record(folder: Path, name: str) -> dict | None:
    path = folder / "run_all" / f"{name}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def output_files(step: Step, folder: Path) -> list[Path]:
    files = []
    for pattern in step.outputs:
        files += sorted(Path(p) for p in glob.glob(str(folder / pattern)))
    return files


def render_size_block(step: Step, size: str, folder: Path, report_dir: Path) -> str | None:
    record = load_record(folder, step.name)
    files = output_files(step, folder)
    if record is None and not files:
        return None
    lines = [f"### {step.name}, {size} size", ""]
    if record is not None:
        status = record["status"]
        label = {"ok": "ok", "failed": "**FAILED**", "skipped": "**SKIPPED**"}.get(status, status)
        cmds = record.get("commands") or []
        lines.append(f"- run by `benchmarks/run_all.py --{size}`: {record['started']} to {record['finished']} "
                     f"({record['seconds']:.0f} s), status {label}")
        for c in cmds:
            extra = f", exit {c['exit_code']}" + (" (timed out)" if c.get("timed_out") else "")
            rss = "not measured" if c.get("peak_rss_MB") is None else f"{c['peak_rss_MB']:,.0f} MB"
            lines.append(f"  - `{c['command']}` ({c['seconds']:.0f} s, peak RSS {rss}{extra})")
        if record.get("note"):
            lines.append(f"- note: {record['note']}")
        m = record.get("machine") or {}
        la = record.get("load_average_start")
        lines.append(f"- machine: {machine_line(m)}" + (f"; load average {la[0]:.1f} at the start" if la else ""))
        if record.get("peak_rss_MB") is not None:
            lines.append(f"- peak RSS: {record['peak_rss_MB']:,.0f} MB (largest of the commands; `ru_maxrss` of "
                         "the process tree via `benchmarks/peak_rss.py`)")
        if status != "ok" and record.get("log_tail"):
            lines += ["", f"Last lines of `{record.get('log', 'the log')}`:", "", "```text", record["log_tail"], "```"]
    if record is None and files:
        main = files[0]
        command, source = recorded_command(step, main)
        lines.append(f"- command: `{command}` ({source})")
        lines.append(f"- produced: {file_date(main)}; not run by `run_all.py`, so its peak RSS was not measured")
        recorded = _machine_of(main)
        lines.append("- machine: " + (", ".join(recorded) + " (recorded in the results)" if recorded
                                      else "not recorded in the results"))
    if files:
        lines.append(f"- files: {', '.join(f'`{rel(f)}`' for f in files)}")
        if record is not None and record["status"] != "ok":
            lines.append(f"- the files below may be older than this failed run: {file_date(files[0])}")
        lines.append("")
        rendered = [render_file(step, f, report_dir) for f in files]
        if step.render is render_memory:
            rendered = [MEMORY_HEADER + "\n" + "\n".join(rendered)]
        lines += ["\n\n".join(rendered)]
    elif record is not None and record["status"] == "ok":
        lines += ["", "(the run wrote none of the expected files: " + ", ".join(step.outputs) + ")"]
    return "\n".join(lines)


def _machine_of(path: Path) -> list[str]:
    """What a results json says about the machine: torch version, threads, device."""
    try:
        data = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(data, dict):
        return []
    meta, args = data.get("meta") or {}, stored_args(data) or {}
    machine = data.get("machine") or meta.get("machine")
    if isinstance(machine, str):
        return [machine]
    out = []
    torch_version = data.get("torch") or meta.get("torch")
    if torch_version:
        out.append(f"torch {torch_version}")
    threads = data.get("threads", args.get("threads"))
    if threads is not None:
        out.append(f"{threads} torch threads")
    device = data.get("device") or meta.get("device")
    if device:
        out.append(f"device {device}")
    return out


def build_report(results: Path, step_list: list[Step], *, generated_by: str, machine: dict,
                 report_dir: Path | None = None) -> str:
    report_dir = report_dir or results.parent
    runs = []
    for size, sub in SIZES:
        folder = results / sub if sub else results
        recs = [r for r in (load_record(folder, s.name) for s in step_list) if r is not None]
        if recs:
            runs.append(f"`--{size}` steps last finished {max(r['finished'] for r in recs)}")
    head = [
        "# Benchmark results", "",
        f"Generated by `{generated_by}` on {now()} from `benchmarks/results/` "
        f"({'; '.join(runs) or 'no run_all.py runs recorded'}); do not edit by hand, "
        "`python benchmarks/run_all.py --report` rebuilds it.", "",
        f"Machine: {machine_line(machine)}.", "",
        "How to read it:",
        "- **Sizes.** `--full` results live in `benchmarks/results/` (the committed, full-size files); `--quick` "
        "results in `benchmarks/results/quick/` (fewer repeats, capped inputs, 1 RecBole epoch). Each section "
        "says which size produced each number. The long accuracy tables are not rerun by `--quick`: they "
        "appear with the command and date that produced their committed file.",
        "- **Load.** This machine's cores are shared with training runs and other jobs, so absolute seconds "
        "vary from run to run. Ratios against a peer (torch_geometric, a naive loop, RecBole) are measured "
        "in the same run, on the same data, under the same load, and are the numbers to compare.",
        "- **Peak RSS** is the largest resident set of each benchmark's process tree (`ru_maxrss` from "
        "`os.wait4`, read by the small launcher `benchmarks/peak_rss.py`), measured when `run_all.py` runs it.", "",
        "| section | size | status | when | seconds | peak RSS |", "|---|---|---|---|---:|---:|",
    ]
    body = []
    for step in step_list:
        blocks = []
        for size, sub in SIZES:
            folder = results / sub if sub else results
            block = render_size_block(step, size, folder, report_dir)
            if block is None:
                continue
            blocks.append(block)
            rec = load_record(folder, step.name)
            if rec is not None:
                rss = f"{rec['peak_rss_MB']:,.0f} MB" if rec.get("peak_rss_MB") is not None else ""
                status = rec["status"] if rec["status"] == "ok" else f"**{rec['status'].upper()}**"
                head.append(f"| [{step.name}](#{step.name}) | {size} | {status} | {rec['finished']} | "
                            f"{rec['seconds']:.0f} | {rss} |")
            else:
                files = output_files(step, folder)
                head.append(f"| [{step.name}](#{step.name}) | {size} | file not from run_all | "
                            f"{file_date(files[0]).split(' (')[0]} | | |")
        section = [f"## {step.name}", "", f"**{step.title}** (`{step.script}`)", "", step.what, ""]
        if blocks:
            section.append("\n\n".join(blocks))
        else:
            cmd = display([a if a != "{py}" else "python" for a in step.full(results)[0].argv])
            head.append(f"| [{step.name}](#{step.name}) | | no results yet | | | |")
            section.append(f"No results yet. Produce them with `{cmd}` (or `benchmarks/run_all.py --full "
                           f"--only {step.name}`).")
        body.append("\n".join(section))
    return "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"


def write_report(results: Path, step_list: list[Step], generated_by: str, machine: dict, path: Path = REPORT) -> None:
    text = build_report(results, step_list, generated_by=generated_by, machine=machine, report_dir=path.parent)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- main

def select(step_list: list[Step], only: str | None, skip: str | None) -> list[Step]:
    names = [s.name for s in step_list]
    for opt, value in (("--only", only), ("--skip", skip)):
        for n in (value or "").split(","):
            if n and n not in names:
                raise SystemExit(f"{opt}: unknown step {n!r}; valid: {', '.join(names)}")
    keep = set((only or ",".join(names)).split(",")) - set((skip or "").split(","))
    return [s for s in step_list if s.name in keep]


def run_all(step_list: list[Step], size: str, results: Path, *, timeout: float | None = None,
            make_recbole: bool = True, report: Path | None = REPORT, all_steps: list[Step] | None = None,
            generated_by: str = "") -> list[dict]:
    """Run the steps that have commands at ``size``; returns their run records."""
    out = results / "quick" if size == "quick" else results
    machine = machine_info()
    env = child_env()
    todo = [s for s in step_list if (s.quick if size == "quick" else s.full) is not None]
    records = []
    t0 = time.perf_counter()
    for i, step in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] {step.name} ({size}) - {step.title}", flush=True)
        rec = run_step(step, size, out, machine, timeout=timeout, make_recbole=make_recbole, env=env)
        records.append(rec)
        print(f"[{i}/{len(todo)}] {step.name}: {rec['status']} in {rec['seconds']:.0f} s, peak RSS "
              f"{rec['peak_rss_MB'] or 0:,.0f} MB (total {time.perf_counter() - t0:.0f} s)", flush=True)
        if report is not None:
            write_report(results, all_steps or step_list, generated_by, machine, report)
    skipped = [s.name for s in step_list if s not in todo]
    if skipped:
        print(f"not rerun at {size} size (their committed results are reported): {', '.join(skipped)}")
    return records


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true", help="fast speed benchmarks into benchmarks/results/quick/")
    size.add_argument("--full", action="store_true", help="every benchmark at full size into benchmarks/results/")
    size.add_argument("--report", action="store_true", help="only rebuild RESULTS.md")
    ap.add_argument("--only", default=None, help="comma list of steps to run")
    ap.add_argument("--skip", default=None, help="comma list of steps not to run")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per command (default: none)")
    ap.add_argument("--no-recbole-venv", action="store_true", help="do not create .venv-recbole when missing")
    ap.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    ap.add_argument("--out-report", default=str(REPORT), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    all_steps = steps()
    chosen = select(all_steps, args.only, args.skip)
    results, report = Path(args.results), Path(args.out_report)
    mode = "quick" if args.quick else "full" if args.full else "report"
    generated_by = "python benchmarks/run_all.py --" + mode
    t0 = time.perf_counter()
    records = []
    if mode != "report":
        records = run_all(chosen, mode, results, timeout=args.timeout, make_recbole=not args.no_recbole_venv,
                          report=report, all_steps=all_steps, generated_by=generated_by)
    write_report(results, all_steps, generated_by, machine_info(), report)
    failed = [r["step"] for r in records if r["status"] == "failed"]
    skipped = [r["step"] for r in records if r["status"] == "skipped"]
    print(f"wrote {rel(report)} ({time.perf_counter() - t0:.0f} s)")
    if skipped:
        print(f"skipped: {', '.join(skipped)} (see RESULTS.md)")
    if failed:
        print(f"FAILED: {', '.join(failed)} (see RESULTS.md and {rel(results)}/.../logs/)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
