"""Full-ranking evaluation of implicit-feedback recommenders (all items are candidates).

Users are scored in blocks (``[block, num_items]``), already-seen items are masked with
``-inf`` straight from the CSR rows of the block, and one ``torch.topk`` at ``max(ks)`` serves
every cutoff. Metric definitions follow LightGCN / RecBole:

* ``recall@K    = hits / |T_u|``
* ``precision@K = hits / K``
* ``ndcg@K      = DCG / IDCG``, ``DCG = sum_{hit ranks r (0-based)} 1 / log2(r + 2)``,
  IDCG the same sum over the first ``min(|T_u|, K)`` ranks
* ``hit@K       = 1[hits > 0]``
* ``mrr@K       = 1 / (r_first + 1)`` if some target is in the top K, else 0

each averaged over the users with at least one target item (others are skipped, and
``num_users`` reports how many counted). Ties between equal scores are broken by whatever
order ``torch.topk`` returns; scores are floats from a model, so exact ties are rare, but a
constant model's numbers depend on that order.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

__all__ = ["METRICS", "evaluate_ranking", "evaluate_embeddings", "ranking_metrics"]

METRICS = ("recall", "ndcg", "precision", "hit", "mrr")


def _check_args(ks: Sequence[int], metrics: Sequence[str], block_size: int) -> tuple[int, ...]:
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) <= 0:
        raise ValueError(f"ks must be a non-empty list of positive ints, got {ks}")
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid choices: {list(METRICS)}")
    if block_size <= 0:
        raise ValueError(f"block_size must be positive, got {block_size}")
    return ks


def _rows_to_coords(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of the nonzeros of CSR rows ``rows``, re-numbered ``0..len(rows)-1``.

    Args:
        indptr: ``[R + 1]`` int64; indices: ``[nnz]`` int64; rows: ``[b]`` int64.
    Returns:
        ``(r, c)``: ``[m]`` block-row and column of each nonzero of the selected rows.
    """
    start = indptr[rows]
    length = indptr[rows + 1] - start
    r = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), length)
    # offset of each nonzero inside its row = global position - first position of its row
    first = torch.cumsum(length, 0) - length
    pos = torch.arange(len(r), device=rows.device) - first[r] + start[r]
    return r, indices[pos]


def ranking_metrics(hits: torch.Tensor, num_targets: torch.Tensor, ks: Sequence[int],
                    metrics: Sequence[str] = METRICS) -> dict[str, torch.Tensor]:
    """Per-user metrics from a hit matrix.

    Args:
        hits: ``[b, K]`` bool/float, ``hits[u, r]`` = the item at rank ``r`` of user ``u`` is a
            target; ``K >= max(ks)``.
        num_targets: ``[b]`` ``|T_u|`` (>= 1).
        ks, metrics: cutoffs and metric names.
    Returns:
        ``{"recall@20": [b] float64, ...}``.
    """
    hits = hits.to(torch.float64)
    nt = num_targets.to(torch.float64)
    kmax = max(ks)
    ranks = torch.arange(kmax, dtype=torch.float64, device=hits.device)
    disc = 1.0 / torch.log2(ranks + 2.0)
    ideal = torch.cumsum(disc, 0)  # ideal[k-1] = IDCG with k targets
    recip = 1.0 / (ranks + 1.0)
    out = {}
    for k in ks:
        h = hits[:, :k]
        nh = h.sum(1)
        for m in metrics:
            if m == "recall":
                v = nh / nt
            elif m == "precision":
                v = nh / k
            elif m == "hit":
                v = (nh > 0).to(torch.float64)
            elif m == "ndcg":
                n_ideal = torch.clamp(nt, max=k).to(torch.int64)
                v = (h * disc[:k]).sum(1) / ideal[n_ideal - 1]
            else:  # mrr: reciprocal ranks decrease, so the first hit has the largest one
                v = (h * recip[:k]).amax(1)
            out[f"{m}@{k}"] = v
    return out


def evaluate_ranking(score_fn: Callable[[torch.Tensor], torch.Tensor], target: sp.spmatrix,
                     exclude: Iterable[sp.spmatrix] = (), ks: Sequence[int] = (20,),
                     metrics: Sequence[str] = METRICS, block_size: int = 2048,
                     device: str | torch.device = "cpu") -> dict[str, float]:
    """Full-ranking top-K metrics over every user with at least one target item.

    Args:
        score_fn: ``user_ids [b] int64 -> scores [b, num_items]`` (float). The returned tensor
            is masked **in place**, so return a fresh tensor (a matmul does), not a cached one.
        target: ``[num_users, num_items]`` CSR, nonzeros = held-out items to find.
        exclude: CSR matrices of the same shape whose items are removed from each user's
            ranking (the train split; for test also the validation split).
        ks: cutoffs; metrics: any of :data:`METRICS`.
        block_size: users scored per ``score_fn`` call (memory ~ ``block_size * num_items``).
        device: where user ids are created and masks are built.

    Returns:
        ``{"recall@20": float, ..., "num_users": int}``; metrics are means over counted users.
    """
    ks = _check_args(ks, metrics, block_size)
    device = torch.device(device)
    target = sp.csr_matrix(target)
    num_users, num_items = target.shape
    excl = sp.csr_matrix((num_users, num_items), dtype=np.float32)
    for m in exclude:
        if m.shape != target.shape:
            raise ValueError(f"exclude matrix has shape {m.shape}, target has {target.shape}")
        excl = excl + (sp.csr_matrix(m) != 0)
    target = target.copy()
    target.eliminate_zeros()
    target.sort_indices()

    def to_t(a):
        return torch.from_numpy(np.asarray(a, dtype=np.int64)).to(device)

    t_ptr, t_idx = to_t(target.indptr), to_t(target.indices)
    e_ptr, e_idx = to_t(excl.indptr), to_t(excl.indices)
    n_targets = t_ptr[1:] - t_ptr[:-1]
    # sorted (row-major, sorted columns) keys: membership of a (user, item) by one searchsorted
    t_keys = torch.repeat_interleave(torch.arange(num_users, device=device), n_targets)
    t_keys = t_keys * num_items + t_idx
    users = torch.nonzero(n_targets > 0).squeeze(1)
    kmax = max(ks)
    ktop = min(kmax, num_items)

    sums = {f"{m}@{k}": torch.zeros((), dtype=torch.float64, device=device)
            for k in ks for m in metrics}
    with torch.no_grad():
        for lo in range(0, len(users), block_size):
            bu = users[lo:lo + block_size]
            scores = score_fn(bu)
            if scores.shape != (len(bu), num_items):
                raise ValueError(f"score_fn returned shape {tuple(scores.shape)}, expected "
                                 f"{(len(bu), num_items)}")
            r, c = _rows_to_coords(e_ptr, e_idx, bu.to(e_ptr.device))
            scores[r.to(scores.device), c.to(scores.device)] = -torch.inf
            top_val, top_idx = torch.topk(scores, ktop, dim=1)
            if bool(torch.isnan(top_val).any()):  # topk ranks NaN first, so this sees any NaN
                raise ValueError("score_fn returned NaN scores")
            q = bu[:, None] * num_items + top_idx.to(device)
            pos = torch.searchsorted(t_keys, q).clamp_max_(len(t_keys) - 1)
            # a masked (-inf) slot only reaches the top K when fewer than K items remain;
            # it is never a hit, even if it is also a target
            hits = (t_keys[pos] == q) & (top_val.to(device) > -torch.inf)
            if ktop < kmax:
                hits = torch.cat([hits, hits.new_zeros(len(bu), kmax - ktop)], 1)
            per_user = ranking_metrics(hits, n_targets[bu], ks, metrics)
            for key, v in per_user.items():
                sums[key] += v.sum()
    n = len(users)
    out: dict[str, float] = {key: (float(v) / n if n else 0.0) for key, v in sums.items()}
    out["num_users"] = n
    return out


def evaluate_embeddings(user_emb: torch.Tensor, item_emb: torch.Tensor, target: sp.spmatrix,
                        exclude: Iterable[sp.spmatrix] = (), ks: Sequence[int] = (20,),
                        metrics: Sequence[str] = METRICS, block_size: int = 2048
                        ) -> dict[str, float]:
    """:func:`evaluate_ranking` with dot-product scores ``user_emb[u] @ item_emb.T``.

    Args:
        user_emb: ``[num_users, d]``; item_emb: ``[num_items, d]`` (same device).
    """
    item_t = item_emb.detach().t()
    user_emb = user_emb.detach()

    def score(u: torch.Tensor) -> torch.Tensor:
        return user_emb[u] @ item_t

    return evaluate_ranking(score, target, exclude, ks=ks, metrics=metrics,
                            block_size=block_size, device=user_emb.device)
