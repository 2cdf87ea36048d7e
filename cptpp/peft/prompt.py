"""Soft prompt tuning (Lester et al., 2021) for encoder, encoder-decoder and decoder HF models.

A soft prompt is a matrix ``P`` of ``num_tokens`` trainable vectors in the model's input-embedding
space. It is prepended to the embedded input, ``[P; E(x)]``, and the attention mask grows by
``num_tokens`` ones; the backbone stays frozen. This module is the shared piece other methods build
on (XPrompt masks it, ToPro/PEFTT reuse it):

- :class:`SoftPrompt` holds the values ``[num_tokens, hidden]`` and knows how to prepend itself.
- :func:`prepend_prompt` is the pure function behind it (accepts a per-example prompt
  ``[batch, num_tokens, hidden]`` too, which XPrompt uses to get per-example gradients).
- :class:`PromptClassifier` turns any supported backbone into a classifier: encoder -> mean-pooled
  input tokens + linear head; decoder -> next-token logits of the verbalizer words at the last real
  token; encoder-decoder -> first decoder step logits of the verbalizer words. ``head="linear"`` puts a
  linear head on any backbone's pooled features (:meth:`PromptClassifier.features`): with a frozen
  backbone and no prompt that is a linear probe.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.peft.architecture import ARCHITECTURES, detect_architecture

PROMPT_INITS = ("vocab", "random")
HEADS = ("auto", "linear", "verbalizer")


@dataclass
class SoftPromptConfig:
    """``init="vocab"`` copies embeddings of randomly drawn vocabulary tokens (Lester et al. §2.2, their
    best init after class labels); ``"random"`` draws U(-random_range, random_range)."""

    num_tokens: int = 20
    init: str = "vocab"
    random_range: float = 0.5
    seed: int = 0

    def __post_init__(self):
        check_range("num_tokens", self.num_tokens, 1)
        check_choice("init", self.init, PROMPT_INITS)
        check_range("random_range", self.random_range, 0, lo_open=True)


def prepend_prompt(prompt: torch.Tensor, inputs_embeds: torch.Tensor,
                   attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``([prompt; inputs_embeds], [1...1; attention_mask])``.

    prompt: ``[P, H]`` (shared) or ``[B, P, H]`` (per example); inputs_embeds: ``[B, L, H]``;
    attention_mask: ``[B, L]`` (None = all ones). Returns ``[B, P+L, H]`` and ``[B, P+L]``.
    """
    batch, length, hidden = inputs_embeds.shape
    if prompt.shape[-1] != hidden:
        raise ConfigError(f"prompt hidden size {prompt.shape[-1]} != model embedding size {hidden}")
    if prompt.dim() == 2:
        prompt = prompt.unsqueeze(0).expand(batch, -1, -1)
    elif prompt.dim() != 3 or prompt.shape[0] != batch:
        raise ConfigError(f"prompt must be [P, H] or [{batch}, P, H], got {list(prompt.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones(batch, length, dtype=torch.long, device=inputs_embeds.device)
    ones = torch.ones(batch, prompt.shape[1], dtype=attention_mask.dtype, device=attention_mask.device)
    embeds = torch.cat([prompt.to(inputs_embeds.dtype), inputs_embeds], dim=1)
    return embeds, torch.cat([ones, attention_mask], dim=1)


def vocab_init(embedding: torch.Tensor, num_tokens: int, generator: torch.Generator,
               candidate_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Copy rows of ``embedding`` ``[V, H]`` for ``num_tokens`` ids drawn without replacement from
    ``candidate_ids`` (default: all ids). Returns ``[num_tokens, H]``."""
    ids = candidate_ids if candidate_ids is not None else torch.arange(embedding.shape[0])
    if len(ids) < num_tokens:
        raise ConfigError(f"need {num_tokens} candidate vocabulary ids for the prompt init, got {len(ids)}")
    pick = ids[torch.randperm(len(ids), generator=generator)[:num_tokens]]
    return embedding.detach()[pick.to(embedding.device)].clone().float()


class SoftPrompt(nn.Module):
    """Trainable prompt values ``weight: [num_tokens, hidden]``.

    Subclasses change what is prepended by overriding :meth:`values` (e.g. XPrompt's masks);
    :meth:`forward` always prepends ``values()``.
    """

    def __init__(self, num_tokens: int, hidden: int, init: torch.Tensor | None = None):
        super().__init__()
        check_range("num_tokens", num_tokens, 1)
        if init is not None and tuple(init.shape) != (num_tokens, hidden):
            raise ConfigError(f"prompt init has shape {list(init.shape)}, expected [{num_tokens}, {hidden}]")
        self.weight = nn.Parameter(init.clone().float() if init is not None else torch.zeros(num_tokens, hidden))

    @classmethod
    def from_config(cls, cfg: SoftPromptConfig, embedding: torch.Tensor,
                    candidate_ids: torch.Tensor | None = None) -> "SoftPrompt":
        """Build from the backbone's input embedding matrix ``[V, H]`` (used for size and vocab init)."""
        gen = torch.Generator().manual_seed(cfg.seed)
        hidden = embedding.shape[1]
        if cfg.init == "vocab":
            init = vocab_init(embedding, cfg.num_tokens, gen, candidate_ids)
        else:
            init = (torch.rand(cfg.num_tokens, hidden, generator=gen) * 2 - 1) * cfg.random_range
        return cls(cfg.num_tokens, hidden, init)

    @property
    def num_tokens(self) -> int:
        return self.weight.shape[0]

    @property
    def hidden(self) -> int:
        return self.weight.shape[1]

    def values(self) -> torch.Tensor:
        """The prompt actually prepended, ``[P', H]`` (P' = P here; fewer after XPrompt token pruning)."""
        return self.weight

    def num_parameters(self) -> int:
        """Prompt values that the model can use (XPrompt counts only survivors)."""
        return self.weight.numel()

    def forward(self, inputs_embeds, attention_mask=None):
        return prepend_prompt(self.values(), inputs_embeds, attention_mask)


class PromptClassifier(nn.Module):
    """A classifier over a HF backbone with an optional soft prompt.

    - prompt tuning: ``prompt=SoftPrompt(...)``, ``train_backbone=False`` (only the prompt, and for an
      encoder the linear head, train);
    - full fine-tuning: ``prompt=None``, ``train_backbone=True``;
    - linear probe: ``prompt=None``, ``train_backbone=False``, ``head="linear"`` (only the head trains).

    ``head``: ``"linear"`` is a ``Linear(H, C)`` on :meth:`features` (mean of the input-token states for an
    encoder or encoder-decoder's encoder, prompt positions excluded; the last real token's final state for a
    decoder); ``"verbalizer"`` scores class c by the LM logit of ``label_token_ids[c]`` (one vocabulary id per
    class), next token after the last real token (decoder) or at the first decoder step (encoder-decoder).
    ``"auto"``: linear for an encoder, verbalizer otherwise.

    The decoder's verbalizer logits are computed at the scored position and for the C label rows of the output
    embedding only (``h @ W[label_ids].T``), not the full ``[B, L, V]`` logits: with a 262k vocabulary (Gemma 3)
    that projection otherwise costs more than the model.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, prompt: SoftPrompt | None = None,
                 label_token_ids: list[int] | torch.Tensor | None = None, train_backbone: bool = False,
                 architecture: str | None = None, head: str = "auto"):
        super().__init__()
        self.architecture = architecture or detect_architecture(backbone)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        check_choice("head", head, HEADS)
        check_range("num_classes", num_classes, 2)
        self.backbone = backbone
        self.prompt = prompt
        self.num_classes = num_classes
        self.head_kind = ("linear" if self.architecture == "encoder" else "verbalizer") if head == "auto" else head
        if self.architecture == "encoder" and self.head_kind != "linear":
            raise ConfigError("an encoder has no LM head to read verbalizer words from; use head='linear'")
        for p in backbone.parameters():
            p.requires_grad_(train_backbone)
        if self.head_kind == "linear":
            self.head = nn.Linear(backbone.get_input_embeddings().weight.shape[1], num_classes)
            self.register_buffer("label_token_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        else:
            if label_token_ids is None or len(label_token_ids) != num_classes:
                raise ConfigError(f"a {self.architecture} backbone scores classes by verbalizer tokens: "
                                  f"pass label_token_ids with {num_classes} ids")
            self.head = None
            self.register_buffer("label_token_ids", torch.as_tensor(list(label_token_ids), dtype=torch.long),
                                 persistent=False)

    def embed(self, input_ids: torch.Tensor, prompt_values: torch.Tensor | None = None,
              attention_mask: torch.Tensor | None = None):
        """Embedded input with the prompt prepended: ``[B, P+L, H]``, mask ``[B, P+L]``, and P."""
        embeds = self.backbone.get_input_embeddings()(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if prompt_values is None and self.prompt is not None:
            prompt_values = self.prompt.values()
        if prompt_values is None:
            return embeds, attention_mask, 0
        embeds, mask = prepend_prompt(prompt_values, embeds, attention_mask)
        return embeds, mask, prompt_values.shape[-2]

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 prompt_values: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled final states ``[B, H]`` that a linear head reads (see the class docstring)."""
        embeds, mask, n_prompt = self.embed(input_ids, prompt_values, attention_mask)
        if self.architecture == "decoder":
            hidden = self.backbone.base_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            return last_real(hidden, mask)
        encoder = self.backbone.get_encoder() if self.architecture == "encoder-decoder" else self.backbone
        hidden = encoder(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        keep = mask[:, n_prompt:].unsqueeze(-1).to(hidden.dtype)
        return (hidden[:, n_prompt:] * keep).sum(1) / keep.sum(1).clamp_min(1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                prompt_values: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask: ``[B, L]`` (right-padded). prompt_values overrides the prompt:
        ``[P, H]`` or ``[B, P, H]``. Returns class logits ``[B, C]``."""
        if self.head_kind == "linear":
            return self.head(self.features(input_ids, attention_mask, prompt_values))
        if self.architecture == "decoder":
            return verbalizer_logits(self.backbone, self.features(input_ids, attention_mask, prompt_values),
                                     self.label_token_ids)
        embeds, mask, _ = self.embed(input_ids, prompt_values, attention_mask)
        start = self.backbone.config.decoder_start_token_id
        dec = torch.full((embeds.shape[0], 1), start, dtype=torch.long, device=embeds.device)
        logits = self.backbone(inputs_embeds=embeds, attention_mask=mask, decoder_input_ids=dec).logits
        return logits[:, 0, self.label_token_ids]


def last_real(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``hidden[b, last position where mask[b] == 1]``: ``[B, L, H]``, right-padded ``[B, L]`` -> ``[B, H]``."""
    last = mask.sum(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def verbalizer_logits(lm: nn.Module, hidden: torch.Tensor, label_token_ids: torch.Tensor) -> torch.Tensor:
    """A causal LM's logits of the ids ``label_token_ids`` ``[C]`` from final states ``hidden`` ``[B, H]``:
    the LM head restricted to those rows, ``hidden @ W[ids].T (+ b[ids])``, then the model's final logit
    soft-capping if its config has one (Gemma 2/3: ``cap * tanh(z / cap)``). Equals
    ``lm(...).logits[:, pos, ids]`` at C/V of the cost. Returns ``[B, C]``."""
    out = lm.get_output_embeddings()
    logits = hidden @ out.weight[label_token_ids].to(hidden.dtype).T
    if getattr(out, "bias", None) is not None:
        logits = logits + out.bias[label_token_ids]
    cfg = getattr(lm.config, "get_text_config", lambda: lm.config)()
    cap = getattr(cfg, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits
