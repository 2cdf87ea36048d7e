"""Full-ranking evaluation and BPR sampling speed on MovieLens-1M (implicit).

Usage: ``python benchmarks/eval_speed.py [--dim 64] [--block-size 2048] [--repeats 5]``

Times :func:`cptpp.recsys.evaluation.evaluate_embeddings` over every ml-1m user with random
embeddings against a naive per-user numpy loop (mask, full ``argsort``) measured in the same
run, checks that both give the same numbers, and times one epoch of :func:`bpr_batches`.

Data: ``cptpp.recsys.datasets.load_dataset("ml-1m-implicit")`` when that module exists;
otherwise the ReSN 80/20 split files from ``$CPTPP_DATA_MIRROR/recsys/ml-1m-resn-split``
(default ``../shared/data`` next to the checkout), read here directly.
"""
from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from cptpp.recsys.evaluation import evaluate_embeddings
from cptpp.recsys.interactions import Interactions
from cptpp.recsys.sampling import NegativeSampler, bpr_batches, num_bpr_batches


def read_lightgcn_file(path: Path) -> np.ndarray:
    """``user item item ...`` per line -> int64 ``[n, 2]`` pairs."""
    pairs = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            try:
                ids = np.array(parts, dtype=np.int64)
            except ValueError as e:
                raise ValueError(f"{path}:{lineno}: not integers: {line[:60]!r}") from e
            pairs.append(np.stack([np.full(len(ids) - 1, ids[0]), ids[1:]], 1))
    return np.concatenate(pairs)


def load_ml1m() -> tuple[Interactions, str]:
    # same default mirror as the Makefile: ../shared/data beside the checkout, when present
    beside = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if "CPTPP_DATA_MIRROR" not in os.environ and beside.is_dir():
        os.environ["CPTPP_DATA_MIRROR"] = str(beside)
    try:
        from cptpp.recsys.datasets import load_dataset
    except ImportError:  # the dataset loader is optional here; read the split files directly
        load_dataset = None
    if load_dataset is not None:
        return load_dataset("ml-1m-implicit"), "cptpp.recsys.datasets ml-1m-implicit"
    root = Path(os.environ.get("CPTPP_DATA_MIRROR", beside)) / "recsys" / "ml-1m-resn-split"
    train, test = read_lightgcn_file(root / "train.txt"), read_lightgcn_file(root / "test.txt")
    both = np.concatenate([train, test])
    inter = Interactions("ml-1m-resn-split", int(both[:, 0].max()) + 1, int(both[:, 1].max()) + 1,
                         train, np.zeros((0, 2), np.int64), test)
    return inter, str(root)


def naive_eval(user_emb: np.ndarray, item_emb: np.ndarray, target, exclude, k: int):
    """Reference: one user at a time, mask, full argsort. Returns mean recall@k, ndcg@k."""
    recall, ndcg = [], []
    disc = 1.0 / np.log2(np.arange(k) + 2)
    for u in range(target.shape[0]):
        t = target.indices[target.indptr[u]:target.indptr[u + 1]]
        if len(t) == 0:
            continue
        s = item_emb @ user_emb[u]
        for e in exclude:
            s[e.indices[e.indptr[u]:e.indptr[u + 1]]] = -np.inf
        top = np.argsort(-s)[:k]
        hit = np.isin(top, t)
        recall.append(hit.sum() / len(t))
        ndcg.append((hit * disc).sum() / disc[:min(len(t), k)].sum())
    return float(np.mean(recall)), float(np.mean(ndcg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--block-size", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    inter, source = load_ml1m()
    train, test = inter.csr("train"), inter.csr("test")
    exclude = [train] + ([inter.csr("valid")] if len(inter.valid) else [])
    print(f"data: {source}  users={inter.num_users} items={inter.num_items} "
          f"train={len(inter.train)} test={len(inter.test)}  torch threads={torch.get_num_threads()}")

    g = torch.Generator().manual_seed(0)
    ue = torch.randn(inter.num_users, args.dim, generator=g)
    ie = torch.randn(inter.num_items, args.dim, generator=g)

    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = evaluate_embeddings(ue, ie, test, exclude, ks=(20,), block_size=args.block_size)
        times.append(time.perf_counter() - t0)
    t_vec = min(times)

    t0 = time.perf_counter()
    ref_recall, ref_ndcg = naive_eval(ue.numpy(), ie.numpy(), test, exclude, 20)
    t_naive = time.perf_counter() - t0
    agree = math.isclose(res["recall@20"], ref_recall, abs_tol=1e-9) and \
        math.isclose(res["ndcg@20"], ref_ndcg, abs_tol=1e-9)

    print(f"full-ranking eval, {res['num_users']} users x {inter.num_items} items, d={args.dim}, "
          f"5 metrics @20, block {args.block_size}:")
    print(f"  vectorized   {t_vec * 1e3:8.1f} ms  (best of {args.repeats}: "
          f"{', '.join(f'{t * 1e3:.0f}' for t in times)} ms)")
    print(f"  naive loop   {t_naive * 1e3:8.1f} ms  (numpy, per user, full argsort, 2 metrics)")
    print(f"  speedup      {t_naive / t_vec:8.1f}x")
    print(f"  recall@20 {res['recall@20']:.6f} vs {ref_recall:.6f}, ndcg@20 {res['ndcg@20']:.6f} "
          f"vs {ref_ndcg:.6f}  -> {'agree' if agree else 'DISAGREE'}")

    t0 = time.perf_counter()
    sampler = NegativeSampler(inter.train, inter.num_users, inter.num_items)
    t_build = time.perf_counter() - t0
    pairs = torch.from_numpy(inter.train)
    t0 = time.perf_counter()
    n_batches = 0
    for users, pos, neg in bpr_batches(pairs, args.batch_size, sampler,
                                       torch.Generator().manual_seed(1)):
        n_batches += 1
    t_epoch = time.perf_counter() - t0
    assert n_batches == num_bpr_batches(len(pairs), args.batch_size)
    print(f"BPR sampling: build {t_build * 1e3:.1f} ms; one epoch of {len(pairs)} pairs, "
          f"{n_batches} batches of {args.batch_size}: {t_epoch * 1e3:.1f} ms "
          f"({len(pairs) / t_epoch / 1e6:.2f} M triples/s)")
    if not agree:
        raise SystemExit("vectorized and naive evaluation disagree")


if __name__ == "__main__":
    main()
