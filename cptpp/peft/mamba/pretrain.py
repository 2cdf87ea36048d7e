"""Pre-training a byte-level Mamba LM on the mirror's English text, for a bounded time (``cptpp mamba-pretrain``).

Text: ``corpus.build_corpus`` (SuperGLUE MultiRC/RTE/WiC/CB/COPA/WSC, UD-POS and PAN-X English; no
BoolQ, nothing from the commonsense evaluation sets). Batches are windows of ``max_len`` bytes at
random offsets of the training stream; the loss is next-byte cross-entropy (nats/byte).

This is a step- and time-bounded loop rather than ``cptpp.train.fit``: LM pre-training has no
epochs, no model selection and no test split, and its budget is wall time.

Run directory ``out``:
    config.json, model.safetensors  the final model, ``MambaForCausalLM.from_pretrained(out)``
    cptpp_byte_lm.json    written last: marks a byte-level model (``experiment.load_base`` then uses
                          ``ByteTokenizer``) and says what it is (parameters, bytes seen, held-out loss, corpus)
    checkpoint.pt         state after the last evaluation, written atomically; ``resume=True`` continues it
    pretrain_config.json  the run's ``PretrainConfig``
    log.jsonl             one record per evaluation (step, bytes seen, seconds, lr, train and held-out loss)
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM

from cptpp.config import ConfigError
from cptpp.io import append_jsonl, save_torch, write_json
from cptpp.peft.mamba.corpus import Corpus, build_corpus, heldout_windows, random_windows
from cptpp.peft.mamba.pretrain_config import RESUMABLE_CHANGES, PretrainConfig
from cptpp.peft.mamba.tuners import use_cptpp_scan
from cptpp.peft.tokenizers import ByteTokenizer
from cptpp.train.allocator import keep_freed_memory
from cptpp.train.params import count_parameters

MARKER = "cptpp_byte_lm.json"


def byte_mamba_config(cfg: PretrainConfig) -> MambaConfig:
    pad = ByteTokenizer.pad_token_id
    return MambaConfig(vocab_size=ByteTokenizer.vocab_size, hidden_size=cfg.hidden, state_size=cfg.state,
                       num_hidden_layers=cfg.layers, expand=2, conv_kernel=4, pad_token_id=pad, bos_token_id=pad,
                       eos_token_id=pad)


def byte_lm_info(path: str | Path) -> dict[str, Any] | None:
    """The marker of a folder written by ``pretrain`` (None for any other checkpoint)."""
    marker = Path(path) / MARKER
    if marker.is_file():
        return json.loads(marker.read_text())
    if (Path(path) / "pretrain_config.json").is_file():
        raise ConfigError(f"{path}: a `cptpp mamba-pretrain` run that has not finished (no {MARKER} yet); "
                          "wait for it, or continue it with `cptpp mamba-pretrain --resume --out` this folder")
    return None


def describe(info: dict[str, Any], path: str | Path) -> str:
    c = info["config"]
    return (f"byte-level Mamba pre-trained by `cptpp mamba-pretrain` ({info['parameters']:,} params: hidden "
            f"{c['hidden']}, {c['layers']} layers, state {c['state']}; {info['bytes_seen']:,} bytes seen "
            f"in {info['steps']} steps, {info['seconds'] / 60:.1f} min; held-out loss {info['heldout_loss']:.3f} "
            f"nats/byte) from {path}")


def lm_loss(model: MambaForCausalLM, ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy of ids [batch, L] (positions 1..L-1 predicted)."""
    logits = model(ids, use_cache=False).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction=reduction)


@torch.no_grad()
def heldout_loss(model: MambaForCausalLM, windows: torch.Tensor, batch_size: int, device) -> float:
    """Mean next-byte cross-entropy in nats/byte over held-out windows [n, L]."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(windows), batch_size):
        ids = windows[s:s + batch_size].to(device)
        total += float(lm_loss(model, ids, reduction="sum"))
        count += ids[:, 1:].numel()
    model.train(was_training)
    return total / count


def lr_at(cfg: PretrainConfig, step: int, progress: float) -> float:
    """LR for 0-based ``step`` at ``progress`` in [0, 1) of the budget: warmup, constant, linear cooldown to 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.cooldown > 0 and progress > 1 - cfg.cooldown:
        return cfg.lr * max(0.0, 1 - progress) / cfg.cooldown
    return cfg.lr


def _optimizer(model: torch.nn.Module, cfg: PretrainConfig, device: torch.device) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # No decay on gains, biases, D and A_log (decaying A_log would pull every decay rate to 1).
        (decay if p.ndim >= 2 and not name.endswith("A_log") else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=device.type in ("cpu", "cuda"))


def _check_resumable(saved: dict[str, Any], cfg: PretrainConfig, where: Path) -> None:
    now = asdict(cfg)
    diff = [f"{k}: {saved[k]!r} -> {now[k]!r}" for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        raise ConfigError(f"{where}: cannot resume with different settings ({'; '.join(diff)}); only "
                          f"{', '.join(RESUMABLE_CHANGES)} may change")


def _save_final(model: MambaForCausalLM, out: Path, info: dict[str, Any]) -> None:
    """``save_pretrained`` into ``out`` file by file (os.replace), then the marker: present only when complete."""
    (out / MARKER).unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".save-") as tmp:
        model.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            os.replace(f, out / f.name)
    write_json(out / MARKER, info)


def pretrain(cfg: PretrainConfig, out: str | Path, *, resume: bool = False, device: str | torch.device = "cpu",
             progress: bool = True, corpus: Corpus | None = None) -> tuple[MambaForCausalLM, dict[str, Any]]:
    """Pre-train until ``cfg.steps`` or ``cfg.minutes`` runs out; returns the model and its marker info.

    ``resume``: continue ``out/checkpoint.pt`` (a killed run, or a finished one with a larger budget).
    ``corpus``: the text to use (default: ``build_corpus(cfg.seed, cfg.heldout_fraction)``).
    """
    from tqdm.auto import tqdm

    keep_freed_memory()
    out, device = Path(out), torch.device(device)
    ckpt_path = out / "checkpoint.pt"
    saved = None
    if ckpt_path.exists():
        if not resume:
            raise ConfigError(f"{out} already holds a pre-training run; pass --resume to continue it or choose "
                              "another --out")
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_resumable(saved["config"], cfg, ckpt_path)
    if corpus is None:
        corpus = build_corpus(cfg.seed, cfg.heldout_fraction)
    c = corpus.summary()
    tqdm.write(f"corpus: {c['train_bytes'] + c['heldout_bytes']:,} bytes in {c['documents']:,} documents; "
               f"train {c['train_bytes']:,} bytes, held-out {c['heldout_bytes']:,} bytes "
               f"({c['heldout_documents']} documents)")

    torch.manual_seed(cfg.seed)
    model = use_cptpp_scan(MambaForCausalLM(byte_mamba_config(cfg))).to(device).train()
    n_params = count_parameters(model).base
    opt = _optimizer(model, cfg, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, bytes_seen, elapsed = 0, 0, 0.0
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl"
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        gen.set_state(saved["generator"])
        step, bytes_seen, elapsed = saved["step"], saved["bytes_seen"], saved["elapsed_s"]
        kept = [r for r in map(json.loads, log_path.read_text().splitlines()) if r["step"] <= step] \
            if log_path.exists() else []
        log_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    else:
        log_path.write_text("")
    write_json(out / "pretrain_config.json", asdict(cfg))
    tqdm.write(f"model: {n_params:,} parameters (hidden {cfg.hidden}, {cfg.layers} layers, state {cfg.state}), "
               f"device {device}, {torch.get_num_threads()} threads" + (f"; resumed at step {step}" if saved else ""))

    eval_ids = heldout_windows(corpus.heldout, cfg.max_len, cfg.eval_windows)
    budget_s = cfg.minutes * 60
    t0 = time.perf_counter() - elapsed  # time.perf_counter() - t0 = seconds of this run so far, resumes included

    def finished() -> bool:
        return bool((cfg.steps and step >= cfg.steps) or (budget_s and time.perf_counter() - t0 >= budget_s))

    def checkpoint(record: dict[str, Any] | None) -> None:
        if record is not None:
            append_jsonl(log_path, record)
        save_torch(ckpt_path, {"config": asdict(cfg), "step": step, "bytes_seen": bytes_seen,
                               "elapsed_s": time.perf_counter() - t0, "model": model.state_dict(),
                               "optimizer": opt.state_dict(), "generator": gen.get_state()})

    bar = tqdm(total=cfg.steps or None, initial=step, unit="step", desc="mamba-pretrain", disable=not progress)
    run_loss, run_steps, last_heldout = 0.0, 0, None
    while not finished():
        frac = max(step / cfg.steps if cfg.steps else 0.0, (time.perf_counter() - t0) / budget_s if budget_s else 0.0)
        lr = lr_at(cfg, step, frac)
        for group in opt.param_groups:
            group["lr"] = lr
        ids = random_windows(corpus.train, cfg.batch_size, cfg.max_len, gen).to(device)
        loss = lm_loss(model, ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        bytes_seen += ids.numel()
        run_loss += float(loss.detach())
        run_steps += 1
        bar.update(1)
        spent = time.perf_counter() - t0
        bar.set_postfix(loss=f"{run_loss / run_steps:.3f}", lr=f"{lr:.1e}",
                        heldout="-" if last_heldout is None else f"{last_heldout:.3f}",
                        min=f"{spent / 60:.1f}" + (f"/{cfg.minutes:g}" if budget_s else ""))
        if step % cfg.eval_every == 0 and not finished():  # the final evaluation follows the loop
            last_heldout = heldout_loss(model, eval_ids, cfg.batch_size, device)
            record = {"step": step, "bytes_seen": bytes_seen, "elapsed_s": time.perf_counter() - t0, "lr": lr,
                      "train_loss": run_loss / run_steps, "heldout_loss": last_heldout,
                      "heldout_windows": len(eval_ids)}
            tqdm.write(f"step {step}: train {record['train_loss']:.4f} held-out {last_heldout:.4f} nats/byte "
                       f"({bytes_seen / 1e6:.2f} M bytes, {record['elapsed_s'] / 60:.1f} min)")
            checkpoint(record)
            run_loss, run_steps = 0.0, 0
    bar.close()

    all_windows = heldout_windows(corpus.heldout, cfg.max_len)
    final = heldout_loss(model, all_windows, cfg.batch_size, device)
    seconds = time.perf_counter() - t0
    checkpoint({"step": step, "bytes_seen": bytes_seen, "elapsed_s": seconds, "final": True,
                "train_loss": run_loss / max(run_steps, 1), "heldout_loss": final, "heldout_windows": len(all_windows)})
    info = {"format": "cptpp byte-level Mamba LM", "tokenizer": "ByteTokenizer: UTF-8 bytes 0-255, pad 256",
            "vocab_size": ByteTokenizer.vocab_size, "pad_token_id": ByteTokenizer.pad_token_id,
            "parameters": n_params, "steps": step, "bytes_seen": bytes_seen, "seconds": seconds,
            "heldout_loss": final, "heldout_loss_unit": "nats/byte (next-byte cross-entropy)",
            "heldout_windows": len(all_windows), "corpus": c, "config": asdict(cfg), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device)}
    _save_final(model, out, info)
    tqdm.write(f"done: {step} steps, {bytes_seen:,} bytes seen, {seconds / 60:.1f} min, held-out {final:.4f} "
               f"nats/byte on {len(all_windows)} windows; saved to {out}")
    return model, info
