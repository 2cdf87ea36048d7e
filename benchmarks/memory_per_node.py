"""Peak RSS of three LightGCN training steps (dim 64, 3 layers, Adam; no evaluation) on a dataset.

    python benchmarks/memory_per_node.py gowalla

Prints the RSS growth from building the model and training, per user/item node; run it on two
datasets and fit ``a * nodes + b * pairs`` (docs/scaling.md does this).
"""
from __future__ import annotations

import gc
import json
import os
import resource
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if not os.environ.get("CPTPP_DATA_MIRROR") and (HERE.parent.parent / "shared" / "data").is_dir():
    os.environ["CPTPP_DATA_MIRROR"] = str(HERE.parent.parent / "shared" / "data")

import torch  # noqa: E402

from cptpp.recsys.datasets import load_dataset  # noqa: E402
from cptpp.recsys.task import RecConfig, RecTask  # noqa: E402
from cptpp.train.loop import make_optimizer  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(name: str) -> dict:
    data = load_dataset(name, progress=False)
    gc.collect()
    base = peak_mb()
    task = RecTask(data, RecConfig(recommender="lightgcn", layers=3, dim=64))
    opt = make_optimizer("adam", task.model.parameters(), 1e-3, 0.0)
    it = iter(task.batches(1, torch.Generator().manual_seed(0)))
    for _ in range(3):
        loss = task.loss(next(it))
        opt.zero_grad()
        loss.backward()
        opt.step()
    nodes = data.num_users + data.num_items
    delta = peak_mb() - base
    return {"dataset": name, "nodes": nodes, "train_pairs": int(len(data.train)), "rss_before_model_MB": base,
            "rss_growth_MB": delta, "bytes_per_node_if_all_node_state": delta * 2**20 / nodes}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "ml-1m-implicit")))
