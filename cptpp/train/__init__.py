"""The shared training loop: ``fit(task, TrainConfig(...))``.

Attributes are imported lazily so that reading ``TrainConfig`` (e.g. to build the CLI parser)
does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {"TrainConfig": "cptpp.train.config", "fit": "cptpp.train.loop",
            "resolve_device": "cptpp.train.loop", "seed_everything": "cptpp.train.loop"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cptpp.train' has no attribute {name!r}")
