"""The training loop's settings (no torch import: the CLI builds its parser from this)."""
from __future__ import annotations

from dataclasses import dataclass

from cptpp.config import ConfigError, check_choice, check_range

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig:
    """How ``cptpp.train.fit`` trains any task.

    Budget: the run stops at whichever of ``epochs``, ``max_steps`` and ``max_minutes`` (each 0 =
    none) ends first, after checkpointing; ``results["stopped"]`` says which (or ``"patience"``).
    LR schedule (by optimizer step): ``warmup_steps`` linear warmup from ``lr / warmup_steps`` to
    ``lr``, then ``constant`` (with an optional linear ``cooldown`` to 0 over the last fraction of
    the budget), ``linear`` or ``cosine`` decay to 0 at the end of the budget.
    """

    epochs: int = 20  # 0 = no epoch limit (then max_steps or max_minutes bounds the run)
    lr: float = 1e-3
    weight_decay: float = 0.0  # a task's param_groups() may set its own per group
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.9, 0.999)  # adam / adamw
    fused: bool = True  # one-kernel adam/adamw update where the parameters allow (False: torch's default)
    grad_clip: float = 0.0  # max global gradient norm; 0 = no clipping
    schedule: str = "constant"
    warmup_steps: int = 0
    cooldown: float = 0.0  # schedule=constant: fraction of the budget at the end spent decaying to 0
    max_steps: int = 0  # optimizer steps, resumes included; 0 = no limit
    max_minutes: float = 0.0  # wall-clock minutes (evaluations included), resumes included; 0 = no limit
    seed: int = 0
    metric: str | None = None  # validation metric to maximize; None = the task's own ``metric``
    patience: int = 10  # evaluations without improvement before stopping; 0 = never stop early
    eval_every: int = 1  # epochs between validations; 0: no validation, the last epoch is tested
    restore_best: bool = True  # test the best validated model; False: the last one (pre-training)
    out: str | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        for name in ("epochs", "warmup_steps", "max_steps", "patience", "eval_every"):
            check_range(name, getattr(self, name), 0)
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        self.betas = tuple(self.betas)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas={list(self.betas)} must be two numbers in [0, 1), e.g. 0.9,0.999")
        check_range("grad_clip", self.grad_clip, 0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_range("cooldown", self.cooldown, 0, 1)
        if self.cooldown > 0 and self.schedule != "constant":
            raise ConfigError(f"cooldown={self.cooldown} applies to schedule=constant only; schedule="
                              f"{self.schedule} already decays to 0 over the whole budget")
        check_range("max_minutes", self.max_minutes, 0)
        if self.epochs == 0 and self.max_steps == 0 and self.max_minutes == 0:
            raise ConfigError("epochs=0, max_steps=0 and max_minutes=0 leave training unbounded; "
                              "set one of them")
        if self.resume and not self.out:
            raise ConfigError("resume=True needs out= (the run directory to resume from)")
