"""Parameter counts and the trained state of a (partly frozen) model: one home for every family.

A parameter-efficient method trains a small part of a large frozen model, so what a run reports is
``trainable`` vs. ``base`` parameters and what it saves is only the trainable tensors
(:func:`trained_state`). Loading them back (:func:`load_trained_state`) checks that the names and shapes
are exactly what the model trains, and an error names the offending key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from cptpp.config import ConfigError
from cptpp.io import save_torch


@dataclass
class ParamCount:
    """``trainable``: parameters that get gradients; ``base``: the pre-trained model's own parameters
    (what a method adds -- adapters, prompts, heads -- excluded)."""

    trainable: int
    base: int

    @property
    def percent(self) -> float:
        """Trainable parameters as a percentage of the base model's (may exceed 100 for tiny bases)."""
        return 100.0 * self.trainable / max(self.base, 1)


def count_parameters(model: nn.Module, base: nn.Module | None = None, added: Sequence[str] = ()) -> ParamCount:
    """Count ``model``'s trainable parameters and the base model's parameters.

    ``base``: the submodule holding the pre-trained model (default: ``model`` itself); ``added``:
    substrings of parameter names that a method attached inside the base (e.g. ``"bottleneck_adapter."``),
    which do not count as base. A tensor shared by two modules (tied LM head and input embeddings) counts
    once, as ``named_parameters`` lists it once.
    """
    base = model if base is None else base
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base_count = sum(p.numel() for n, p in base.named_parameters() if not any(a in n for a in added))
    return ParamCount(trainable=trainable, base=base_count)


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of every trainable tensor, by parameter name: for a PEFT method, the only part
    that differs from the base model (and what XPrompt rewinds to)."""
    return {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def load_trained_state(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path = "state") -> nn.Module:
    """Copy ``state`` (from :func:`trained_state`) into ``model``'s trainable parameters; returns ``model``.

    The names must be exactly the model's trainable parameters and every shape must match; otherwise a
    ``ConfigError`` that starts with ``source`` (a file name) and names the keys.
    """
    params = dict(model.named_parameters())
    want = {k for k, p in params.items() if p.requires_grad}
    missing, unexpected = sorted(want - set(state)), sorted(set(state) - want)
    if missing or unexpected:
        raise ConfigError(f"{source}: saved tensors do not match the model's trainable parameters "
                          f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for k, v in state.items():
        if params[k].shape != v.shape:
            raise ConfigError(f"{source}: {k} has shape {tuple(v.shape)}, model expects {tuple(params[k].shape)}")
    for k, v in state.items():
        params[k].copy_(v)
    return model


def save_trained(path: str | Path, model: nn.Module) -> None:
    """Write :func:`trained_state` of ``model`` to ``path`` (atomically)."""
    save_torch(path, trained_state(model))


def load_trained(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a :func:`save_trained` file into ``model`` (same base weights, same method applied)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return load_trained_state(model, state, path)
