"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021) and PEFT classifiers that combine them
with soft prompts (PEFTT: prompt + adapter, which Hugging Face ``peft`` cannot stack).

An adapter is ``h -> h + W_up act(W_down h)`` with ``W_down: [H/r, H]``, ``W_up: [H, H/r]`` (r = reduction
factor). It is applied to the output projection of a sub-layer, i.e. before that sub-layer's residual add:

- ``houlsby``: after the attention block's output projection and after the feed-forward block's;
- ``pfeiffer``: after the feed-forward block's only.

``W_up`` starts at zero, so an adapted model computes exactly what the base model does until it trains.
Adapters are attached as a submodule ``bottleneck_adapter`` of each target plus a forward hook, so the base
model's own parameter names (and checkpoints) are unchanged; the base is frozen.

Target projections are found by regex on module names per ``config.model_type`` (BERT/RoBERTa/XLM-R,
Llama-family, GPT-2, T5/mT5) or given explicitly in :class:`AdapterConfig`.

Methods are registered by name in :data:`PEFT_METHODS` (``full``, ``prompt``, ``adapter``,
``prompt+adapter``); :func:`build_classifier` builds any of them on a backbone as a
:class:`~cptpp.peft.prompt.PromptClassifier`, and :func:`save_peft` / :func:`load_peft` store and restore
any of them (config JSON + only the trained tensors).
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.io import save_torch, write_json
from cptpp.peft.prompt import PromptClassifier, SoftPrompt, SoftPromptConfig
from cptpp.registry import Registry

KINDS = ("houlsby", "pfeiffer")
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                                                    "silu": nn.SiLU}
_BERT = ([r".*\.attention\.output\.dense"], [r".*\.layer\.\d+\.output\.dense"])
_LLAMA = ([r".*\.self_attn\.o_proj"], [r".*\.mlp\.down_proj"])
# model_type -> (attention output projections, feed-forward output projections), regexes on module names
TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "electra": _BERT,
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "gemma": _LLAMA, "smollm3": _LLAMA,
    "gpt2": ([r".*\.attn\.c_proj"], [r".*\.mlp\.c_proj"]),
    "t5": ([r".*\.(SelfAttention|EncDecAttention)\.o"], [r".*\.DenseReluDense\.wo"]),
    "mt5": ([r".*\.(SelfAttention|EncDecAttention)\.o"], [r".*\.DenseReluDense\.wo"]),
}
ADAPTER_ATTR = "bottleneck_adapter"


@dataclass
class AdapterConfig:
    """``attention_targets`` / ``ffn_targets``: regexes (full match) on module names; None = the defaults of
    :data:`TARGETS` for the model's ``model_type``. ``init_std`` is the std of ``W_down``'s normal init."""

    kind: str = "houlsby"
    reduction_factor: int = 16
    activation: str = "relu"
    attention_targets: list[str] | None = None
    ffn_targets: list[str] | None = None
    init_std: float = 0.01
    seed: int = 0

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_range("reduction_factor", self.reduction_factor, 1)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_range("init_std", self.init_std, 0, lo_open=True)
        for name in ("attention_targets", "ffn_targets"):
            for pattern in getattr(self, name) or []:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ConfigError(f"{name}: {pattern!r} is not a valid regex ({e})") from None


class BottleneckAdapter(nn.Module):
    """``h + up(act(down(h)))`` over the last dim of ``h: [..., H]``; ``up`` is zero at init."""

    def __init__(self, hidden: int, bottleneck: int, activation: str = "relu", init_std: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.down = nn.Linear(hidden, bottleneck)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(bottleneck, hidden)
        with torch.no_grad():
            self.down.weight.copy_(torch.randn(bottleneck, hidden, generator=generator) * init_std)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h.to(self.down.weight.dtype)))).to(h.dtype)


def _apply_adapter(module: nn.Module, inputs, output):
    """Forward hook on a target projection: its output goes through the module's adapter."""
    return getattr(module, ADAPTER_ATTR)(output)


def _out_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    if hasattr(module, "nf"):  # GPT-2 Conv1D
        return module.nf
    raise ConfigError(f"adapter target {type(module).__name__} is neither nn.Linear nor a GPT-2 Conv1D")


def target_patterns(model: nn.Module, cfg: AdapterConfig) -> list[str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    defaults = TARGETS.get(model_type)
    attn = cfg.attention_targets if cfg.attention_targets is not None else (defaults or (None, None))[0]
    ffn = cfg.ffn_targets if cfg.ffn_targets is not None else (defaults or (None, None))[1]
    if ffn is None or (cfg.kind == "houlsby" and attn is None):
        raise ConfigError(f"no default adapter targets for model_type={model_type!r} (known: "
                          f"{', '.join(sorted(TARGETS))}); pass attention_targets / ffn_targets regexes")
    return list(ffn) + (list(attn) if cfg.kind == "houlsby" else [])


def find_targets(model: nn.Module, cfg: AdapterConfig) -> list[str]:
    """Names of the modules that get an adapter, in model order."""
    patterns = [re.compile(p) for p in target_patterns(model, cfg)]
    names = [n for n, _ in model.named_modules() if n and any(p.fullmatch(n) for p in patterns)]
    if not names:
        raise ConfigError(f"no module name matches the adapter targets {[p.pattern for p in patterns]}")
    return names


def add_adapters(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """Freeze ``model`` and attach one adapter per target (in place); returns ``model``."""
    if getattr(model, "adapter_config", None) is not None:
        raise ConfigError("this model already has bottleneck adapters")
    names = find_targets(model, cfg)
    model.requires_grad_(False)
    gen = torch.Generator().manual_seed(cfg.seed)
    modules = dict(model.named_modules())
    for name in names:
        target = modules[name]
        hidden = _out_features(target)
        bottleneck = max(1, hidden // cfg.reduction_factor)
        weight = next(target.parameters())
        adapter = BottleneckAdapter(hidden, bottleneck, cfg.activation, cfg.init_std, gen).to(weight.device)
        target.add_module(ADAPTER_ATTR, adapter)
        target.register_forward_hook(_apply_adapter)
    model.adapter_config = cfg
    return model


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if f"{ADAPTER_ATTR}." in n]


def mark_adapters_trainable(model: nn.Module) -> None:
    for p in adapter_parameters(model):
        p.requires_grad_(True)


@dataclass
class ParamCount:
    trainable: int
    base: int  # the backbone's own parameters (adapters, prompt and heads excluded)

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.base, 1)


def count_parameters(model: PromptClassifier) -> ParamCount:
    backbone = {n: p for n, p in model.backbone.named_parameters() if f"{ADAPTER_ATTR}." not in n}
    # tied weights (LM head = input embeddings) are one tensor
    base = sum(p.numel() for p in {id(p): p for p in backbone.values()}.values())
    trainable = sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
    return ParamCount(trainable, base)


# ---------------------------------------------------------------- methods


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


def _classifier(backbone, spec: PeftSpec, prompt=None, train_backbone=False) -> PromptClassifier:
    return PromptClassifier(backbone, spec.num_classes, prompt=prompt, label_token_ids=spec.label_token_ids,
                            train_backbone=train_backbone, architecture=spec.architecture)


@_register("full", ())
def _full(backbone: nn.Module, spec: PeftSpec) -> PromptClassifier:
    return _classifier(backbone, spec, train_backbone=True)


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


def _spec_to_dict(spec: PeftSpec) -> dict:
    return asdict(spec)


def _spec_from_dict(d: dict) -> PeftSpec:
    d = dict(d)
    d["prompt"] = SoftPromptConfig(**d["prompt"]) if d.get("prompt") else None
    d["adapter"] = AdapterConfig(**d["adapter"]) if d.get("adapter") else None
    return PeftSpec(**d)


def trained_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor by name: for PEFT methods, the only part that differs from the base model."""
    return {k: p.detach().cpu().clone() for k, p in model.named_parameters() if p.requires_grad}


def save_peft(model: PromptClassifier, path: str | Path) -> None:
    """``path/peft_config.json`` (method + configs) and ``path/peft_state.pt`` (trained tensors only)."""
    spec = getattr(model, "peft_spec", None)
    if spec is None:
        raise ConfigError("model was not built by build_classifier; nothing says which method to save")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "peft_config.json", _spec_to_dict(spec))
    save_torch(path / "peft_state.pt", trained_state(model))


def load_peft(backbone: nn.Module, path: str | Path) -> PromptClassifier:
    """Rebuild the saved method on a fresh ``backbone`` (the same base weights) and load its tensors."""
    path = Path(path)
    try:
        spec = _spec_from_dict(json.loads((path / "peft_config.json").read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no peft_config.json (not a save_peft folder)") from None
    model = build_classifier(backbone, spec)
    state = torch.load(path / "peft_state.pt", map_location="cpu", weights_only=True)
    params = dict(model.named_parameters())
    want = {k for k, p in params.items() if p.requires_grad}
    missing, unexpected = sorted(want - set(state)), sorted(set(state) - want)
    if missing or unexpected:
        raise ConfigError(f"{path}: saved tensors do not match method {spec.method!r} "
                          f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    with torch.no_grad():
        for k, v in state.items():
            if params[k].shape != v.shape:
                raise ConfigError(f"{path}: {k} has shape {tuple(v.shape)}, model expects {tuple(params[k].shape)}")
            params[k].copy_(v)
    return model
