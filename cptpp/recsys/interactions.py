"""The in-memory form of an implicit-feedback dataset that every recsys component consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass
class Interactions:
    """Implicit feedback split into train / valid / test.

    Each split is an int64 array ``[n, 2]`` of (user, item) pairs with ids in
    ``[0, num_users)`` x ``[0, num_items)``; pairs are unique within a split and splits are
    disjoint. ``raw_user_ids`` / ``raw_item_ids`` map contiguous ids back to the file's ids.
    """

    name: str
    num_users: int
    num_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    raw_user_ids: np.ndarray | None = None
    raw_item_ids: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    rating_threshold: float | str | None = None  # applied when loading: rating >= it; "all"; None: no ratings

    def __post_init__(self):
        for split in ("train", "valid", "test"):
            arr = np.asarray(getattr(self, split), dtype=np.int64).reshape(-1, 2)
            if len(arr) and (arr[:, 0].min() < 0 or arr[:, 0].max() >= self.num_users
                             or arr[:, 1].min() < 0 or arr[:, 1].max() >= self.num_items):
                raise ValueError(f"{self.name}: {split} has ids outside [0, num_users) x [0, num_items)")
            setattr(self, split, arr)

    def csr(self, split: str = "train") -> sp.csr_matrix:
        """User x item 0/1 matrix of one split, ``[num_users, num_items]``, sorted indices."""
        pairs = getattr(self, split)
        m = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])),
            shape=(self.num_users, self.num_items),
        )
        m.sum_duplicates()
        m.sort_indices()
        return m

    def stats(self) -> dict[str, float]:
        n = len(self.train) + len(self.valid) + len(self.test)
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": n,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "density": n / max(1, self.num_users * self.num_items),
        }
