"""The training loop's settings (no torch import: the CLI builds its parser from this)."""
from __future__ import annotations

from dataclasses import dataclass, field

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

    epochs: int = field(default=20, metadata={
        "help": "training epochs; 0 = no epoch limit (then --max-steps or --max-minutes bounds the run)"})
    lr: float = field(default=1e-3, metadata={"help": "learning rate (peak LR when a schedule is used)"})
    weight_decay: float = field(default=0.0, metadata={
        "help": "weight decay of the optimizer (a task may set its own per parameter group)"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": OPTIMIZERS})
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata={
        "help": "adam/adamw betas, two numbers such as 0.9,0.999"})
    fused: bool = field(default=True, metadata={
        "help": "one-kernel adam/adamw update where the parameters allow (--no-fused: torch's default)"})
    grad_clip: float = field(default=0.0, metadata={"help": "max global gradient norm; 0 = no clipping"})
    schedule: str = field(default="constant", metadata={
        "help": "LR schedule by optimizer step, after --warmup-steps: constant (optional --cooldown), or "
                "linear / cosine decay to 0 at the end of the budget", "choices": SCHEDULES})
    warmup_steps: int = field(default=0, metadata={"help": "optimizer steps of linear LR warmup"})
    cooldown: float = field(default=0.0, metadata={
        "help": "schedule constant: fraction of the budget at the end spent decaying the LR linearly to 0"})
    max_steps: int = field(default=0, metadata={
        "help": "stop after this many optimizer steps, resumes included; 0 = no limit"})
    max_minutes: float = field(default=0.0, metadata={
        "help": "stop after this many wall-clock minutes (evaluations included), resumes included; 0 = no limit"})
    seed: int = field(default=0, metadata={
        "help": "seed of model initialization, negative sampling and batch order"})
    metric: str | None = field(default=None, metadata={
        "help": "validation metric that selects the best epoch, e.g. recall@20 or ndcg@10",
        "default": "the task's own (recommenders: recall@20)"})
    patience: int = field(default=10, metadata={
        "help": "stop after this many validations without improvement; 0 = never stop early"})
    eval_every: int = field(default=1, metadata={
        "help": "epochs between validations; 0 = no validation, the last epoch is tested"})
    restore_best: bool = field(default=True, metadata={
        "help": "test the best validated model (--no-restore-best: the last one)"})
    out: str | None = field(default=None, metadata={
        "help": "run folder: config.json, metrics.jsonl, checkpoint.pt, best.pt, results.json",
        "metavar": "DIR", "default": "runs/<what>-<time>"})
    resume: bool = field(default=False, metadata={
        "help": "continue the run in --out from its last checkpoint (to the same result as an unbroken run)"})
    progress: bool | None = field(default=None, metadata={
        "help": "progress bar per epoch (--no-progress: no bar and no per-epoch lines)",
        "default": "a bar on a terminal; one line per epoch when stderr is redirected"})

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
