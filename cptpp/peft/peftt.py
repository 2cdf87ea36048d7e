"""PEFTT: parameter-efficient classifiers on one backbone, registered by method name (full fine-tuning, prompt
tuning, bottleneck adapters, and prompt + adapter, which Hugging Face ``peft`` cannot stack), plus the linear
probe on frozen features as a reference.

:data:`PEFT_METHODS` maps ``full``, ``probe``, ``prompt``, ``adapter`` and ``prompt+adapter`` to builders;
:func:`build_classifier` builds any of them on a backbone as a :class:`~cptpp.peft.prompt.PromptClassifier`,
and :func:`save_peft` / :func:`load_peft` store and restore any of them (config JSON + only the trained tensors).
Count a built model with ``cptpp.train.params.count_parameters(model, model.backbone, ADDED_NAMES)``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from torch import nn

from cptpp.config import ConfigError, check_choice
from cptpp.io import write_json
from cptpp.peft.adapters import ADAPTER_ATTR, AdapterConfig, add_adapters, mark_adapters_trainable
from cptpp.peft.prompt import PromptClassifier, SoftPrompt, SoftPromptConfig
from cptpp.registry import Registry
from cptpp.train.params import load_trained, save_trained

# parameter-name parts of what a method adds inside the backbone (not base-model parameters)
ADDED_NAMES = (f"{ADAPTER_ATTR}.",)


@dataclass
class PeftSpec:
    """What :func:`build_classifier` needs besides the backbone (also what :func:`save_peft` stores)."""

    method: str
    num_classes: int
    label_token_ids: list[int] | None = None
    prompt: SoftPromptConfig | None = None
    adapter: AdapterConfig | None = None
    architecture: str | None = None

    def __post_init__(self):
        check_choice("method", self.method, PEFT_METHODS.names())
        needs = PEFT_METHOD_NEEDS[self.method]
        if "prompt" in needs and self.prompt is None:
            self.prompt = SoftPromptConfig()
        if "adapter" in needs and self.adapter is None:
            self.adapter = AdapterConfig()
        if "prompt" not in needs:
            self.prompt = None
        if "adapter" not in needs:
            self.adapter = None


PEFT_METHODS: Registry[Callable[[nn.Module, PeftSpec], PromptClassifier]] = Registry("peft method")
PEFT_METHOD_NEEDS: dict[str, tuple[str, ...]] = {}


def _register(name: str, needs: tuple[str, ...]):
    PEFT_METHOD_NEEDS[name] = needs
    return PEFT_METHODS.register(name)


def _prompt(backbone: nn.Module, cfg: SoftPromptConfig) -> SoftPrompt:
    return SoftPrompt.from_config(cfg, backbone.get_input_embeddings().weight)


def _classifier(backbone, spec: PeftSpec, prompt=None, train_backbone=False, head="auto") -> PromptClassifier:
    return PromptClassifier(backbone, spec.num_classes, prompt=prompt, label_token_ids=spec.label_token_ids,
                            train_backbone=train_backbone, architecture=spec.architecture, head=head)


@_register("full", ())
def _full(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    return _classifier(backbone, spec, train_backbone=True)


@_register("probe", ())
def _probe(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    """Linear probe (a reference, not a PEFT method): frozen backbone, a linear head on pooled features."""
    return _classifier(backbone, spec, head="linear")


@_register("prompt", ("prompt",))
def _prompt_tuning(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    return _classifier(backbone, spec, prompt=_prompt(backbone, spec.prompt))


@_register("adapter", ("adapter",))
def _adapter(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    add_adapters(backbone, spec.adapter)
    model = _classifier(backbone, spec)  # freezes the backbone, adapters included ...
    mark_adapters_trainable(backbone)  # ... so they are switched back on
    return model


@_register("prompt+adapter", ("prompt", "adapter"))
def _prompt_adapter(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    add_adapters(backbone, spec.adapter)
    model = _classifier(backbone, spec, prompt=_prompt(backbone, spec.prompt))
    mark_adapters_trainable(backbone)
    return model


def build_classifier(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    """``spec.method`` applied to ``backbone`` (modified in place for adapter methods)."""
    model = PEFT_METHODS.get(spec.method)(backbone, spec)
    model.peft_spec = spec
    return model


def _spec_from_dict(d: dict) -> PeftSpec:
    d = dict(d)
    d["prompt"] = SoftPromptConfig(**d["prompt"]) if d.get("prompt") else None
    d["adapter"] = AdapterConfig(**d["adapter"]) if d.get("adapter") else None
    return PeftSpec(**d)


def save_peft(model: PromptClassifier, path: str | Path) -> None:
    """``path/peft_config.json`` (method + configs) and ``path/peft_state.pt`` (trained tensors only)."""
    spec = getattr(model, "peft_spec", None)
    if spec is None:
        raise ConfigError("model was not built by build_classifier; nothing says which method to save")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "peft_config.json", asdict(spec))
    save_trained(path / "peft_state.pt", model)


def load_peft(backbone: nn.Module, path: str | Path) -> PromptClassifier:
    """Rebuild the saved method on a fresh ``backbone`` (the same base weights) and load its tensors."""
    path = Path(path)
    try:
        spec = _spec_from_dict(json.loads((path / "peft_config.json").read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no peft_config.json (not a save_peft folder)") from None
    model = build_classifier(backbone, spec)
    return load_trained(model, path / "peft_state.pt")
