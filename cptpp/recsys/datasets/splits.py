"""Pure, vectorized steps from raw pairs to a train / valid / test split.

All functions take int64 ``[n, 2]`` (user, item) arrays with non-negative ids and never loop in
Python over interactions. Randomness comes only from ``np.random.default_rng(seed)`` and pairs
are put in canonical (user, item) order first, so a result depends only on the set of pairs
and the seed, not on file order.
"""
from __future__ import annotations

import numpy as np


def pair_keys(pairs: np.ndarray, num_items: int) -> np.ndarray:
    """One int64 key per pair, ``user * num_items + item`` ``[n]``."""
    return pairs[:, 0] * np.int64(num_items) + pairs[:, 1]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values of an int array, ascending (plain sort: faster than ``np.unique`` here)."""
    v = np.sort(values)
    return v[np.concatenate(([True], v[1:] != v[:-1]))] if len(v) else v


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct pairs in (user, item) order ``[m, 2]``."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) == 0:
        return pairs
    n_items = int(pairs[:, 1].max()) + 1
    keys = sorted_unique(pair_keys(pairs, n_items))
    return np.stack([keys // n_items, keys % n_items], axis=1)


def remove_pairs(pairs: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """``pairs`` minus any pair also in ``drop`` (order kept)."""
    if len(pairs) == 0 or len(drop) == 0:
        return pairs
    n_items = int(max(pairs[:, 1].max(), drop[:, 1].max())) + 1
    table = sorted_unique(pair_keys(drop, n_items))
    keys = pair_keys(pairs, n_items)
    pos = np.minimum(np.searchsorted(table, keys), len(table) - 1)
    return pairs[table[pos] != keys]


def kcore_mask(pairs: np.ndarray, k: int) -> np.ndarray:
    """Keep-mask ``[n]`` of the k-core: iteratively drop users and items with < k interactions.

    Terminates because each round removes at least one pair or stops; the result is the unique
    maximal subgraph where every remaining user and item has >= k interactions.
    """
    keep = np.ones(len(pairs), dtype=bool)
    if k <= 1 or len(pairs) == 0:
        return keep
    nu, ni = int(pairs[:, 0].max()) + 1, int(pairs[:, 1].max()) + 1
    while True:
        ucount = np.bincount(pairs[keep, 0], minlength=nu)
        icount = np.bincount(pairs[keep, 1], minlength=ni)
        new_keep = keep & (ucount[pairs[:, 0]] >= k) & (icount[pairs[:, 1]] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep


def rank_within_user(users: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random order of each user's pairs: ``rank[j]`` in ``[0, n_u)`` and ``n_u`` per pair, both ``[n]``."""
    n = len(users)
    # A random permutation, then a stable sort by user: each user's pairs in random order.
    perm = rng.permutation(n)
    order = perm[np.argsort(users[perm], kind="stable")]
    sorted_users = users[order]
    group_start = np.concatenate(([True], sorted_users[1:] != sorted_users[:-1]))
    start_idx = np.maximum.accumulate(np.where(group_start, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - start_idx
    counts = np.bincount(users) if n else np.zeros(0, np.int64)
    return rank, counts[users]


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5 + 1e-9).astype(np.int64)


def random_split(pairs: np.ndarray, ratios=(0.8, 0.1, 0.1), seed: int = 0):
    """Per-user random split into (train, valid, test) ``[*, 2]`` arrays.

    For a user with ``n`` pairs: ``round(n * ratios[2])`` go to test and ``round(n * ratios[1])``
    to valid (rounded half up), the rest to train; test, then valid, shrink so that train keeps
    at least one pair. So a user with 1-2 pairs is train-only under 80/10/10.
    """
    pairs = unique_pairs(pairs)
    rng = np.random.default_rng(seed)
    rank, n_u = rank_within_user(pairs[:, 0], rng)
    n_test = _round_half_up(n_u * ratios[2])
    n_valid = _round_half_up(n_u * ratios[1])
    n_test = np.minimum(n_test, n_u - 1)
    n_valid = np.minimum(n_valid, n_u - 1 - n_test)
    test = rank < n_test
    valid = ~test & (rank < n_test + n_valid)
    train = ~test & ~valid
    return pairs[train], pairs[valid], pairs[test]


def carve_valid(train: np.ndarray, valid_ratio: float = 0.1, seed: int = 0):
    """Move ``round(n_u * valid_ratio)`` random train pairs of each user to valid; train keeps >= 1.

    Returns (train, valid), both in (user, item) order.
    """
    train = unique_pairs(train)
    rng = np.random.default_rng(seed)
    rank, n_u = rank_within_user(train[:, 0], rng)
    n_valid = np.minimum(_round_half_up(n_u * valid_ratio), n_u - 1)
    to_valid = rank < n_valid
    return train[~to_valid], train[to_valid]


def compact(*splits: np.ndarray, num_users: int, num_items: int):
    """Renumber ids so that only ids used by some split remain, in increasing order.

    Returns (new_splits, kept_users ``[U']``, kept_items ``[I']``): ``kept_*[new_id] = old_id``.
    """
    used_u = np.zeros(num_users, dtype=bool)
    used_i = np.zeros(num_items, dtype=bool)
    for s in splits:
        used_u[s[:, 0]] = True
        used_i[s[:, 1]] = True
    kept_u, kept_i = np.flatnonzero(used_u), np.flatnonzero(used_i)
    new_u = np.cumsum(used_u) - 1
    new_i = np.cumsum(used_i) - 1
    out = tuple(np.stack([new_u[s[:, 0]], new_i[s[:, 1]]], axis=1).astype(np.int64) if len(s)
                else np.zeros((0, 2), np.int64) for s in splits)
    return out, kept_u, kept_i
