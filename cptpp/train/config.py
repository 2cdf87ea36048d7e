"""The training loop's settings (no torch import: the CLI builds its parser from this)."""
from __future__ import annotations

from dataclasses import dataclass

from cptpp.config import ConfigError, check_choice, check_range

OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainConfig:
    epochs: int = 20
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    grad_clip: float = 0.0
    seed: int = 2020
    metric: str = "recall@20"
    patience: int = 10
    eval_every: int = 1  # 0: no validation; the last epoch's model is tested (refit on train+valid)
    out: str | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        check_range("epochs", self.epochs, 1)
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_range("patience", self.patience, 0)
        check_range("eval_every", self.eval_every, 0)
        if self.resume and not self.out:
            raise ConfigError("resume=True needs out= (the run directory to resume from)")
