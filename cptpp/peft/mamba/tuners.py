"""MambaPEFT (Yoshimura et al., ICLR 2025) for transformers' ``MambaForCausalLM`` / ``MambaModel``.

Methods (any subset can be combined; a "hybrid" is just a config with several enabled):
- **LoRA** on ``in_proj`` (whole, or its x / z half), ``x_proj``, ``dt_proj``, ``out_proj``,
  ``conv1d`` (the depthwise kernel seen as a [d_inner, kernel] matrix) and ``embeddings``.
  Each adds ``scale * B @ A`` (B zero-initialized) to the weight. The linear maps (in_proj and its
  halves, x_proj, out_proj) and the embeddings apply it factored, ``W x + scale * B (A x)``, so a
  step costs rank * (in + out) per token instead of rebuilding the [out, in] weight (and its
  gradient); dt_proj and conv1d merge ``W + scale * B @ A`` each step, which is cheap for them
  ([d_inner, time_step_rank] and [d_inner, kernel]) and the conv kernel is not a linear map of x.
- **Additional-scan**: N' extra SSM state dimensions per layer, with their own ``A_log`` columns and
  ``x_proj`` rows for B and C. The C rows start at zero, so the extra states are read out as 0
  and the model starts unchanged; B rows and A_log start as copies of the first pretrained states.
- **Affix-tuning**: learnable tokens inserted in front of every layer's SSM input (after
  ``in_proj``, x half) whose outputs are dropped, so the sequence length is unchanged.
- **Partial tuning**: zero-initialized deltas on ``A_log``, ``D``, ``conv1d`` (weight and bias) and
  the dt bias, plus the RMSNorm weights trained in place.

Why a patched mixer forward: transformers' ``MambaMixer.forward`` reads ``dt_proj.weight`` and
``conv1d.weight`` directly instead of calling those modules, so wrapping them (as the ``peft``
library does) silently has no effect. Each adapted mixer therefore runs ``_peft_forward`` below,
which builds every effective weight explicitly and is tested to equal the original forward when
no method is active.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.mamba.modeling_mamba import MambaMixer, MambaRMSNorm

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.io import save_torch
from cptpp.train.params import load_trained_state, trained_state
from cptpp.peft.mamba.scan import selective_scan_chunked

LORA_TARGETS = ("in_proj", "in_proj_x", "in_proj_z", "x_proj", "dt_proj", "out_proj", "conv1d", "embeddings")
PARTIAL_TARGETS = ("A_log", "D", "conv1d", "dt_bias", "norm")
AFFIX_POSITIONS = ("prefix",)


@dataclass
class MambaPeftConfig:
    """Which MambaPEFT methods to apply; every field left at its default means "off"."""

    lora_targets: list[str] = field(default_factory=list)
    lora_rank: int = 8
    # scale = lora_alpha / rank; None keeps scale 1 so the rank can be searched independently.
    lora_alpha: float | None = None
    scan_states: int = 0
    affix_tokens: int = 0
    affix_position: str = "prefix"
    partial_targets: list[str] = field(default_factory=list)
    seed: int = 0

    def __post_init__(self):
        self.lora_targets = list(self.lora_targets)
        self.partial_targets = list(self.partial_targets)
        for t in self.lora_targets:
            check_choice("lora_targets", t, LORA_TARGETS)
        for t in self.partial_targets:
            check_choice("partial_targets", t, PARTIAL_TARGETS)
        if "in_proj" in self.lora_targets and {"in_proj_x", "in_proj_z"} & set(self.lora_targets):
            raise ConfigError("lora_targets: 'in_proj' already covers 'in_proj_x'/'in_proj_z'; list one or the other")
        if len(set(self.lora_targets)) != len(self.lora_targets):
            raise ConfigError(f"lora_targets={self.lora_targets!r} lists a target twice")
        check_range("lora_rank", self.lora_rank, 1)
        if self.lora_alpha is not None:
            check_range("lora_alpha", self.lora_alpha, 0, lo_open=True)
        check_range("scan_states", self.scan_states, 0)
        check_range("affix_tokens", self.affix_tokens, 0)
        if self.affix_position == "suffix":
            # In a causal (one-directional) scan a token after the input cannot reach any kept output.
            raise ConfigError("affix_position='suffix' has no effect on a causal Mamba LM (nothing reads the "
                              "positions after the input); choose one of: prefix")
        check_choice("affix_position", self.affix_position, AFFIX_POSITIONS)
        if not self.methods():
            raise ConfigError("MambaPeftConfig enables no method: set lora_targets, scan_states, affix_tokens "
                              "or partial_targets")

    def methods(self) -> list[str]:
        """Names of the enabled methods, e.g. ['lora:dt_proj', 'additional_scan']."""
        out = [f"lora:{t}" for t in self.lora_targets]
        out += ["additional_scan"] * (self.scan_states > 0) + ["affix"] * (self.affix_tokens > 0)
        return out + [f"partial:{t}" for t in self.partial_targets]

    @property
    def lora_scale(self) -> float:
        return 1.0 if self.lora_alpha is None else self.lora_alpha / self.lora_rank


class LoraDelta(nn.Module):
    """Low-rank weight delta ``scale * B @ A`` for a weight of shape [out, in]; B starts at zero.

    The rank is capped at min(out, in): a higher rank cannot add expressiveness (dt_proj has only
    ``time_step_rank`` inputs, conv1d only ``kernel`` taps).
    """

    def __init__(self, out_features: int, in_features: int, rank: int, scale: float, generator: torch.Generator):
        super().__init__()
        rank = min(rank, out_features, in_features)
        self.scale = scale
        bound = 1 / math.sqrt(in_features)  # Kaiming-uniform(a=sqrt(5)) bound, as nn.Linear / LoRA use
        self.A = nn.Parameter((torch.rand(rank, in_features, generator=generator) * 2 - 1) * bound)
        self.B = nn.Parameter(torch.zeros(out_features, rank))

    def delta(self) -> torch.Tensor:
        """[out, in]"""
        return self.scale * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``scale * B (A x)``: [..., in] -> [..., out], without forming the [out, in] delta."""
        return (self.scale * F.linear(F.linear(x.to(self.A.dtype), self.A), self.B)).to(x.dtype)


class MixerPeft(nn.Module):
    """Adapter parameters of one Mamba mixer (attached as ``mixer.mamba_peft``)."""

    def __init__(self, mixer: MambaMixer, cfg: MambaPeftConfig | None, generator: torch.Generator):
        super().__init__()
        cfg = cfg or _NO_METHOD
        d, n, r = mixer.intermediate_size, mixer.ssm_state_size, mixer.time_step_rank
        hidden, k = mixer.hidden_size, mixer.conv_kernel_size
        shapes = {"in_proj": (2 * d, hidden), "in_proj_x": (d, hidden), "in_proj_z": (d, hidden),
                  "x_proj": (r + 2 * n, d), "dt_proj": (d, r), "out_proj": (hidden, d), "conv1d": (d, k)}
        self.lora = nn.ModuleDict({
            t: LoraDelta(*shapes[t], cfg.lora_rank, cfg.lora_scale, generator)
            for t in cfg.lora_targets if t != "embeddings"
        })
        self.partial = nn.ParameterDict()
        dev = mixer.A_log.device
        if "A_log" in cfg.partial_targets:
            self.partial["A_log"] = nn.Parameter(torch.zeros(d, n, device=dev))
        if "D" in cfg.partial_targets:
            self.partial["D"] = nn.Parameter(torch.zeros(d, device=dev))
        if "dt_bias" in cfg.partial_targets:
            self.partial["dt_bias"] = nn.Parameter(torch.zeros(d, device=dev))
        if "conv1d" in cfg.partial_targets:
            self.partial["conv1d_weight"] = nn.Parameter(torch.zeros(d, k, device=dev))
            if mixer.conv1d.bias is not None:
                self.partial["conv1d_bias"] = nn.Parameter(torch.zeros(d, device=dev))
        self.scan_states = cfg.scan_states
        if cfg.scan_states:
            # "Copy first": start the extra states as copies of the first pretrained states (A and
            # the B rows), with C rows zero so they are read out as nothing until trained.
            idx = torch.arange(cfg.scan_states) % n
            w = mixer.x_proj.weight.detach()
            self.scan_A_log = nn.Parameter(mixer.A_log.detach()[:, idx].clone().float())
            self.scan_x_proj = nn.Parameter(torch.cat([w[r + idx], torch.zeros_like(w[r + idx])], dim=0).clone())
        self.affix_tokens = cfg.affix_tokens
        if cfg.affix_tokens:
            # Tokens live in the x half of in_proj's output; start them where an RMS-normed input would land.
            probe = torch.randn(cfg.affix_tokens, hidden, generator=generator).to(w_dtype(mixer))
            self.affix = nn.Parameter((probe.to(dev) @ mixer.in_proj.weight.detach()[:d].T).clone())

    # --- projections: factored LoRA (the default) or the merged effective weights ------------------
    # lora_factored = False rebuilds W + scale * B @ A every forward instead; it is the reference the
    # tests compare the factored path with, and the effective weights below are what merging writes.
    lora_factored: bool = True

    def _add_lora(self, name: str, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return out + self.lora[name](x) if name in self.lora else out

    def project_in(self, mixer: MambaMixer, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """in_proj: [b, L, hidden] -> x, z, each [b, L, d_inner]."""
        d = mixer.intermediate_size
        if not self.lora_factored:
            xz = F.linear(hidden_states, self.in_proj_weight(mixer), mixer.in_proj.bias)
            return xz[..., :d], xz[..., d:]
        xz = self._add_lora("in_proj", F.linear(hidden_states, mixer.in_proj.weight, mixer.in_proj.bias), hidden_states)
        return (self._add_lora("in_proj_x", xz[..., :d], hidden_states),
                self._add_lora("in_proj_z", xz[..., d:], hidden_states))

    def project_x(self, mixer: MambaMixer, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x_proj: [b, L, d_inner] -> dt_low [b, L, time_step_rank], B and C [b, L, n + n']."""
        r, n, m = mixer.time_step_rank, mixer.ssm_state_size, self.scan_states
        if not self.lora_factored:
            return torch.split(F.linear(x, self.x_proj_weight(mixer)), [r, n + m, n + m], dim=-1)
        dt_low, B, C = torch.split(self._add_lora("x_proj", F.linear(x, mixer.x_proj.weight), x), [r, n, n], dim=-1)
        if m:
            extra_b, extra_c = F.linear(x, self.scan_x_proj.to(x.dtype)).chunk(2, dim=-1)
            B, C = torch.cat([B, extra_b], dim=-1), torch.cat([C, extra_c], dim=-1)
        return dt_low, B, C

    def project_out(self, mixer: MambaMixer, y: torch.Tensor) -> torch.Tensor:
        """out_proj: [b, L, d_inner] -> [b, L, hidden]."""
        if not self.lora_factored:
            return F.linear(y, self.out_proj_weight(mixer), mixer.out_proj.bias)
        return self._add_lora("out_proj", F.linear(y, mixer.out_proj.weight, mixer.out_proj.bias), y)

    # --- effective weights -------------------------------------------------------------------
    def _lora(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.lora[name].delta().to(weight.dtype) if name in self.lora else weight

    def in_proj_weight(self, mixer: MambaMixer) -> torch.Tensor:
        """[2 * d_inner, hidden]: rows [:d] make x, rows [d:] make the gate z."""
        w = self._lora("in_proj", mixer.in_proj.weight)
        if "in_proj_x" in self.lora or "in_proj_z" in self.lora:
            wx, wz = w.chunk(2, dim=0)
            w = torch.cat([self._lora("in_proj_x", wx), self._lora("in_proj_z", wz)], dim=0)
        return w

    def conv(self, mixer: MambaMixer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Depthwise kernel [d_inner, kernel] and bias [d_inner] (or None)."""
        w = self._lora("conv1d", mixer.conv1d.weight.squeeze(1))
        b = mixer.conv1d.bias
        if "conv1d_weight" in self.partial:
            w = w + self.partial["conv1d_weight"]
        if "conv1d_bias" in self.partial:
            b = b + self.partial["conv1d_bias"]
        return w, b

    def x_proj_weight(self, mixer: MambaMixer) -> torch.Tensor:
        """[time_step_rank + 2 * (n + n'), d_inner], rows ordered dt | B (+ extra B) | C (+ extra C)."""
        w = self._lora("x_proj", mixer.x_proj.weight)
        if not self.scan_states:
            return w
        r, n = mixer.time_step_rank, mixer.ssm_state_size
        extra_b, extra_c = self.scan_x_proj.to(w.dtype).chunk(2, dim=0)
        return torch.cat([w[: r + n], extra_b, w[r + n:], extra_c], dim=0)

    def dt_proj(self, mixer: MambaMixer) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight [d_inner, time_step_rank] and bias [d_inner]."""
        b = mixer.dt_proj.bias
        if "dt_bias" in self.partial:
            b = b + self.partial["dt_bias"]
        return self._lora("dt_proj", mixer.dt_proj.weight), b

    def A(self, mixer: MambaMixer) -> torch.Tensor:
        """[d_inner, n + n'] negative state matrix."""
        a_log = mixer.A_log.float()
        if "A_log" in self.partial:
            a_log = a_log + self.partial["A_log"]
        if self.scan_states:
            a_log = torch.cat([a_log, self.scan_A_log.float()], dim=1)
        return -torch.exp(a_log)

    def D(self, mixer: MambaMixer) -> torch.Tensor:
        return mixer.D + self.partial["D"] if "D" in self.partial else mixer.D

    def out_proj_weight(self, mixer: MambaMixer) -> torch.Tensor:
        return self._lora("out_proj", mixer.out_proj.weight)


class _NoMethod:
    """Stands in for a config with every method off (``use_cptpp_scan``)."""

    lora_targets: list = []
    partial_targets: list = []
    lora_rank, lora_scale, scan_states, affix_tokens = 1, 1.0, 0, 0


_NO_METHOD = _NoMethod()


def w_dtype(mixer: MambaMixer) -> torch.dtype:
    return mixer.in_proj.weight.dtype


def _mask(states: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero padded positions ([batch, L, *] x [batch, L]), as transformers does before and after the conv."""
    return states if attention_mask is None else (states * attention_mask[:, :, None]).to(states.dtype)


class PeftMambaMixer(MambaMixer):
    """A ``MambaMixer`` whose forward uses ``self.mamba_peft``'s effective weights.

    Instances are made by swapping ``__class__`` of an existing mixer, so parameter names of the
    pretrained weights stay as they were and adapters appear under ``mixer.mamba_peft.*``.
    """

    def forward(self, hidden_states, cache=None, attention_mask=None, cache_params=None, **kwargs):
        cache = cache if cache is not None else cache_params
        return _peft_forward(self, self.mamba_peft, hidden_states, cache, attention_mask)


def _peft_forward(mixer: MambaMixer, ad: MixerPeft, hidden_states: torch.Tensor, cache, attention_mask) -> torch.Tensor:
    """[batch, L, hidden] -> [batch, L, hidden]; follows transformers' reference path step by step."""
    dtype = hidden_states.dtype
    d = mixer.intermediate_size
    conv_state = cache.get_conv_state(mixer.layer_idx) if cache is not None else None
    recurrent = cache.get_recurrent_state(mixer.layer_idx) if cache is not None else None

    hidden_states = _mask(hidden_states, attention_mask)
    x, z = ad.project_in(mixer, hidden_states)  # [b, L, d] each
    n_affix = ad.affix_tokens if conv_state is None else 0  # affix only in front of a fresh sequence
    if n_affix:
        x = torch.cat([ad.affix.to(x.dtype).expand(x.shape[0], -1, -1), x], dim=1)
        z = torch.cat([z.new_zeros(z.shape[0], n_affix, d), z], dim=1)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(attention_mask.shape[0], n_affix), attention_mask], 1)
    L = x.shape[1]

    # Causal depthwise conv; with a cache the stored last `kernel` inputs give the left context.
    x = x.transpose(1, 2)  # [b, d, L]
    if cache is not None:
        x = cache.update_conv_state(x, mixer.layer_idx, conv_kernel_size=mixer.conv_kernel_size)
    w_conv, b_conv = ad.conv(mixer)
    x = F.conv1d(x.to(w_conv.dtype), w_conv.unsqueeze(1), b_conv, padding=mixer.conv_kernel_size - 1,
                 groups=d)[..., : x.shape[-1]][..., -L:]
    x = _mask(mixer.act(x).to(dtype).transpose(1, 2), attention_mask)  # [b, L, d]

    dt_low, B, C = ad.project_x(mixer, x)
    w_dt, b_dt = ad.dt_proj(mixer)
    dt = F.softplus(F.linear(dt_low, w_dt).float() + b_dt.float())  # [b, L, d]
    y, h = selective_scan_chunked(x, dt, ad.A(mixer), B, C, ad.D(mixer), recurrent)
    if cache is not None:
        cache.update_recurrent_state(h.to(recurrent.dtype if recurrent is not None else dtype), mixer.layer_idx)
    y = (y * mixer.act(z)).to(dtype)[:, n_affix:]
    return ad.project_out(mixer, y)


class LoraEmbedding(nn.Embedding):
    """An ``nn.Embedding`` plus a low-rank lookup delta ``scale * B[ids] @ A`` (B: [vocab, r] zeros).

    Only the input lookup changes: the tied LM head keeps reading the frozen weight.
    """

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        lora = self.mamba_peft_lora
        return super().forward(input_ids) + lora.scale * F.embedding(input_ids, lora.B) @ lora.A


# --- public API --------------------------------------------------------------------------------
def _mixers(model: nn.Module) -> list[MambaMixer]:
    found = [m for m in model.modules() if isinstance(m, MambaMixer)]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no MambaMixer layers; apply_mamba_peft needs a transformers "
                          "MambaForCausalLM or MambaModel")
    return found


def apply_mamba_peft(model: nn.Module, cfg: MambaPeftConfig) -> nn.Module:
    """Freeze ``model`` and add the adapters of ``cfg`` in place; returns ``model``.

    Only the adapters (and, for ``partial_targets=['norm']``, the RMSNorm weights) train.
    """
    if getattr(model, "mamba_peft_config", None) is not None:
        raise ConfigError("this model already has MambaPEFT adapters; merge them or start from a fresh model")
    gen = torch.Generator().manual_seed(cfg.seed)
    model.requires_grad_(False)
    for mixer in _mixers(model):
        mixer.mamba_peft = MixerPeft(mixer, cfg, gen).to(mixer.A_log.device)
        mixer.__class__ = PeftMambaMixer
    if "embeddings" in cfg.lora_targets:
        emb = model.get_input_embeddings()
        vocab, dim = emb.weight.shape
        lora = LoraDelta(vocab, dim, cfg.lora_rank, cfg.lora_scale, gen).to(emb.weight.device)
        emb.mamba_peft_lora = lora
        emb.__class__ = LoraEmbedding
    if "norm" in cfg.partial_targets:
        for m in model.modules():
            if isinstance(m, MambaRMSNorm):
                m.weight.requires_grad_(True)
    model.mamba_peft_config = cfg
    return model


def use_cptpp_scan(model: nn.Module) -> nn.Module:
    """Run every mixer through this module's forward with no adapter (e.g. for full fine-tuning).

    Same outputs as transformers' reference path, but its backward is linear in the sequence length:
    the reference path indexes ``discrete_A[:, :, t]`` per step, whose backward fills a full-size zero
    gradient each time (quadratic). Leaves ``requires_grad`` as it was.
    """
    for mixer in _mixers(model):
        if not isinstance(mixer, PeftMambaMixer):
            mixer.mamba_peft = MixerPeft(mixer, None, torch.Generator())
            mixer.__class__ = PeftMambaMixer
    return model


# every tensor a MambaPEFT method adds lives under a "mamba_peft*" attribute: the parameter-name parts that
# are not base-model parameters (``cptpp.train.params.count_parameters(model, added=ADDED_NAMES)``)
ADDED_NAMES = ("mamba_peft",)


def save_mamba_peft(model: nn.Module, path: str | Path) -> None:
    """Write the config and the trained tensors (not the frozen base) to ``path``."""
    cfg = getattr(model, "mamba_peft_config", None)
    if cfg is None:
        raise ConfigError("model has no MambaPEFT adapters to save (call apply_mamba_peft first)")
    save_torch(path, {"config": asdict(cfg), "state": trained_state(model)})


def load_mamba_peft(model: nn.Module, path: str | Path) -> nn.Module:
    """Apply the saved config to a base ``model`` (if not applied yet) and load the trained tensors."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = MambaPeftConfig(**blob["config"])
    if getattr(model, "mamba_peft_config", None) is None:
        apply_mamba_peft(model, cfg)
    elif asdict(model.mamba_peft_config) != asdict(cfg):
        raise ConfigError(f"{path}: saved config {asdict(cfg)} differs from the model's {asdict(model.mamba_peft_config)}")
    load_trained_state(model, blob["state"], path)
    return model


@torch.no_grad()
def merge_mamba_peft(model: nn.Module) -> nn.Module:
    """Fold LoRA and partial deltas into the base weights; returns ``model``.

    Additional-scan and affix tokens change the architecture and stay as adapters (the mixer keeps
    the PEFT forward only if one of them is present). Embedding LoRA merges only when the LM head
    is not tied to the embeddings, because the unmerged delta changes the input lookup only.
    """
    cfg = getattr(model, "mamba_peft_config", None)
    if cfg is None:
        raise ConfigError("model has no MambaPEFT adapters to merge")
    for mixer in [m for m in model.modules() if isinstance(m, PeftMambaMixer)]:
        ad: MixerPeft = mixer.mamba_peft
        w_in, (w_conv, b_conv), w_x = ad.in_proj_weight(mixer), ad.conv(mixer), ad.x_proj_weight(mixer)
        (w_dt, b_dt), D, w_out = ad.dt_proj(mixer), ad.D(mixer), ad.out_proj_weight(mixer)
        a_log = mixer.A_log + ad.partial["A_log"] if "A_log" in ad.partial else mixer.A_log
        mixer.in_proj.weight.copy_(w_in)
        mixer.conv1d.weight.copy_(w_conv.unsqueeze(1))
        if b_conv is not None:
            mixer.conv1d.bias.copy_(b_conv)
        if ad.scan_states:  # keep the extra rows in the adapter, write only the original ones back
            r, n, m = mixer.time_step_rank, mixer.ssm_state_size, ad.scan_states
            w_x = torch.cat([w_x[: r + n], w_x[r + n + m: r + 2 * n + m]], dim=0)
        mixer.x_proj.weight.copy_(w_x)
        mixer.dt_proj.weight.copy_(w_dt)
        mixer.dt_proj.bias.copy_(b_dt)
        mixer.A_log.copy_(a_log)
        mixer.D.copy_(D)
        mixer.out_proj.weight.copy_(w_out)
        ad.lora = nn.ModuleDict()
        ad.partial = nn.ParameterDict()
        if not ad.scan_states and not ad.affix_tokens:
            del mixer.mamba_peft
            mixer.__class__ = MambaMixer
    remaining = dict(scan_states=cfg.scan_states, affix_tokens=cfg.affix_tokens, seed=cfg.seed, lora_rank=cfg.lora_rank,
                     lora_alpha=cfg.lora_alpha)
    emb = model.get_input_embeddings()
    if isinstance(emb, LoraEmbedding):
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is not None and head.weight is emb.weight:
            remaining["lora_targets"] = ["embeddings"]
        else:
            emb.weight.add_(emb.mamba_peft_lora.delta())
            del emb.mamba_peft_lora
            emb.__class__ = nn.Embedding
    if "norm" in cfg.partial_targets:
        for m in model.modules():
            if isinstance(m, MambaRMSNorm):
                m.weight.requires_grad_(False)
    try:
        model.mamba_peft_config = MambaPeftConfig(**remaining)
    except ConfigError:  # nothing left: a plain transformers model again
        model.mamba_peft_config = None
    return model
