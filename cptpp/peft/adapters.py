"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021) on any supported Hugging Face backbone.

An adapter is ``h -> h + W_up act(W_down h)`` with ``W_down: [H/r, H]``, ``W_up: [H, H/r]`` (r = reduction
factor). It is applied to the output projection of a sub-layer, i.e. before that sub-layer's residual add:

- ``houlsby``: after the attention block's output projection and after the feed-forward block's;
- ``pfeiffer``: after the feed-forward block's only.

``W_up`` starts at zero, so an adapted model computes exactly what the base model does until it trains.
Adapters are attached as a submodule ``bottleneck_adapter`` of each target plus a forward hook, so the base
model's own parameter names (and checkpoints) are unchanged; the base is frozen.

Target projections are found by regex on module names per ``config.model_type`` (BERT/RoBERTa/XLM-R,
Llama-family, GPT-2, T5/mT5) or given explicitly in :class:`AdapterConfig`.

:mod:`cptpp.peft.peftt` combines them with soft prompts (PEFTT: prompt + adapter).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cptpp.config import ConfigError, check_choice, check_range

KINDS = ("houlsby", "pfeiffer")
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh,
                                                    "silu": nn.SiLU}
_BERT = ([r".*\.attention\.output\.dense"], [r".*\.layer\.\d+\.output\.dense"])
_LLAMA = ([r".*\.self_attn\.o_proj"], [r".*\.mlp\.down_proj"])
# model_type -> (attention output projections, feed-forward output projections), regexes on module names
TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "electra": _BERT,
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "gemma": _LLAMA, "gemma2": _LLAMA, "gemma3_text": _LLAMA,
    "smollm3": _LLAMA,
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
