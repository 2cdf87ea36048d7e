"""The one training loop every cptpp task uses, pre-training included.

A task supplies its model, an epoch's batches, ``loss(batch)``, ``evaluate(split)`` and the name of
its validation ``metric`` (optionally ``param_groups()``: torch optimizer parameter groups, e.g. no
weight decay on norms). The loop owns seeding, the optimizer and its LR schedule, the step / time /
epoch budget, progress, early stopping on the validation metric, checkpoints (so ``resume=True``
continues a killed or finished run to the same result) and the run directory:

    out/config.json     what was run (written once, atomically)
    out/metrics.jsonl   one record per epoch: loss, step, LR, validation metrics, seconds
    out/checkpoint.pt   last completed epoch, or where a step / time limit cut an epoch short: model,
                        optimizer, RNG states, budget and early-stopping state
    out/best.pt         model state at the best validation epoch (``restore_best`` only)
    out/results.json    {"valid": {...}, "test": {...}, "best_epoch": ..., "stopped": ..., ...}

A run directory is never mixed up with another run: ``resume`` refuses a saved config.json that differs
from the new run's except in :data:`RESUMABLE_CHANGES` (budget, patience, progress, device), a
truncated or corrupt checkpoint is a one-line error naming it, a partial last line of metrics.jsonl
is dropped with a note, temp files of an interrupted save are removed, and a folder that is not a
run is not written into when it holds a file named like a run file.

An epoch is one pass over ``task.batches(epoch, generator)``; a task without epochs (LM
pre-training) yields a fixed number of steps per "epoch" and bounds the run by ``max_steps`` or
``max_minutes``. A limit reached inside an epoch leaves it unfinished (not validated, no metrics
record); resuming replays its batches from the generator state at its start up to the stop, restores
every RNG as it was there and finishes it, so a stopped and resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import torch

from cptpp.config import MISSING, ConfigError, check_choice, config_differences
from cptpp.io import append_jsonl, load_torch, remove_stale_temp_files, save_torch, write_json
from cptpp.train import distributed as dist
from cptpp.train.allocator import keep_freed_memory
from cptpp.train.config import TrainConfig
from cptpp.train.schedule import is_constant, lr_at

CHECKPOINT = "checkpoint.pt"


class Task(Protocol):
    """What a task gives the loop. ``model`` holds every parameter to checkpoint."""

    model: torch.nn.Module
    metric: str  # the key of evaluate("valid") to maximize, unless TrainConfig.metric names another

    def batches(self, epoch: int, generator: torch.Generator) -> Iterable[Any]: ...

    def loss(self, batch: Any) -> torch.Tensor: ...

    def evaluate(self, split: str) -> dict[str, float]: ...


@dataclass
class RunState:
    """What a checkpoint holds besides the model, optimizer and RNG states."""

    epoch: int = 0  # last completed epoch
    step: int = 0  # optimizer steps so far
    seconds: float = 0.0  # wall time of the run so far, resumes included
    best_value: float = -math.inf
    best_epoch: int = 0
    bad_evals: int = 0
    best_valid: dict[str, float] = field(default_factory=dict)
    last_valid: dict[str, float] = field(default_factory=dict)
    epoch_seconds: list[float] = field(default_factory=list)
    # An epoch cut short by a step / time limit: batches done, their summed loss and seconds, and the
    # generator state at the epoch's start (to replay its batches on resume).
    partial_batches: int = 0
    partial_loss: float = 0.0
    partial_seconds: float = 0.0
    epoch_generator: torch.Tensor | None = None


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_choice("device", device.split(":")[0], ("auto", "cpu", "cuda"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but CUDA is not available here; use --device cpu or auto")
    return torch.device(device)


def make_optimizer(name: str, params, lr: float, weight_decay: float, *, betas=(0.9, 0.999),
                   fused: bool = True) -> torch.optim.Optimizer:
    """``params``: tensors, or torch parameter-group dicts (a group's own keys override the arguments)."""
    params = list(params)
    tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
    if not tensors:
        raise ConfigError("the task has no trainable parameters")
    # The fused kernel does Adam's update in one pass instead of ~10 (8x faster on a 4.5 M-row
    # embedding table here); it needs floating-point parameters on CPU or CUDA. Its rounding differs
    # from torch's default implementation (fused=None), which ``fused=False`` keeps.
    if not all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors):
        fused = False
    fused = True if fused else None
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


def task_optimizer(task: Task, cfg: TrainConfig, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer over ``params`` (the trainable ones), grouped by ``task.param_groups()`` if it has one."""
    groups = task.param_groups() if hasattr(task, "param_groups") else params
    if groups is not params:
        grouped = [p for g in groups for p in g["params"]]
        if sorted(map(id, grouped)) != sorted(map(id, params)):
            raise ConfigError(f"{type(task).__name__}.param_groups() holds {len(grouped)} tensors, but the model has "
                              f"{len(params)} trainable ones: every trainable parameter must be in exactly one group")
    return make_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay, betas=cfg.betas, fused=cfg.fused)


def resolve_metric(task: Task, cfg: TrainConfig) -> str | None:
    """``cfg.metric``, else the task's own ``metric`` (None when nothing is validated)."""
    metric = cfg.metric or getattr(task, "metric", None)
    if metric is None and cfg.eval_every:
        raise ConfigError(f"metric=None and {type(task).__name__} has no `metric` attribute: set TrainConfig("
                          "metric=...) to a key its evaluate('valid') returns, or eval_every=0")
    return metric


# Settings a resumed run may change: its budget, early-stopping patience and where/how it runs.
# Anything else (model, data, objective, lr, seed, ...) would mix two runs into one result.
RESUMABLE_CHANGES = ("train.epochs", "train.max_steps", "train.max_minutes", "train.patience",
                     "train.progress", "train.resume", "train.out", "data.device", "world_size")


def _saved_config(out: Path) -> dict[str, Any] | None:
    """``out/config.json`` when it is a run's config (a JSON object with a "train" entry), else None."""
    try:
        saved = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) and isinstance(saved.get("train"), dict) else None


def is_run_dir(out: str | Path) -> bool:
    """Whether ``out`` holds a run of this loop (its config.json or checkpoint)."""
    out = Path(out)
    return (out / CHECKPOINT).is_file() or _saved_config(out) is not None


# The files the loop writes in a run directory (a folder holding any of them but no run is not overwritten).
RUN_FILES = ("config.json", "metrics.jsonl", CHECKPOINT, "best.pt", "results.json")


def check_run_dir(out: str | Path, resume: bool, *, only_empty: bool = False) -> None:
    """A run directory that already holds a run is continued with ``resume``, never overwritten; a folder
    that is not a run is never written into when it holds a file the loop writes (``only_empty``: when
    it holds anything, as the CLI requires of ``--out``)."""
    out = Path(out)
    if out.is_dir() and not is_run_dir(out):
        held = sorted(p.name for p in out.iterdir())
        clash = held if only_empty else [name for name in held if name in RUN_FILES]
        if clash:
            shown = ", ".join(clash[:5]) + (f", ... ({len(clash)} entries)" if len(clash) > 5 else "")
            raise ConfigError(f"--out {out} is a folder that is not a cptpp run (it holds {shown}, but no run "
                              "config.json or checkpoint.pt); choose a new or empty folder so nothing there is "
                              "overwritten")
    if not resume and ((out / "results.json").exists() or (out / CHECKPOINT).exists()):
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def check_resumable(out: str | Path) -> None:
    """``--resume`` needs a run in ``out`` (a mistyped --out must not silently start a new run)."""
    out = Path(out)
    if not is_run_dir(out):
        why = "no such folder" if not out.exists() else "no run config.json or checkpoint.pt there"
        raise ConfigError(f"nothing to resume in {out} ({why}); check --out, or drop --resume to start a new run")


def check_same_run(out: Path, saved: dict[str, Any], new: dict[str, Any], epochs_done: int,
                   may_change: Iterable[str] = ()) -> None:
    """Refuse to resume the run saved in ``out`` with settings other than :data:`RESUMABLE_CHANGES` and
    ``may_change`` (flattened keys of the task's ``run_config``, e.g. its own budget)."""
    allowed = set(RESUMABLE_CHANGES) | set(may_change)
    new = json.loads(json.dumps(new))  # tuples -> lists, as stored
    shown = lambda v: "(none)" if v is MISSING else json.dumps(v)  # noqa: E731
    diffs = [f"{key}: {shown(old)} -> {shown(cur)}" for key, old, cur in config_differences(saved, new)
             if key not in allowed]
    epochs = new.get("train", {}).get("epochs")
    if isinstance(epochs, int) and 0 < epochs < epochs_done:
        diffs.append(f"train.epochs: {epochs} is below the {epochs_done} epochs already run")
    if diffs:
        raise ConfigError(f"cannot resume {out}: it was run with other settings, and continuing it would mix two "
                          "runs in one result:\n  " + "\n  ".join(diffs) + "\nOn resume only "
                          f"{', '.join(k.split('.')[-1] for k in RESUMABLE_CHANGES[:5])} and device may change; "
                          "use a new --out for a different run")


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    return {
        "generator": gen.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(gen: torch.Generator, state: dict[str, Any]) -> None:
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    """The records of ``path`` up to ``upto_epoch``. A partial last line (a writer killed mid-line) is
    dropped with a note; a damaged line before it is an error naming ``path:line``."""
    if not path.exists():
        return []
    lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
                raise ValueError("not a metrics record (a JSON object with an integer 'epoch')")
        except ValueError as e:
            if i == last:
                print(f"note: {path}:{i + 1}: dropped a partial last line (left by an interrupted write)",
                      file=sys.stderr)
                continue
            raise ConfigError(f"{path}:{i + 1}: damaged metrics line ({str(e).splitlines()[0]}); fix or delete "
                              "that line to resume") from None
        records.append(record)
    return [r for r in records if r["epoch"] <= upto_epoch]


# ---------------------------------------------------------------- run directory

def _run_config(cfg: TrainConfig, metric: str | None, run_config: dict[str, Any] | None) -> dict[str, Any]:
    return {"train": {**asdict(cfg), "metric": metric}, "world_size": dist.world_size(), **(run_config or {})}


def _start_run_dir(out: Path, config: dict[str, Any]) -> None:
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.jsonl").write_text("")
        write_json(out / "config.json", config)


def _restore(out: Path, task: Task, opt: torch.optim.Optimizer, gen: torch.Generator,
             config: dict[str, Any], may_change: Iterable[str] = ()) -> tuple[RunState, dict[str, Any]]:
    """Load ``out/checkpoint.pt`` into the model, optimizer and RNGs; drop metrics written after it.
    The run's saved config.json must match ``config`` (see :func:`check_same_run`); then it is updated.

    Returns the run state and the RNG states at the checkpoint (an unfinished epoch restores them
    again after replaying its batches)."""
    path = out / CHECKPOINT
    ckpt = load_torch(path, weights_only=False,
                      remedy=f"delete it to restart the run from scratch, or resume from a copy of {out}")
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "rng"} <= set(ckpt):
        raise ConfigError(f"{path} is not a cptpp checkpoint (no model/optimizer/rng states); delete it to restart")
    saved = _saved_config(out)
    if saved is not None:
        check_same_run(out, saved, config, int(ckpt.get("epoch", 0)), may_change)
    try:
        task.model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(f"{path} does not fit this model ({str(e).splitlines()[0].strip()}); it was saved by a "
                          "run with other settings: use a new --out") from None
    _set_rng_state(gen, ckpt["rng"])
    state = RunState(**{f.name: ckpt[f.name] for f in fields(RunState) if f.name in ckpt})
    if dist.is_main():
        kept = _read_metrics(out / "metrics.jsonl", state.epoch)
        (out / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    return state, ckpt["rng"]


def _save_checkpoint(out: Path, task: Task, opt: torch.optim.Optimizer, gen: torch.Generator,
                     state: RunState) -> None:
    save_torch(out / CHECKPOINT, {"model": task.model.state_dict(), "optimizer": opt.state_dict(),
                                  "rng": _rng_state(gen), **asdict(state)})


# ---------------------------------------------------------------- budget

class Budget:
    """The run's clock (resumes included) and its epoch / step / time limits."""

    def __init__(self, cfg: TrainConfig, seconds_so_far: float = 0.0):
        self.cfg = cfg
        self.t0 = time.perf_counter() - seconds_so_far

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def progress(self, step: int, epochs_done: float) -> float:
        """The fraction of the budget spent (the largest over the limits that are set), in [0, 1]."""
        cfg, parts = self.cfg, [0.0]
        if cfg.epochs:
            parts.append(epochs_done / cfg.epochs)
        if cfg.max_steps:
            parts.append(step / cfg.max_steps)
        if cfg.max_minutes:
            parts.append(self.seconds() / (cfg.max_minutes * 60))
        return min(1.0, max(parts))

    def spent(self, step: int) -> str | None:
        """Which step or time limit is reached (rank 0's clock decides for every rank), else None."""
        if self.cfg.max_steps and step >= self.cfg.max_steps:
            return "max_steps"
        if self.cfg.max_minutes and dist.broadcast_object(self.seconds() >= self.cfg.max_minutes * 60):
            return "max_minutes"
        return None


def _stop_reason(cfg: TrainConfig, state: RunState, budget: Budget) -> str | None:
    """Why no further epoch starts: all epochs run, patience used up, or a step / time limit reached."""
    if cfg.epochs and state.epoch >= cfg.epochs:
        return "epochs"
    if state.bad_evals >= cfg.patience > 0:
        return "patience"
    return budget.spent(state.step)


# ---------------------------------------------------------------- one epoch, evaluation

def _train_epoch(task: Task, epoch: int, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
                 base_lrs: list[float], cfg: TrainConfig, state: RunState, budget: Budget, gen: torch.Generator,
                 rng_at_stop: dict[str, Any] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """Train epoch ``epoch`` (or finish it, when a limit cut it short before) until its batches end or a
    step / time limit is reached. Returns its metrics record (None when left unfinished) and the limit."""
    from tqdm.auto import tqdm

    task.model.train()
    t0 = time.perf_counter()
    if state.partial_batches:  # replay the batches done before the stop (they draw from ``gen`` again)
        gen.set_state(state.epoch_generator)
    else:
        state.epoch_generator = gen.get_state()
    batches = task.batches(epoch, gen)
    n_batches = len(batches) if hasattr(batches, "__len__") else None
    batch_iter = iter(batches)
    for _ in itertools.islice(batch_iter, state.partial_batches):
        pass
    if rng_at_stop is not None:
        _set_rng_state(gen, rng_at_stop)
    scheduled = not is_constant(cfg.schedule, cfg.warmup_steps, cfg.cooldown)
    total, n, stop = state.partial_loss, state.partial_batches, None
    # tqdm's disable=None: a bar on a terminal only (progress None = auto)
    disable = None if cfg.progress is None else not cfg.progress
    bar = tqdm(batch_iter, desc=f"epoch {epoch}" + (f"/{cfg.epochs}" if cfg.epochs else ""), leave=False,
               disable=disable if dist.is_main() else True, total=n_batches, initial=n)
    for batch in bar:
        if scheduled:
            progress = budget.progress(state.step, epoch - 1 + (n / n_batches if n_batches else 0.0))
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = lr_at(base, state.step, progress, schedule=cfg.schedule,
                                    warmup_steps=cfg.warmup_steps, cooldown=cfg.cooldown)
        loss = task.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(params)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        state.step += 1
        total += float(loss.detach())
        n += 1
        if n % 20 == 0:
            bar.set_postfix(loss=f"{total / n:.4f}")
        stop = budget.spent(state.step)
        if stop:
            break
    bar.close()
    seconds = state.partial_seconds + time.perf_counter() - t0
    if stop and (n_batches is None or n < n_batches):  # unfinished: resume picks it up here
        state.partial_batches, state.partial_loss, state.partial_seconds = n, total, seconds
        return None, stop
    state.partial_batches, state.partial_loss, state.partial_seconds, state.epoch_generator = 0, 0.0, 0.0, None
    record = {"epoch": epoch, "step": state.step, "loss": total / max(n, 1), "lr": opt.param_groups[0]["lr"],
              "train_seconds": seconds}
    return record, stop


def _evaluate(task: Task, split: str) -> dict[str, float]:
    """Rank 0 evaluates ``split`` without gradients; every rank gets its metrics."""
    task.model.eval()
    metrics = None
    if dist.is_main():
        with torch.no_grad():
            metrics = task.evaluate(split)
    return dist.broadcast_object(metrics)


def _validate(task: Task, metric: str, record: dict[str, Any], state: RunState) -> bool:
    """Validate the epoch of ``record`` (metrics go into it) and update the early-stopping state;
    returns whether ``metric`` improved on the best so far."""
    t0 = time.perf_counter()
    valid = _evaluate(task, "valid")
    record["eval_seconds"] = time.perf_counter() - t0
    record["valid"] = state.last_valid = valid
    if metric not in valid:
        raise ConfigError(f"metric={metric!r} is not reported by evaluation; available: {', '.join(sorted(valid))}")
    if valid[metric] > state.best_value:
        state.best_value, state.best_epoch, state.best_valid, state.bad_evals = valid[metric], record["epoch"], valid, 0
        return True
    state.bad_evals += 1
    return False


def _show(record: dict[str, Any], metric: str) -> None:
    from tqdm.auto import tqdm

    value = record.get("valid", {}).get(metric)
    shown = f" {metric}={value:.4f}" if value is not None else ""
    tqdm.write(f"epoch {record['epoch']} (step {record['step']}): loss={record['loss']:.4f}{shown} "
               f"lr={record['lr']:.2e} ({record['train_seconds']:.1f}s)")


# ---------------------------------------------------------------- the loop

def _open_run(out: Path, cfg: TrainConfig, task: Task, opt: torch.optim.Optimizer, gen: torch.Generator,
              metric: str | None, run_config: dict[str, Any] | None,
              may_change: Iterable[str] = ()) -> tuple[RunState, dict[str, Any] | None]:
    """Restore the checkpoint in ``out`` (``resume``) or start a new run directory there.

    Returns the run state and the RNG states at the checkpoint (None for a new run)."""
    check_run_dir(out, cfg.resume)
    if dist.is_main() and is_run_dir(out):
        stale = remove_stale_temp_files(out)
        if stale:
            print(f"note: removed {len(stale)} temp file(s) an interrupted save left in {out}: {', '.join(stale)}",
                  file=sys.stderr)
    config = _run_config(cfg, metric, run_config)
    if not (cfg.resume and (out / CHECKPOINT).exists()):
        _start_run_dir(out, config)
        return RunState(), None
    state, rng_at_stop = _restore(out, task, opt, gen, config, may_change)
    if dist.is_main():
        write_json(out / "config.json", config)  # the resumed run's budget (epochs, ...) as now run
    if cfg.progress is not False and dist.is_main():
        print(f"resuming {out} after epoch {state.epoch} (step {state.step})", file=sys.stderr)
    return state, rng_at_stop


def _final_test(task: Task, cfg: TrainConfig, state: RunState, best_state: dict[str, torch.Tensor] | None,
                metric: str | None, stopped: str, seconds: float) -> dict[str, Any]:
    """Load the model to test (the best validated one, or the last), test it once; the results dict."""
    if best_state is not None:
        task.model.load_state_dict(best_state)
    if not cfg.eval_every:  # no model selection: the final epoch is the model
        state.best_epoch = len(state.epoch_seconds)
    return {
        "valid": state.best_valid if cfg.restore_best else state.last_valid,
        "test": _evaluate(task, "test"),
        "metric": metric,
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.epoch_seconds),
        "steps": state.step,
        "stopped": stopped,
        "stopped_early": stopped == "patience",
        "seconds": seconds,
        "seconds_per_epoch": float(np.mean(state.epoch_seconds)) if state.epoch_seconds else 0.0,
    }


def fit(task: Task, cfg: TrainConfig, run_config: dict[str, Any] | None = None, *,
        may_change: Iterable[str] = ()) -> dict[str, Any]:
    """Train ``task`` with early stopping on the validation metric (higher is better); test once at the end.

    The tested model is the best validated one (``restore_best``; the last one when a limit stopped
    the run before any validation), or the last one. Returns the results dict (also written to
    ``out/results.json`` when ``cfg.out`` is set); ``stopped`` says why training ended: ``epochs``,
    ``patience``, ``max_steps`` or ``max_minutes``.

    ``run_config`` (recorded in ``out/config.json`` next to ``cfg``) must match the saved one on
    ``resume``, except the keys in :data:`RESUMABLE_CHANGES` and ``may_change`` (dotted keys of
    ``run_config``, e.g. ``"pretrain.steps"``); a difference is a ConfigError listing each key.
    """
    keep_freed_memory()
    dist.setup_from_env()
    main_rank = dist.is_main()
    out = Path(cfg.out) if cfg.out else None
    metric = resolve_metric(task, cfg)
    gen = seed_everything(cfg.seed)
    params = [p for p in task.model.parameters() if p.requires_grad]
    opt = task_optimizer(task, cfg, params)
    base_lrs = [g["lr"] for g in opt.param_groups]  # before a checkpoint overwrites them with scheduled ones
    state, rng_at_stop = (_open_run(out, cfg, task, opt, gen, metric, run_config, may_change) if out
                          else (RunState(), None))
    selecting = bool(cfg.eval_every and cfg.restore_best)
    best_state = None  # the model at the best validation so far (None before the first one)
    if selecting and state.best_epoch and out and (out / "best.pt").exists():
        best_state = load_torch(out / "best.pt", weights_only=False,
                                remedy="the best model so far is lost: start the run again in a new --out")

    budget = Budget(cfg, state.seconds)
    stopped = _stop_reason(cfg, state, budget)
    while stopped is None:
        epoch = state.epoch + 1
        record, stopped = _train_epoch(task, epoch, opt, params, base_lrs, cfg, state, budget, gen,
                                       rng_at_stop if state.partial_batches else None)
        if record is None:  # a limit cut the epoch short: checkpoint where it stopped
            state.seconds = budget.seconds()
            if out and main_rank:
                _save_checkpoint(out, task, opt, gen, state)
            break
        state.epoch = epoch
        state.epoch_seconds.append(record["train_seconds"])
        last = stopped is not None or epoch == cfg.epochs
        if cfg.eval_every and (epoch % cfg.eval_every == 0 or last):
            if _validate(task, metric, record, state) and selecting:
                best_state = _clone_state(task.model)
                if out and main_rank:
                    save_torch(out / "best.pt", best_state)
            if cfg.progress is not False and main_rank:
                _show(record, metric)
        state.seconds = record["seconds"] = budget.seconds()
        if out and main_rank:
            append_jsonl(out / "metrics.jsonl", record)
            _save_checkpoint(out, task, opt, gen, state)
        if stopped is None:
            stopped = _stop_reason(cfg, state, budget)

    results = _final_test(task, cfg, state, best_state if selecting else None, metric, stopped, budget.seconds())
    if out and main_rank:
        write_json(out / "results.json", results)
    return results
