import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cptpp.recsys.interactions import Interactions

torch.set_num_threads(1)


def mirror_dir(area: str, name: str) -> Path | None:
    """The mirrored dataset folder, or None when $CPTPP_DATA_MIRROR does not hold it."""
    root = os.environ.get("CPTPP_DATA_MIRROR")
    path = Path(root) / area / name if root else None
    return path if path is not None and path.is_dir() else None


def random_interactions(num_users=30, num_items=40, per_user=8, seed=0, name="synthetic") -> Interactions:
    """Every user gets ``per_user`` distinct items: 6 train, 1 valid, 1 test."""
    rng = np.random.default_rng(seed)
    splits = {"train": [], "valid": [], "test": []}
    for u in range(num_users):
        items = rng.choice(num_items, per_user, replace=False)
        splits["train"] += [(u, i) for i in items[:-2]]
        splits["valid"].append((u, items[-2]))
        splits["test"].append((u, items[-1]))
    return Interactions(name, num_users, num_items, **{k: np.array(v) for k, v in splits.items()})


@pytest.fixture
def tiny_data() -> Interactions:
    return random_interactions()
