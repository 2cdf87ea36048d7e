"""Which of the three Hugging Face backbone kinds a model is; the PEFT methods read classes off it differently."""
from __future__ import annotations

from torch import nn

ARCHITECTURES = ("encoder", "decoder", "encoder-decoder")
# class-name endings of decoder-only LMs with an LM head (LlamaForCausalLM, MambaForCausalLM, GPT2LMHeadModel)
_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def detect_architecture(model: nn.Module) -> str:
    """``"encoder-decoder"`` (T5, BART: ``config.is_encoder_decoder``), ``"decoder"`` (a causal LM with its
    LM head) or ``"encoder"`` (anything else: a BERT-like base model or a ``...ForMaskedLM``).

    The class name decides decoder vs. encoder: an MLM head is also called ``lm_head`` (RoBERTa, XLM-R),
    so having one says nothing.
    """
    cfg = getattr(model, "config", None)
    if cfg is not None and getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder"
    if type(model).__name__.endswith(_DECODER_SUFFIXES):
        return "decoder"
    return "encoder"
