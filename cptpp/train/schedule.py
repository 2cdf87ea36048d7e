"""Learning-rate schedules by optimizer step and by the fraction of the training budget spent."""
from __future__ import annotations

import math


def lr_at(lr: float, step: int, progress: float, *, schedule: str = "constant", warmup_steps: int = 0,
          cooldown: float = 0.0) -> float:
    """The LR of 0-based optimizer ``step`` when ``progress`` in [0, 1] of the budget is spent.

    Warmup: ``lr * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps. Then
    ``constant``: ``lr``, or over the last ``cooldown`` fraction ``lr * (1 - progress) / cooldown``
    (linear to 0); ``linear``: ``lr * (1 - progress)``; ``cosine``: ``lr * (1 + cos(pi * progress)) / 2``.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "linear":
        return lr * max(0.0, 1 - progress)
    if schedule == "cosine":
        return lr * (1 + math.cos(math.pi * min(progress, 1.0))) / 2
    if cooldown > 0 and progress > 1 - cooldown:
        return lr * max(0.0, 1 - progress) / cooldown
    return lr


def is_constant(schedule: str, warmup_steps: int, cooldown: float) -> bool:
    """Whether the LR never changes (the loop then leaves the optimizer's LR alone)."""
    return schedule == "constant" and warmup_steps == 0 and cooldown == 0
