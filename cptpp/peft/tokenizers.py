"""Tokenizers that need no download, and the one method the PEFT code asks of any tokenizer."""
from __future__ import annotations

from typing import Protocol


class Tokenizer(Protocol):
    """What LM-likelihood scoring needs: text -> token ids (a Hugging Face tokenizer qualifies)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255, id 256 for padding: a tokenizer that needs no download."""

    vocab_size = 257
    pad_token_id = 256
    eos_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode("utf-8"))
