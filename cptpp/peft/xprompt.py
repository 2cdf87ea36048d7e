"""XPrompt (Ma et al., EMNLP 2022): hierarchical structured pruning of a tuned soft prompt.

Three stages, under the lottery-ticket hypothesis:

1. prompt-tune a soft prompt ``W: [P, H]`` (stage-1 solution ``W1``);
2. put learnable masks on it: ``gamma_tok: [P]`` on tokens and ``gamma_piece: [P, k]`` on the ``k``
   equal pieces each token embedding is split into. The prompt actually used is

       V[p, h] = W[p, h] * gamma_tok[p] * gamma_piece[p, h // (H / k)]

   The importance of a mask is (paper Eq. 3-4, after Michel et al. 2019)

       I(gamma) = E_{x ~ D} | dL(x)/d gamma * gamma |,

   and because ``dL/d gamma * gamma`` is ``sum over the masked entries of dL/dV * V``, every example's
   score comes from the gradient w.r.t. its own copy of ``V`` (one backward per batch, exact per-example
   absolute values). The lowest-scoring tokens are pruned, then the lowest-scoring pieces, iteratively
   over increasing ratios;
3. rewind the survivors (and any other trainable parameter, e.g. an encoder's head) to the stage-1
   solution and retrain them.

A pruned token is removed from the sequence (the prompt gets shorter); a pruned piece is zeroed. Either
way it contributes exactly nothing: the output does not depend on the stored values behind a pruned
entry, and their gradient is zero.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from cptpp.config import ConfigError, check_range
from cptpp.io import save_torch
from cptpp.peft.prompt import SoftPrompt
from cptpp.train.params import load_trained_state, trained_state

FORMAT = "cptpp.xprompt/1"


def _check_ratios(name: str, ratios) -> None:
    for r in ratios:
        check_range(name, r, 0, 1, lo_open=True)
        if r >= 1:
            raise ConfigError(f"{name}: ratio {r} would prune everything; use values in (0, 1)")
    if list(ratios) != sorted(set(ratios)):
        raise ConfigError(f"{name}={list(ratios)} must be strictly increasing (pruning is cumulative)")


@dataclass
class XPromptConfig:
    """Ratios are cumulative fractions: token ratios of the ``P`` prompt tokens, piece ratios of the
    pieces of the tokens that survive token pruning. ``metric`` picks the best ratio (on validation)."""

    num_pieces: int = 16
    token_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    piece_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])
    metric: str = "accuracy"

    def __post_init__(self):
        check_range("num_pieces", self.num_pieces, 1)
        _check_ratios("token_ratios", self.token_ratios)
        _check_ratios("piece_ratios", self.piece_ratios)


class MaskedSoftPrompt(SoftPrompt):
    """A soft prompt with 0/1 token and piece masks (buffers, saved with the state dict).

    weight: ``[P, H]``; token_mask: ``[P]``; piece_mask: ``[P, k]`` with ``H % k == 0``.
    """

    def __init__(self, num_tokens: int, hidden: int, num_pieces: int = 16, init: torch.Tensor | None = None):
        super().__init__(num_tokens, hidden, init)
        if hidden % num_pieces:
            raise ConfigError(f"num_pieces={num_pieces} must divide the hidden size {hidden}")
        self.num_pieces = num_pieces
        self.register_buffer("token_mask", torch.ones(num_tokens))
        self.register_buffer("piece_mask", torch.ones(num_tokens, num_pieces))

    @classmethod
    def from_prompt(cls, prompt: SoftPrompt, num_pieces: int = 16) -> "MaskedSoftPrompt":
        return cls(prompt.num_tokens, prompt.hidden, num_pieces, prompt.weight.detach())

    @property
    def piece_size(self) -> int:
        return self.hidden // self.num_pieces

    def alive_tokens(self) -> torch.Tensor:
        """Indices of unpruned tokens, ``[P']`` (sorted, so the prompt keeps its order)."""
        return self.token_mask.nonzero().flatten()

    def entry_mask(self) -> torch.Tensor:
        """``[P, H]`` 0/1 mask over prompt entries (token mask x piece mask)."""
        return self.token_mask[:, None] * self.piece_mask.repeat_interleave(self.piece_size, dim=1)

    def values(self) -> torch.Tensor:
        """Surviving tokens with pruned pieces zeroed: ``[P', H]``."""
        alive = self.alive_tokens()
        return (self.weight * self.entry_mask())[alive]

    def num_parameters(self) -> int:
        return int(self.entry_mask().sum().item())


def importance_scores(model, prompt: MaskedSoftPrompt, batches: Iterable[tuple],
                      loss_fn: Callable[[torch.Tensor, Any], torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token scores ``[P]`` and piece scores ``[P, k]``: ``E_x |dL(x)/d gamma * gamma|`` (pruned -> 0).

    ``model(input_ids, attention_mask, prompt_values=[B, P', H]) -> logits``; each batch is
    ``(input_ids, attention_mask, labels)``; ``loss_fn(logits, labels) -> [B]`` per-example losses
    (default: cross-entropy). Computed with the model as it is (call ``model.eval()`` for dropout-free
    scores).
    """
    loss_fn = loss_fn or (lambda logits, y: F.cross_entropy(logits, y, reduction="none"))
    alive = prompt.alive_tokens()
    k, s = prompt.num_pieces, prompt.piece_size
    tok = torch.zeros(len(alive), dtype=torch.float64)
    piece = torch.zeros(len(alive), k, dtype=torch.float64)
    n = 0
    values = prompt.values().detach()
    for input_ids, attention_mask, labels in batches:
        # one leaf copy of the prompt per example: example i's loss depends only on copy i, so the
        # gradient of the summed loss w.r.t. copy i is dL_i/dV (no per-example backward needed)
        per_example = values.unsqueeze(0).expand(len(labels), -1, -1).clone().requires_grad_(True)
        losses = loss_fn(model(input_ids, attention_mask, prompt_values=per_example), labels)
        (grad,) = torch.autograd.grad(losses.sum(), per_example)
        gv = (grad * per_example.detach()).double()                     # [B, P', H]
        tok += gv.sum(-1).abs().sum(0)
        piece += gv.view(len(labels), len(alive), k, s).sum(-1).abs().sum(0)
        n += len(labels)
    if n == 0:
        raise ConfigError("importance_scores got no batches")
    full_tok = torch.zeros(prompt.num_tokens, dtype=torch.float64)
    full_piece = torch.zeros(prompt.num_tokens, k, dtype=torch.float64)
    full_tok[alive] = tok / n
    full_piece[alive] = piece / n * prompt.piece_mask[alive].double()
    return full_tok, full_piece


def _prune_lowest(mask: torch.Tensor, scores: torch.Tensor, eligible: torch.Tensor, target_pruned: int) -> None:
    """Zero ``mask`` entries (flattened) at the lowest ``scores`` among ``eligible`` alive ones until
    ``target_pruned`` of the eligible entries are zero."""
    flat_mask, flat_scores, flat_ok = mask.view(-1), scores.reshape(-1), eligible.reshape(-1)
    already = int(((flat_mask == 0) & flat_ok).sum())
    extra = target_pruned - already
    if extra < 0:
        raise ConfigError(f"cannot un-prune: {already} entries are pruned already, target is {target_pruned}")
    candidates = ((flat_mask != 0) & flat_ok).nonzero().flatten()
    order = candidates[torch.argsort(flat_scores[candidates], stable=True)]
    flat_mask[order[:extra]] = 0


@torch.no_grad()
def prune_tokens(prompt: MaskedSoftPrompt, token_scores: torch.Tensor, ratio: float) -> None:
    """Prune the lowest-scoring tokens until ``round(ratio * P)`` are pruned (at least one survives)."""
    target = min(round(ratio * prompt.num_tokens), prompt.num_tokens - 1)
    _prune_lowest(prompt.token_mask, token_scores, torch.ones_like(prompt.token_mask, dtype=torch.bool), target)


@torch.no_grad()
def prune_pieces(prompt: MaskedSoftPrompt, piece_scores: torch.Tensor, ratio: float) -> None:
    """Prune the lowest-scoring pieces of surviving tokens until ``round(ratio * pieces of survivors)``
    are pruned (at least one piece survives)."""
    eligible = (prompt.token_mask[:, None] != 0).expand_as(prompt.piece_mask)
    total = int(eligible.sum())
    _prune_lowest(prompt.piece_mask, piece_scores, eligible, min(round(ratio * total), total - 1))


def save_pruned_prompt(path: str | Path, prompt: MaskedSoftPrompt) -> None:
    """Write masks and values (pruned entries stored as 0) so :func:`load_pruned_prompt` rebuilds it."""
    save_torch(path, {
        "format": FORMAT,
        "weight": (prompt.weight.detach() * prompt.entry_mask()).cpu(),
        "token_mask": prompt.token_mask.cpu(),
        "piece_mask": prompt.piece_mask.cpu(),
        "num_pieces": prompt.num_pieces,
    })


def load_pruned_prompt(path: str | Path) -> MaskedSoftPrompt:
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a pruned XPrompt file (expected format {FORMAT!r})")
    p, h = data["weight"].shape
    prompt = MaskedSoftPrompt(p, h, data["num_pieces"], data["weight"])
    prompt.token_mask.copy_(data["token_mask"])
    prompt.piece_mask.copy_(data["piece_mask"])
    return prompt


@dataclass
class PruneRecord:
    """One pruning step: level ("token"/"piece"), cumulative ratio, prompt values kept, fit results."""

    level: str
    ratio: float
    prompt_params: int
    tokens_kept: int
    results: dict[str, Any]
    token_mask: list[float]
    piece_mask: list[list[float]]


def xprompt_search(model: torch.nn.Module, prompt: MaskedSoftPrompt, cfg: XPromptConfig,
                   score: Callable[[], tuple[torch.Tensor, torch.Tensor]],
                   retrain: Callable[[str], dict[str, Any]]) -> tuple[list[PruneRecord], PruneRecord | None]:
    """Stages 2-3 from a prompt-tuned ``model`` (its current trainable values are the stage-1 solution).

    For each token ratio: score (on the model retrained at the previous ratio), prune, rewind to stage 1,
    ``retrain(tag)`` (a ``cptpp.train.fit`` results dict with ``valid``/``test``). Then the same over
    piece ratios, starting from the token mask with the best validation ``cfg.metric``. Returns every
    record and the best one (model is left at the best configuration's retrained values).
    """
    stage1 = trained_state(model)
    records: list[PruneRecord] = []

    def step(level: str, ratio: float) -> PruneRecord:
        model.eval()
        tok_scores, piece_scores = score()
        if level == "token":
            prune_tokens(prompt, tok_scores, ratio)
        else:
            prune_pieces(prompt, piece_scores, ratio)
        load_trained_state(model, stage1, "stage-1 state")  # rewind (masks are buffers: untouched)
        results = retrain(f"{level}{ratio:g}")
        rec = PruneRecord(level, ratio, prompt.num_parameters(), len(prompt.alive_tokens()), results,
                          prompt.token_mask.tolist(), prompt.piece_mask.tolist())
        records.append(rec)
        best_states[id(rec)] = trained_state(model)
        return rec

    best_states: dict[int, dict[str, torch.Tensor]] = {}
    value = lambda r: r.results["valid"].get(cfg.metric, float("-inf"))  # noqa: E731
    token_records = [step("token", r) for r in cfg.token_ratios]
    if token_records:
        best_tok = max(token_records, key=value)
        _restore(model, prompt, best_tok, best_states)
    for r in cfg.piece_ratios:
        step("piece", r)
    best = max(records, key=value) if records else None
    if best is not None:
        _restore(model, prompt, best, best_states)
    return records, best


@torch.no_grad()
def _restore(model, prompt: MaskedSoftPrompt, rec: PruneRecord, states: dict[int, dict]) -> None:
    prompt.token_mask.copy_(torch.tensor(rec.token_mask))
    prompt.piece_mask.copy_(torch.tensor(rec.piece_mask))
    load_trained_state(model, states[id(rec)], f"state after {rec.level} {rec.ratio:g}")
