"""Full-batch LightGCN propagation speed and achieved memory bandwidth, against references in the same run.

    python benchmarks/propagate_speed.py [--dataset gowalla] [--dim 64] [--layers 3] [--repeats 10]

On the largest mirrored graph (gowalla's train split: 70,839 nodes, 1.62 M nonzeros) it times
``graph_tools.sparse.propagate`` (numba kernel), the same call forced onto torch's CSR ``@``,
torch COO ``sparse.mm`` and torch_geometric's ``LGConv`` message passing; measures this machine's
memory bandwidth with a large numpy copy in the same process; and reports the fraction of it
that propagation reaches under a minimal-traffic model per layer: the CSR arrays once
(values 4 B + column index 8 B per nonzero, row pointer 8 B per row) plus reading ``x`` and
writing the output once (``2 * n * dim * 4`` B). Writes ``benchmarks/results/propagate_speed.json``.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

import graph_tools.sparse as gs  # noqa: E402
from cptpp.io import write_json  # noqa: E402
from cptpp.recsys.datasets import load_dataset  # noqa: E402
from cptpp.train.allocator import keep_freed_memory  # noqa: E402


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up (JIT, caches, first-touch pages)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def copy_bandwidth(nbytes: int = 1 << 29, repeats: int = 5) -> float:
    """Bytes/s of ``np.copyto`` between two pre-touched buffers (read + write counted)."""
    a = np.ones(nbytes // 4, dtype=np.float32)
    b = np.zeros_like(a)
    return 2 * a.nbytes / best_of(lambda: np.copyto(b, a), repeats)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=str(HERE / "results" / "propagate_speed.json"))
    args = ap.parse_args(argv)
    keep_freed_memory()

    data = load_dataset(args.dataset, progress=False)
    n = data.num_users + data.num_items
    # the published train split (our validation pairs are carved from it)
    pairs = np.concatenate([data.train, data.valid])
    graph = gs.normalized_bipartite_graph(pairs, data.num_users, data.num_items)
    x = torch.randn(n, args.dim)
    bytes_per_layer = graph.nnz * (4 + 8) + (n + 1) * 8 + 2 * n * args.dim * 4

    res = {"dataset": args.dataset, "nodes": n, "nnz": graph.nnz, "dim": args.dim, "layers": args.layers,
           "threads": torch.get_num_threads(), "bytes_per_layer": bytes_per_layer, "seconds": {}}
    ref = None
    for name in ("numba", "torch_csr"):
        if name == "numba" and not gs.numba_available():
            continue
        gs._SPMM_BACKEND = "auto" if name == "numba" else "torch"
        with torch.no_grad():
            res["seconds"][name] = best_of(lambda: gs.propagate(graph, x, args.layers), args.repeats)
            out = gs.propagate(graph, x, args.layers)[-1]
        ref = out if ref is None else ref
        assert torch.allclose(out, ref, atol=1e-4), f"{name} disagrees with the first kernel"
    gs._SPMM_BACKEND = "auto"

    coo = torch.sparse_coo_tensor(torch.stack([
        torch.repeat_interleave(torch.arange(n), graph.indptr[1:] - graph.indptr[:-1]), graph.indices]),
        graph.values, graph.shape, check_invariants=False).coalesce()

    def coo_prop():
        h = x
        for _ in range(args.layers):
            h = torch.sparse.mm(coo, h)
        return h

    res["seconds"]["torch_coo"] = best_of(coo_prop, max(2, args.repeats // 3))
    try:
        from torch_geometric.nn import LGConv

        conv = LGConv(normalize=False)
        edge_index = coo.indices()
        weight = coo.values()

        def pyg_prop():
            h = x
            for _ in range(args.layers):
                h = conv(h, edge_index, weight)
            return h

        with torch.no_grad():
            res["seconds"]["torch_geometric_lgconv"] = best_of(pyg_prop, max(2, args.repeats // 3))
    except ImportError:
        pass

    bw = copy_bandwidth()
    res["copy_bandwidth_GBps"] = bw / 1e9
    best = min(v for k, v in res["seconds"].items() if k in ("numba", "torch_csr"))
    res["propagate_bandwidth_GBps"] = bytes_per_layer * args.layers / best / 1e9
    res["fraction_of_copy_bandwidth"] = res["propagate_bandwidth_GBps"] * 1e9 / bw
    write_json(args.out, res)
    print(f"{args.dataset}: {n} nodes, {graph.nnz} nonzeros, dim {args.dim}, {args.layers} layers, "
          f"{torch.get_num_threads()} threads")
    for k, v in res["seconds"].items():
        print(f"  {k:24s} {v * 1000:9.1f} ms   ({v / best:.1f}x the fastest)")
    print(f"  memory bandwidth (numpy copy): {res['copy_bandwidth_GBps']:.1f} GB/s; propagation moves "
          f"{res['propagate_bandwidth_GBps']:.1f} GB/s = {100 * res['fraction_of_copy_bandwidth']:.0f}% of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
