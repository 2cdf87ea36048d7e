"""Batching pieces every family shares: padding token-id lists, the pad-id rule, a sized iterable.

The pad-id rule (:func:`pad_token_id`): the tokenizer's ``pad_token_id``; else its ``eos_token_id`` (GPT-2
and Llama tokenizers ship no pad token, and ``generate`` pads with eos there too); else 0. Padded
positions are always masked out (attention mask 0, label -100), so the id only has to be a valid row of
the embedding table.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch


def pad_token_id(tokenizer) -> int:
    """The id used for padding with ``tokenizer``: pad, else eos, else 0 (see the module docstring)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def pad(rows: Sequence[Sequence[int]], value: int, *, left: bool = False) -> torch.Tensor:
    """Pad integer lists to the longest with ``value``: ``[B, L]`` long tensor.

    ``left=False`` (right padding) for training and classification: a causal model's outputs at real
    positions do not depend on what follows them. ``left=True`` for prompts a decoder-only model
    continues with ``generate`` (the last position must be real).
    """
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r):
            span = slice(width - len(r), width) if left else slice(0, len(r))
            out[i, span] = torch.as_tensor(list(r), dtype=torch.long)
    return out


def pad_batch(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids [B, L], attention_mask [B, L])``: :func:`pad` with ``pad_id``, mask 1 on real tokens."""
    return pad(rows, pad_id, left=left), pad([[1] * len(r) for r in rows], 0, left=left)


class SizedIterable:
    """An iterable with a known length (so the loop's progress bar can show a total)."""

    def __init__(self, it: Iterable, n: int):
        self.it, self.n = it, n

    def __iter__(self):
        return iter(self.it)

    def __len__(self) -> int:
        return self.n


def length_bucketed(lengths: Sequence[int], batch_size: int, generator: torch.Generator,
                    pool: int = 8) -> list[list[int]]:
    """Random batches of indices with little padding: shuffle, sort each run of ``pool * batch_size`` items by
    length, cut it into batches, shuffle the batches. Every index appears once; seeded by ``generator``."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    span = pool * batch_size
    batches = []
    for k in range(0, len(order), span):
        chunk = sorted(order[k: k + span], key=lambda i: lengths[i])
        batches += [chunk[j: j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
