"""The shared training loop: ``fit(task, TrainConfig(...))``."""
from cptpp.train.loop import TrainConfig, fit, resolve_device, seed_everything

__all__ = ["TrainConfig", "fit", "resolve_device", "seed_everything"]
