"""Settings of ``cptpp mamba-pretrain`` (no torch import: the CLI builds its parser from this)."""
from __future__ import annotations

from dataclasses import dataclass

from cptpp.config import ConfigError, check_range

# Fields a resumed run may change: the budget and how often it reports. Everything else defines
# the model, the data or the optimization, and must match the checkpoint.
RESUMABLE_CHANGES = ("minutes", "steps", "eval_every", "eval_windows")


@dataclass
class PretrainConfig:
    """A byte-level Mamba LM (vocab 257: UTF-8 bytes + pad) and how it is pre-trained.

    Defaults give 2,694,144 parameters (hidden 256, 6 layers, state 16, expand 2, tied LM head).
    The LR warms up linearly for ``warmup_steps``, stays constant, and decays linearly to 0 over the
    last ``cooldown`` fraction of the budget (by steps, or by wall time when only ``minutes`` is set).
    """

    hidden: int = 256
    layers: int = 6
    state: int = 16
    max_len: int = 256  # bytes per training window
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.1  # on matrices and embeddings only (not norms, biases, A_log, D)
    warmup_steps: int = 30
    cooldown: float = 0.2
    grad_clip: float = 1.0
    minutes: float = 20.0  # wall-clock budget, evaluations included; 0 = none
    steps: int = 0  # step budget; 0 = none. Training stops at whichever budget ends first
    eval_every: int = 25  # steps between held-out evaluations (each also writes the checkpoint)
    eval_windows: int = 64  # held-out windows per periodic evaluation; the final one uses all
    heldout_fraction: float = 0.02  # of documents, seeded
    seed: int = 0

    def __post_init__(self):
        for name in ("hidden", "layers", "state", "batch_size", "eval_every", "eval_windows"):
            check_range(name, getattr(self, name), 1)
        check_range("max_len", self.max_len, 2)
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("warmup_steps", self.warmup_steps, 0)
        check_range("cooldown", self.cooldown, 0, 1)
        check_range("grad_clip", self.grad_clip, 0)
        check_range("minutes", self.minutes, 0)
        check_range("steps", self.steps, 0)
        check_range("heldout_fraction", self.heldout_fraction, 0, 0.5, lo_open=True)
        if self.minutes == 0 and self.steps == 0:
            raise ConfigError("minutes=0 and steps=0 leave training unbounded; set --minutes or --steps")
