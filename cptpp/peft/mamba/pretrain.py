"""Pre-training a byte-level Mamba LM on the mirror's English text, for a bounded time (``cptpp mamba-pretrain``).

Text: ``corpus.build_corpus`` (SuperGLUE MultiRC/RTE/WiC/CB/COPA/WSC, UD-POS and PAN-X English; no
BoolQ, nothing from the commonsense evaluation sets). Batches are windows of ``max_len`` bytes at
random offsets of the training stream; the loss is next-byte cross-entropy (nats/byte).

Training is ``cptpp.train.fit`` on :class:`ByteLMTask`: an "epoch" is ``eval_every`` steps followed
by a held-out evaluation on ``eval_windows`` windows; the budget is ``steps`` and/or ``minutes``; there
is no model selection (the last model is kept) and the "test" is the held-out loss on every window.

Run directory ``out``:
    config.json, model.safetensors  the final model, ``MambaForCausalLM.from_pretrained(out)``
    cptpp_byte_lm.json    written last: marks a byte-level model (``experiment.load_base`` then uses
                          ``ByteTokenizer``) and says what it is (parameters, bytes seen, held-out loss, corpus)
    pretrain_config.json  the run's ``PretrainConfig``
    train/                the loop's run directory: checkpoint.pt after every evaluation (``resume=True``
                          continues it), metrics.jsonl (one record per evaluation), results.json
    log.jsonl             written at the end: one record per held-out evaluation (step, bytes seen, seconds,
                          lr, train and held-out loss), the last one the final evaluation on every window
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from transformers import MambaConfig, MambaForCausalLM

from cptpp.config import ConfigError
from cptpp.io import write_json
from cptpp.peft.mamba.corpus import Corpus, build_corpus, heldout_windows, random_windows
from cptpp.peft.mamba.pretrain_config import RESUMABLE_CHANGES, PretrainConfig
from cptpp.peft.mamba.tuners import use_cptpp_scan
from cptpp.peft.tokenizers import ByteTokenizer
from cptpp.train import schedule
from cptpp.train.loop import CHECKPOINT, check_run_dir, fit
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
    return schedule.lr_at(cfg.lr, step, progress, warmup_steps=cfg.warmup_steps, cooldown=cfg.cooldown)


class _Windows:
    """``n`` batches of random training windows, drawn one at a time (a budget may end the epoch early,
    and the generator state in the checkpoint must then not include windows that were never trained on)."""

    def __init__(self, n: int, draw: Callable[[], torch.Tensor]):
        self.n, self.draw = n, draw

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return (self.draw() for _ in range(self.n))


class ByteLMTask:
    """``fit`` task: next-byte loss on random windows [batch_size, max_len] of the training stream.

    An epoch is ``eval_every`` steps; ``evaluate("valid")`` is the held-out loss on ``eval_windows``
    windows, ``evaluate("test")`` on every held-out window.
    """

    metric = "neg_heldout_loss"

    def __init__(self, model: MambaForCausalLM, corpus: Corpus, cfg: PretrainConfig, device: torch.device):
        self.model, self.corpus, self.cfg, self.device = model, corpus, cfg, device
        self.windows = {"valid": heldout_windows(corpus.heldout, cfg.max_len, cfg.eval_windows),
                        "test": heldout_windows(corpus.heldout, cfg.max_len)}

    def batches(self, epoch: int, generator: torch.Generator) -> _Windows:
        cfg = self.cfg
        return _Windows(cfg.eval_every, lambda: random_windows(self.corpus.train, cfg.batch_size, cfg.max_len,
                                                               generator).to(self.device))

    def param_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            # No decay on gains, biases, D and A_log (decaying A_log would pull every decay rate to 1).
            (decay if p.ndim >= 2 and not name.endswith("A_log") else no_decay).append(p)
        return [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def loss(self, ids: torch.Tensor) -> torch.Tensor:
        return lm_loss(self.model, ids)

    def evaluate(self, split: str) -> dict[str, float]:
        windows = self.windows[split]
        loss = heldout_loss(self.model, windows, self.cfg.batch_size, self.device)
        return {"heldout_loss": loss, "neg_heldout_loss": -loss, "heldout_windows": len(windows)}


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


def _write_log(out: Path, cfg: PretrainConfig, results: dict[str, Any]) -> None:
    """``log.jsonl`` from the loop's per-evaluation records; the final evaluation on every held-out window
    replaces a periodic one at the same step."""
    lines = (out / "train" / "metrics.jsonl").read_text().splitlines()
    evals = [r for r in map(json.loads, lines) if "valid" in r]
    per_step = cfg.batch_size * cfg.max_len
    log = [{"step": r["step"], "bytes_seen": r["step"] * per_step, "elapsed_s": r["seconds"], "lr": r["lr"],
            "train_loss": r["loss"], "heldout_loss": r["valid"]["heldout_loss"],
            "heldout_windows": r["valid"]["heldout_windows"]} for r in evals if r["step"] < results["steps"]]
    test = results["test"]
    log.append({"step": results["steps"], "bytes_seen": results["steps"] * per_step, "elapsed_s": results["seconds"],
                "final": True, "train_loss": evals[-1]["loss"] if evals else None,
                "heldout_loss": test["heldout_loss"], "heldout_windows": test["heldout_windows"]})
    (out / "log.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in log))


def pretrain(cfg: PretrainConfig, out: str | Path, *, resume: bool = False, device: str | torch.device = "cpu",
             progress: bool = True, corpus: Corpus | None = None) -> tuple[MambaForCausalLM, dict[str, Any]]:
    """Pre-train until ``cfg.steps`` or ``cfg.minutes`` runs out; returns the model and its marker info.

    ``resume``: continue ``out/train/checkpoint.pt`` (a killed run, or a finished one with a larger budget).
    ``corpus``: the text to use (default: ``build_corpus(cfg.seed, cfg.heldout_fraction)``).
    """
    from tqdm.auto import tqdm

    out, device = Path(out), torch.device(device)
    loop_dir = out / "train"
    check_run_dir(loop_dir, resume)
    resuming = resume and (loop_dir / CHECKPOINT).exists()
    if resuming and (out / "pretrain_config.json").exists():
        _check_resumable(json.loads((out / "pretrain_config.json").read_text()), cfg, out / "pretrain_config.json")
    if corpus is None:
        corpus = build_corpus(cfg.seed, cfg.heldout_fraction)
    c = corpus.summary()
    tqdm.write(f"corpus: {c['train_bytes'] + c['heldout_bytes']:,} bytes in {c['documents']:,} documents; "
               f"train {c['train_bytes']:,} bytes, held-out {c['heldout_bytes']:,} bytes "
               f"({c['heldout_documents']} documents)")

    torch.manual_seed(cfg.seed)
    model = use_cptpp_scan(MambaForCausalLM(byte_mamba_config(cfg))).to(device).train()
    n_params = count_parameters(model).base
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "pretrain_config.json", asdict(cfg))
    tqdm.write(f"model: {n_params:,} parameters (hidden {cfg.hidden}, {cfg.layers} layers, state {cfg.state}), "
               f"device {device}, {torch.get_num_threads()} threads")

    results = fit(ByteLMTask(model, corpus, cfg, device), cfg.loop_config(str(loop_dir), resume, progress),
                  run_config={"pretrain": asdict(cfg), "corpus": c},
                  may_change=("pretrain.steps", "pretrain.minutes"))  # the budget, as max_steps / max_minutes
    _write_log(out, cfg, results)
    step, seconds = results["steps"], results["seconds"]
    final, n_windows = results["test"]["heldout_loss"], results["test"]["heldout_windows"]
    bytes_seen = step * cfg.batch_size * cfg.max_len
    info = {"format": "cptpp byte-level Mamba LM", "tokenizer": "ByteTokenizer: UTF-8 bytes 0-255, pad 256",
            "vocab_size": ByteTokenizer.vocab_size, "pad_token_id": ByteTokenizer.pad_token_id,
            "parameters": n_params, "steps": step, "bytes_seen": bytes_seen, "seconds": seconds,
            "heldout_loss": final, "heldout_loss_unit": "nats/byte (next-byte cross-entropy)",
            "heldout_windows": n_windows, "corpus": c, "config": asdict(cfg), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(device)}
    _save_final(model, out, info)
    tqdm.write(f"done: {step} steps, {bytes_seen:,} bytes seen, {seconds / 60:.1f} min, held-out {final:.4f} "
               f"nats/byte on {n_windows} windows; saved to {out}")
    return model, info
