import http.server
import os
import threading
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


def write_ratings_csv(path: Path, users: int = 40, items: int = 60, per_user: int = 12,
                      rating: int | None = None) -> Path:
    """A headed ``user,item,rating`` CSV with letter ids: ``per_user`` distinct items per user, ratings
    1..5 at random (seed 0) or all ``rating``."""
    rng = np.random.default_rng(0)
    rows = ["user,item,rating"]
    for u in range(users):
        for i in rng.choice(items, per_user, replace=False):
            rows.append(f"u{u},i{i},{rating if rating is not None else rng.integers(1, 6)}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def ratings_csv(tmp_path) -> Path:
    """40 users x 12 items each, ratings 1..5, with a header line."""
    return write_ratings_csv(tmp_path / "ratings.csv")


@pytest.fixture
def tiny_data() -> Interactions:
    return random_interactions()


@pytest.fixture
def http_dir(tmp_path):
    """Serve ``tmp_path/srv`` on 127.0.0.1; yields (folder, base_url)."""
    root = tmp_path / "srv"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
