"""Settings of ``cptpp mamba-pretrain`` (no torch import: the CLI builds its parser from this)."""
from __future__ import annotations

from dataclasses import dataclass, field

from cptpp.config import ConfigError, check_range
from cptpp.train.config import TrainConfig

# Fields a resumed run may change: the budget and how often it reports. Everything else defines
# the model, the data or the optimization, and must match the checkpoint.
RESUMABLE_CHANGES = ("minutes", "steps", "eval_every", "eval_windows")


@dataclass
class PretrainConfig:
    """A byte-level Mamba LM (vocab 257: UTF-8 bytes + pad) and how it is pre-trained.

    Defaults give 2,694,144 parameters (hidden 256, 6 layers, state 16, expand 2, tied LM head).
    The LR warms up linearly for ``warmup_steps``, stays constant, and decays linearly to 0 over the
    last ``cooldown`` fraction of the budget (by steps, or by wall time when only ``minutes`` is set).

    The optimization fields are the training loop's under the names of ``cptpp mamba-pretrain``'s
    options; :meth:`loop_config` maps them onto the :class:`TrainConfig` that ``fit`` runs (and that
    validates them).
    """

    hidden: int = field(default=256, metadata={"help": "model width"})
    layers: int = field(default=6, metadata={"help": "Mamba blocks"})
    state: int = field(default=16, metadata={"help": "SSM state size per channel"})
    max_len: int = field(default=256, metadata={"help": "bytes per training window"})
    batch_size: int = field(default=16, metadata={"help": "windows per optimizer step"})
    lr: float = field(default=2e-3, metadata={"help": "peak AdamW learning rate"})
    weight_decay: float = field(default=0.1, metadata={
        "help": "AdamW weight decay on matrices and embeddings only (not norms, biases, A_log, D)"})
    warmup_steps: int = field(default=30, metadata={"help": "steps of linear LR warmup"})
    cooldown: float = field(default=0.2, metadata={
        "help": "fraction of the budget at the end spent decaying the LR linearly to 0"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global gradient norm; 0 = no clipping"})
    minutes: float = field(default=20.0, metadata={
        "help": "wall-clock budget in minutes, evaluations included; 0 = none"})
    steps: int = field(default=0, metadata={
        "help": "step budget; 0 = none (training stops at whichever budget ends first)"})
    eval_every: int = field(default=25, metadata={
        "help": "steps between held-out evaluations (each also writes the checkpoint)"})
    eval_windows: int = field(default=64, metadata={
        "help": "held-out windows per periodic evaluation (the final one uses all)"})
    heldout_fraction: float = field(default=0.02, metadata={"help": "seeded fraction of documents held out"})
    seed: int = field(default=0, metadata={"help": "seed of the held-out split, initialization and batches"})

    def __post_init__(self):
        for name in ("hidden", "layers", "state", "batch_size", "eval_every", "eval_windows"):
            check_range(name, getattr(self, name), 1)
        check_range("max_len", self.max_len, 2)
        check_range("minutes", self.minutes, 0)
        check_range("steps", self.steps, 0)
        check_range("heldout_fraction", self.heldout_fraction, 0, 0.5, lo_open=True)
        if self.minutes == 0 and self.steps == 0:
            raise ConfigError("minutes=0 and steps=0 leave training unbounded; set --minutes or --steps")
        self.loop_config()  # lr, weight_decay, warmup_steps, cooldown, grad_clip: checked by the loop's config

    def loop_config(self, out: str | None = None, resume: bool = False, progress: bool | None = None) -> TrainConfig:
        """The loop's settings: AdamW (betas 0.9, 0.95), an "epoch" of ``eval_every`` steps, each validated on
        ``eval_windows`` held-out windows; no epoch limit, no early stopping, the last model is the result."""
        return TrainConfig(epochs=0, lr=self.lr, weight_decay=self.weight_decay, optimizer="adamw", betas=(0.9, 0.95),
                           grad_clip=self.grad_clip, schedule="constant", warmup_steps=self.warmup_steps,
                           cooldown=self.cooldown, max_steps=self.steps, max_minutes=self.minutes, seed=self.seed,
                           patience=0, eval_every=1, restore_best=False, out=out, resume=resume, progress=progress)
