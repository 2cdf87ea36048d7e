"""LightGCN training-epoch and full-evaluation time: cptpp vs torch_geometric, same data, same run.

    python benchmarks/recsys_speed.py [--dataset ml-1m-implicit] [--pyg-batches 5]

Both sides train LightGCN (dim 64, 3 layers, batch 2048, Adam 1e-3, BPR + L2 1e-4) on the same
split with the same negatives. cptpp's epoch is timed whole; the PyG loop (``LightGCN`` model,
``edge_index`` message passing, ``recommendation_loss``, the straightforward way its docs show)
is timed over ``--pyg-batches`` batches and scaled to the epoch's batch count. Evaluation: cptpp's
blocked full ranking vs PyG ``get_embedding`` + one dense score matrix, dense train mask, ``topk``.
Writes ``benchmarks/results/recsys_speed.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if not os.environ.get("CPTPP_DATA_MIRROR") and (HERE.parent.parent / "shared" / "data").is_dir():
    os.environ["CPTPP_DATA_MIRROR"] = str(HERE.parent.parent / "shared" / "data")

import torch  # noqa: E402

from cptpp.io import write_json  # noqa: E402
from cptpp.recsys.datasets import load_dataset  # noqa: E402
from cptpp.recsys.sampling import bpr_batches  # noqa: E402
from cptpp.recsys.task import RecConfig, RecTask  # noqa: E402
from cptpp.train.allocator import keep_freed_memory  # noqa: E402
from cptpp.train.loop import make_optimizer  # noqa: E402


def time_cptpp_epoch(task: RecTask) -> tuple[float, int]:
    opt = make_optimizer("adam", task.model.parameters(), 1e-3, 0.0)
    batches = task.batches(1, torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    for batch in batches:
        loss = task.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, len(batches)


def time_pyg_batches(task: RecTask, n_batches: int) -> float:
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    U, I = task.num_users, task.num_items
    pairs = task.train_pairs
    edge_index = torch.stack([torch.cat([pairs[:, 0], pairs[:, 1] + U]),
                              torch.cat([pairs[:, 1] + U, pairs[:, 0]])])
    model = PygLightGCN(U + I, embedding_dim=64, num_layers=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    it = bpr_batches(task.train_pairs, 2048, task.sampler, torch.Generator().manual_seed(0))
    times = []
    for _ in range(n_batches + 1):  # the first batch warms up
        users, pos, neg = next(it)
        t0 = time.perf_counter()
        label_index = torch.stack([torch.cat([users, users]), torch.cat([pos, neg]) + U])
        rank = model(edge_index, label_index)
        pos_rank, neg_rank = rank.chunk(2)
        loss = model.recommendation_loss(pos_rank, neg_rank, node_id=torch.cat([users, pos + U, neg + U]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sum(times[1:]) / n_batches, model, edge_index


def time_pyg_eval(model, edge_index, task: RecTask) -> float:
    U = task.num_users
    train = torch.from_numpy(task.data.csr("train").toarray() > 0)
    t0 = time.perf_counter()
    with torch.no_grad():
        emb = model.get_embedding(edge_index)
        scores = emb[:U] @ emb[U:].t()
        scores[train] = -torch.inf
        torch.topk(scores, 20, dim=1)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="ml-1m-implicit")
    ap.add_argument("--pyg-batches", type=int, default=5)
    ap.add_argument("--out", default=str(HERE / "results" / "recsys_speed.json"))
    args = ap.parse_args(argv)
    keep_freed_memory()  # process-wide: both sides get it

    data = load_dataset(args.dataset, progress=False)
    torch.manual_seed(0)
    task = RecTask(data, RecConfig(recommender="lightgcn", layers=3, dim=64, batch_size=2048, ks=[20]))
    task.evaluate("valid")  # warm-up (numba compile, caches)
    epoch_s, n_batches = time_cptpp_epoch(task)
    t0 = time.perf_counter()
    valid = task.evaluate("valid")
    eval_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    task.evaluate("test")
    eval_test_s = time.perf_counter() - t0

    pyg_batch_s, model, edge_index = time_pyg_batches(task, args.pyg_batches)
    pyg_eval_s = time_pyg_eval(model, edge_index, task)
    pyg_epoch_s = pyg_batch_s * n_batches
    res = {
        "dataset": args.dataset, "users": data.num_users, "items": data.num_items,
        "train_pairs": int(len(data.train)), "batches_per_epoch": n_batches, "threads": torch.get_num_threads(),
        "cptpp": {"epoch_seconds": epoch_s, "batch_seconds": epoch_s / n_batches,
                  "eval_valid_seconds": eval_s, "eval_test_seconds": eval_test_s,
                  "valid_recall@20_after_1_epoch": valid["recall@20"]},
        "torch_geometric": {"batch_seconds": pyg_batch_s, "epoch_seconds_extrapolated": pyg_epoch_s,
                            "batches_timed": args.pyg_batches, "eval_seconds": pyg_eval_s},
        "speedup_epoch": pyg_epoch_s / epoch_s,
        "speedup_eval": pyg_eval_s / eval_s,
    }
    write_json(args.out, res)
    print(f"{args.dataset}: {data.num_users} users, {data.num_items} items, {len(data.train)} train pairs, "
          f"{n_batches} batches of 2048")
    print(f"train epoch : cptpp {epoch_s:8.2f} s | torch_geometric {pyg_epoch_s:8.2f} s "
          f"({pyg_batch_s:.3f} s/batch x {n_batches}) | ratio {res['speedup_epoch']:.1f}x")
    print(f"full eval   : cptpp {eval_s:8.3f} s | torch_geometric {pyg_eval_s:8.3f} s | ratio {res['speedup_eval']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
