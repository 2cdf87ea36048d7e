"""graph_tools.sparse against dense references."""
import numpy as np
import pytest
import torch

import graph_tools.sparse as gs


def _pairs(rng, num_users=7, num_items=9, n=25):
    u = rng.integers(0, num_users, n)
    i = rng.integers(0, num_items, n)
    return np.unique(np.stack([u, i], 1), axis=0)


def dense_normalized(pairs, num_users, num_items):
    n = num_users + num_items
    a = np.zeros((n, n))
    for u, i in pairs:
        a[u, num_users + i] = a[num_users + i, u] = 1
    deg = a.sum(1)
    inv = np.where(deg > 0, deg, 1) ** -0.5 * (deg > 0)
    return inv[:, None] * a * inv[None, :]


def test_normalized_adjacency_matches_dense():
    rng = np.random.default_rng(0)
    pairs = _pairs(rng)
    g = gs.normalized_bipartite_graph(pairs, 7, 9)
    np.testing.assert_allclose(g.to_dense().numpy(), dense_normalized(pairs, 7, 9), atol=1e-6)
    assert g.symmetric


def test_hand_worked_normalization():
    # user0-item0, user0-item1, user1-item1: degrees u0=2, u1=1, i0=1, i1=2
    g = gs.normalized_bipartite_graph(np.array([[0, 0], [0, 1], [1, 1]]), 2, 2)
    d = g.to_dense().numpy()
    assert d[0, 2] == pytest.approx(1 / np.sqrt(2 * 1))
    assert d[0, 3] == pytest.approx(1 / np.sqrt(2 * 2))
    assert d[1, 3] == pytest.approx(1 / np.sqrt(1 * 2))
    assert d[1, 2] == 0 and d[0, 1] == 0


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_propagate_and_gradient_match_dense(backend, monkeypatch):
    if backend == "numba" and not gs.numba_available():
        pytest.skip("numba not installed")
    monkeypatch.setattr(gs, "_SPMM_BACKEND", "torch" if backend == "torch" else "auto")
    rng = np.random.default_rng(1)
    pairs = _pairs(rng)
    g = gs.normalized_bipartite_graph(pairs, 7, 9)
    dense = torch.tensor(dense_normalized(pairs, 7, 9), dtype=torch.float64)
    x = torch.randn(16, 5, dtype=torch.float64)
    g64 = gs.SparseGraph(g.indptr, g.indices, g.values.double(), g.shape, symmetric=True)
    xs = x.clone().requires_grad_()
    outs = gs.propagate(g64, xs, 3)
    xd = x.clone().requires_grad_()
    ref = [xd]
    for _ in range(3):
        ref.append(dense @ ref[-1])
    for a, b in zip(outs, ref):
        torch.testing.assert_close(a, b)
    w = torch.randn(16, 5, dtype=torch.float64)
    (torch.stack(outs).mean(0) * w).sum().backward()
    (torch.stack(ref).mean(0) * w).sum().backward()
    torch.testing.assert_close(xs.grad, xd.grad)


@pytest.mark.parametrize("width", [1, 64, gs._MAX_SPECIALIZED_WIDTH + 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_kernel_every_width_matches_dense(width, dtype):
    """Widths up to the limit get a kernel compiled for that width; wider ones share a generic one."""
    if not gs.numba_available():
        pytest.skip("numba not installed")
    import scipy.sparse as sp
    m = sp.random(40, 30, density=0.2, random_state=width, format="csr", dtype=np.float64)
    g = gs.SparseGraph.from_scipy(m, dtype=dtype)
    x = torch.randn(30, width, dtype=dtype)
    torch.testing.assert_close(g.matmul(x), torch.from_numpy(m.toarray()).to(dtype) @ x)


def test_row_chunks_balance_nonzeros_and_cover_every_row():
    indptr = np.array([0, 90, 91, 92, 100, 100, 130])  # one heavy row, an empty row
    b = gs._row_chunks(indptr, parts=4)
    assert b[0] == 0 and b[-1] == 6 and np.all(np.diff(b) >= 0)
    # targets 0, 32.5, 65, 97.5, 130 nonzeros: the heavy row 0 is a chunk of its own, the next is empty
    assert list(b) == [0, 1, 1, 4, 6]


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_non_symmetric_matmul_uses_transpose_in_backward(backend, monkeypatch):
    if backend == "numba" and not gs.numba_available():
        pytest.skip("numba not installed")
    monkeypatch.setattr(gs, "_SPMM_BACKEND", "torch" if backend == "torch" else "auto")
    import scipy.sparse as sp
    m = sp.random(6, 4, density=0.5, random_state=3, format="csr", dtype=np.float32)
    g = gs.SparseGraph.from_scipy(m)
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(6, 3)
    (g.matmul(x) * w).sum().backward()
    dense = torch.from_numpy(m.toarray())
    torch.testing.assert_close(g.matmul(x.detach()), dense @ x.detach())
    torch.testing.assert_close(x.grad, dense.T @ w)


def test_numba_and_torch_kernels_agree(monkeypatch):
    if not gs.numba_available():
        pytest.skip("numba not installed")
    rng = np.random.default_rng(2)
    g = gs.normalized_bipartite_graph(_pairs(rng, 50, 80, 600), 50, 80)
    x = torch.randn(130, 16)
    a = g.matmul(x)
    monkeypatch.setattr(gs, "_SPMM_BACKEND", "torch")
    torch.testing.assert_close(a, g.matmul(x))


def test_per_layer_graphs_and_after_layer_hook():
    rng = np.random.default_rng(4)
    pairs = _pairs(rng)
    g1 = gs.normalized_bipartite_graph(pairs[:10], 7, 9)
    g2 = gs.normalized_bipartite_graph(pairs[5:], 7, 9)
    x = torch.randn(16, 3)
    out = gs.propagate([g1, g2], x, 2, after_layer=lambda h, l: h + l)
    e1 = g1.to_dense() @ x + 1
    torch.testing.assert_close(out[1], e1)
    torch.testing.assert_close(out[2], g2.to_dense() @ e1 + 2)
    with pytest.raises(ValueError, match="per-layer"):
        gs.propagate([g1], x, 2)


def test_edge_dropout_keeps_subset_and_renormalizes():
    rng = np.random.default_rng(5)
    pairs = _pairs(rng, 20, 30, 200)
    gen = torch.Generator().manual_seed(0)
    g = gs.edge_dropout(pairs, 20, 30, 0.5, gen)
    full = gs.bipartite_adjacency(pairs, 20, 30).toarray()
    kept = (g.to_dense().numpy() > 0)
    assert kept.sum() < full.sum() and not (kept & (full == 0)).any()
    assert (kept == kept.T).all()
    # the kept graph is normalized by its own degrees
    np.testing.assert_allclose(g.to_dense().numpy(), dense_normalized(
        np.argwhere(kept[:20, 20:]), 20, 30), atol=1e-6)
    # same generator seed -> same graph
    g_again = gs.edge_dropout(pairs, 20, 30, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(g.indices, g_again.indices)


def test_node_dropout_removes_all_edges_of_dropped_nodes():
    rng = np.random.default_rng(6)
    pairs = _pairs(rng, 20, 30, 200)
    g = gs.node_dropout(pairs, 20, 30, 0.3, torch.Generator().manual_seed(1))
    d = g.to_dense().numpy()
    deg_full = gs.bipartite_adjacency(pairs, 20, 30).toarray().sum(1)
    deg_kept = (d > 0).sum(1)
    dropped = (deg_kept == 0) & (deg_full > 0)
    assert dropped.any()
    # any pair between two surviving nodes survives
    for u, i in pairs:
        if not dropped[u] and not dropped[20 + i]:
            assert d[u, 20 + i] > 0
