"""The one training loop every cptpp task uses.

A task supplies its model, an epoch's batches, ``loss(batch)`` and ``evaluate(split)``; the loop
owns seeding, the optimizer, progress bars, early stopping on the validation metric, checkpoints
(so ``resume=True`` continues a killed run to the same result) and the run directory:

    out/config.json     what was run (written once, atomically)
    out/metrics.jsonl   one record per epoch: loss, validation metrics, seconds
    out/checkpoint.pt   last completed epoch: model, optimizer, RNG states, early-stopping state
    out/best.pt         model state at the best validation epoch
    out/results.json    {"valid": {...}, "test": {...}, "best_epoch": ..., "seconds_per_epoch": ...}
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
import torch

from cptpp.config import ConfigError, check_choice
from cptpp.train import distributed as dist
from cptpp.train.allocator import keep_freed_memory
from cptpp.io import append_jsonl, save_torch, write_json
from cptpp.train.config import TrainConfig

class Task(Protocol):
    """What a task gives the loop. ``model`` holds every parameter to checkpoint."""

    model: torch.nn.Module

    def batches(self, epoch: int, generator: torch.Generator) -> Iterable[Any]: ...

    def loss(self, batch: Any) -> torch.Tensor: ...

    def evaluate(self, split: str) -> dict[str, float]: ...


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


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    params = list(params)
    if not params:
        raise ConfigError("the task has no trainable parameters")
    # The fused kernel does Adam's update in one pass instead of ~10 (8x faster on a 4.5 M-row
    # embedding table here); it needs floating-point parameters on CPU or CUDA.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)


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
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["epoch"] <= upto_epoch]


def fit(task: Task, cfg: TrainConfig, run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train ``task`` with early stopping on ``cfg.metric`` (higher is better); test once at the best epoch.

    Returns the results dict (also written to ``out/results.json`` when ``cfg.out`` is set).
    """
    from tqdm.auto import tqdm

    keep_freed_memory()
    dist.setup_from_env()
    main_rank = dist.is_main()
    out = Path(cfg.out) if cfg.out else None
    gen = seed_everything(cfg.seed)
    params = [p for p in task.model.parameters() if p.requires_grad]
    opt = make_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay)

    start_epoch, best_value, best_epoch, bad_evals = 1, -math.inf, 0, 0
    best_state = _clone_state(task.model)
    best_valid: dict[str, float] = {}
    epoch_seconds: list[float] = []
    ckpt_path = out / "checkpoint.pt" if out else None
    if out:
        if cfg.resume and ckpt_path.exists():
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
            task.model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            _set_rng_state(gen, ckpt["rng"])
            start_epoch = ckpt["epoch"] + 1
            best_value, best_epoch, bad_evals = ckpt["best_value"], ckpt["best_epoch"], ckpt["bad_evals"]
            best_valid, epoch_seconds = ckpt["best_valid"], ckpt["epoch_seconds"]
            if (out / "best.pt").exists():  # absent when no evaluation has run yet
                best_state = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
            else:
                best_state = _clone_state(task.model)
            kept = _read_metrics(out / "metrics.jsonl", ckpt["epoch"])
            if main_rank:
                (out / "metrics.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
        else:
            if (out / "results.json").exists() or ckpt_path.exists():
                if not cfg.resume:
                    raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
            if main_rank:
                out.mkdir(parents=True, exist_ok=True)
                (out / "metrics.jsonl").write_text("")
                write_json(out / "config.json", {"train": asdict(cfg), "world_size": dist.world_size(),
                                                 **(run_config or {})})

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_evals >= cfg.patience > 0:
            stopped_early = True
            break
        task.model.train()
        t0 = time.perf_counter()
        batches = task.batches(epoch, gen)
        total, n = 0.0, 0
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", disable=not (cfg.progress and main_rank), leave=False,
                   total=len(batches) if hasattr(batches, "__len__") else None)
        for batch in bar:
            loss = task.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            dist.average_gradients(params)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            total += float(loss.detach())
            n += 1
            if n % 20 == 0:
                bar.set_postfix(loss=f"{total / n:.4f}")
        train_seconds = time.perf_counter() - t0
        epoch_seconds.append(train_seconds)
        record: dict[str, Any] = {"epoch": epoch, "loss": total / max(n, 1), "train_seconds": train_seconds}

        if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            task.model.eval()
            t1 = time.perf_counter()
            valid = None
            if main_rank:
                with torch.no_grad():
                    valid = task.evaluate("valid")
            valid = dist.broadcast_object(valid)
            record["eval_seconds"] = time.perf_counter() - t1
            record["valid"] = valid
            if cfg.metric not in valid:
                raise ConfigError(f"metric={cfg.metric!r} is not reported by evaluation; available: {', '.join(sorted(valid))}")
            if valid[cfg.metric] > best_value:
                best_value, best_epoch, best_valid, bad_evals = valid[cfg.metric], epoch, valid, 0
                best_state = _clone_state(task.model)
                if out and main_rank:
                    save_torch(out / "best.pt", best_state)
            else:
                bad_evals += 1
            if cfg.progress and main_rank:
                shown = ", ".join(f"{k}={v:.4f}" for k, v in valid.items() if k.endswith("@20") or k == cfg.metric)
                tqdm.write(f"epoch {epoch}: loss={record['loss']:.4f} {shown} ({train_seconds:.1f}s)")
        if out and main_rank:
            append_jsonl(out / "metrics.jsonl", record)
            save_torch(ckpt_path, {
                "epoch": epoch, "model": task.model.state_dict(), "optimizer": opt.state_dict(),
                "rng": _rng_state(gen), "best_value": best_value, "best_epoch": best_epoch,
                "bad_evals": bad_evals, "best_valid": best_valid, "epoch_seconds": epoch_seconds,
            })

    if cfg.eval_every:
        task.model.load_state_dict(best_state)
    else:  # no model selection: the final epoch is the model
        best_epoch = len(epoch_seconds)
    task.model.eval()
    test = None
    if main_rank:
        with torch.no_grad():
            test = task.evaluate("test")
    test = dist.broadcast_object(test)
    results = {
        "valid": best_valid,
        "test": test,
        "best_epoch": best_epoch,
        "epochs_run": len(epoch_seconds),
        "stopped_early": stopped_early,
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else 0.0,
    }
    if out and main_rank:
        write_json(out / "results.json", results)
    return results
