"""Baselines for Transducer Tuning, built with `peft` on the same frozen backbone and trained by the same loop.

Methods (paper sizes are for CodeT5+ 220M, d = 768, 12 + 12 layers):

* ``lora``   -- LoRA r = 8 on the attention query/value projections (peft's defaults per model
  type: T5 ``q, v``; Llama ``q_proj, v_proj``; GPT-2 ``c_attn``): 884,736 there.
* ``prompt`` -- prompt tuning, 50 random virtual tokens: 50 x 768 = 38,400 there.
* ``prefix`` -- prefix tuning without reparameterisation, 10 virtual tokens per layer's keys and
  values: 184,320 there.
* ``ia3``    -- (IA)^3 (Liu et al. 2022): learned vectors that rescale the attention keys and
  values and the input of the feed-forward output projection (peft's defaults per model type:
  T5 ``k, v, wo``; Llama ``k_proj, v_proj, down_proj``), initialized to ones:
  12 x (2 x 768 + 3072) (encoder) + 12 x (4 x 768 + 3072) (decoder: self and cross k, v) = 129,024 there.
* ``full``   -- every backbone parameter trains (222.9M there).
* ``frozen`` -- no training: the backbone as is (a zero-shot floor for the table).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cptpp.config import check_choice, check_range

BASELINES = ("lora", "prompt", "prefix", "ia3", "full", "frozen")
# the methods built by the Hugging Face `peft` library (the others need no adapter)
PEFT_LIBRARY_METHODS = ("lora", "prompt", "prefix", "ia3")


@dataclass
class BaselineConfig:
    method: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    prompt_tokens: int = 50
    prefix_tokens: int = 10

    def __post_init__(self):
        check_choice("method", self.method, BASELINES)
        check_range("lora_r", self.lora_r, 1)
        check_range("lora_alpha", self.lora_alpha, 1)
        check_range("lora_dropout", self.lora_dropout, 0, 1)
        check_range("prompt_tokens", self.prompt_tokens, 1)
        check_range("prefix_tokens", self.prefix_tokens, 1)


def _peft_config(cfg: BaselineConfig, encoder_decoder: bool):
    from peft import IA3Config, LoraConfig, PrefixTuningConfig, PromptTuningConfig, TaskType

    task = TaskType.SEQ_2_SEQ_LM if encoder_decoder else TaskType.CAUSAL_LM
    if cfg.method == "lora":
        return LoraConfig(task_type=task, r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout)
    if cfg.method == "prompt":
        # one prompt in front of the encoder input (Lester et al.); peft would otherwise add a second
        # one for the decoder of an encoder-decoder
        return PromptTuningConfig(task_type=task, num_virtual_tokens=cfg.prompt_tokens, num_transformer_submodules=1)
    if cfg.method == "ia3":
        return IA3Config(task_type=task)
    return PrefixTuningConfig(task_type=task, num_virtual_tokens=cfg.prefix_tokens)


class BaselineLM:
    """A backbone adapted by a ``peft`` method (or fully trained / frozen), with ``TransducerLM``'s interface.

    ``module`` holds the trainable parameters the loop optimizes; ``__call__(batch)`` returns the
    HF output; ``generate(batch)`` returns greedy new-token ids ``[B, T]``.
    """

    def __init__(self, backbone: nn.Module, cfg: BaselineConfig):
        self.cfg = cfg
        self.is_encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))
        if cfg.method in PEFT_LIBRARY_METHODS:
            from peft import get_peft_model

            self.module = get_peft_model(backbone, _peft_config(cfg, self.is_encoder_decoder))
        else:
            self.module = backbone
            for p in backbone.parameters():
                p.requires_grad_(cfg.method == "full")

    def to(self, device) -> BaselineLM:
        self.module.to(device)
        return self

    def __call__(self, batch: dict):
        kw = {k: batch[k] for k in ("labels", "decoder_attention_mask") if k in batch}
        return self.module(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)

    @torch.no_grad()
    def generate(self, batch: dict, **gen_kwargs) -> torch.Tensor:
        out = self.module.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   do_sample=False, num_beams=1, **gen_kwargs)
        if self.is_encoder_decoder:
            return out[:, 1:]  # drop the decoder start token
        return out[:, batch["input_ids"].shape[1]:]  # a causal LM echoes its (left-padded) prompt
