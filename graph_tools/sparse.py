"""Sparse graph kernels: normalized adjacency in CSR, propagation, graph dropout.

Everything here is written once and shared: LightGCN, SGL, SimGCL, XSimGCL and CPTPP's
high-order prompts all call :func:`propagate` on a :class:`SparseGraph` built by
:func:`normalized_bipartite_graph` (or its dropout variants).

Kernels. ``SparseGraph.matmul`` multiplies a CSR matrix by a dense ``[n, d]`` matrix with
autograd. On CPU it uses a parallel numba kernel when numba is importable (about 2-4x faster
than ``torch.sparse.mm`` on a CSR tensor here, see ``benchmarks/propagate_speed.py``); otherwise,
and on CUDA, it uses torch's CSR ``@`` (cuSPARSE on GPU). Both paths are tested against a dense
reference. COO ``torch.sparse.mm`` is slower still and not used.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

try:  # optional fast path; every caller works without it
    import numba as _numba
except ImportError:  # pragma: no cover - exercised when numba is absent
    _numba = None

# CPTPP_SPMM=torch forces the pure-torch kernel (used by tests and benchmarks to compare paths).
_SPMM_BACKEND = os.environ.get("CPTPP_SPMM", "auto")


def numba_available() -> bool:
    return _numba is not None


_MAX_SPECIALIZED_WIDTH = 256
_ROW_CHUNKS = 256
_spmm_kernels: dict[int, Callable] = {}


def _row_chunks(indptr: np.ndarray, parts: int = _ROW_CHUNKS) -> np.ndarray:
    """Row boundaries splitting a CSR matrix into ``parts`` runs of about equal nonzeros.

    The parallel loop runs over these chunks, not over rows: degrees are power-law, so equal row
    counts per thread leave one thread with most of the work (gowalla: 64% of the nonzeros in
    the first half of the rows). Balanced chunks made a product 1.6x faster there.
    """
    bounds = np.searchsorted(indptr, np.linspace(0, indptr[-1], parts + 1)).astype(np.int64)
    bounds[0], bounds[-1] = 0, len(indptr) - 1
    return bounds


def _numba_spmm_kernel(width: int) -> Callable:
    """The numba CSR x dense kernel compiled for feature width ``width`` (cached per width).

    With the width a compile-time constant, LLVM keeps the row accumulator in vector registers
    and unrolls the inner loop: about 2x faster than one kernel reading the width at run time
    (5.3 vs 10.3 ms per product on ml-1m, 2 threads; ``benchmarks/propagate_speed.py``). Widths
    above ``_MAX_SPECIALIZED_WIDTH`` share one generic kernel.
    """
    key = width if width <= _MAX_SPECIALIZED_WIDTH else 0
    kernel = _spmm_kernels.get(key)
    if kernel is None:
        kernel = _spmm_kernels[key] = _compile_spmm(key)
    return kernel


def _compile_spmm(width: int) -> Callable:  # pragma: no cover - compiled code
    if width:
        @_numba.njit(parallel=True, fastmath=True, cache=True)  # cached per width (closure value)
        def spmm(chunks, indptr, indices, values, x, out):
            for chunk in _numba.prange(chunks.shape[0] - 1):
                for r in range(chunks[chunk], chunks[chunk + 1]):
                    acc = np.zeros(width, x.dtype)
                    for k in range(indptr[r], indptr[r + 1]):
                        v = values[k]
                        c = indices[k]
                        for j in range(width):
                            acc[j] += v * x[c, j]
                    for j in range(width):
                        out[r, j] = acc[j]
        return spmm

    @_numba.njit(parallel=True, fastmath=True, cache=True)
    def spmm_any_width(chunks, indptr, indices, values, x, out):
        d = x.shape[1]
        for chunk in _numba.prange(chunks.shape[0] - 1):
            for r in range(chunks[chunk], chunks[chunk + 1]):
                o = out[r]
                for j in range(d):
                    o[j] = 0.0
                for k in range(indptr[r], indptr[r + 1]):
                    v = values[k]
                    xr = x[indices[k]]
                    for j in range(d):
                        o[j] += v * xr[j]
    return spmm_any_width


@dataclass(eq=False)
class SparseGraph:
    """A sparse matrix ``[n_rows, n_cols]`` in CSR, ready for repeated ``matmul`` with autograd.

    Built once per graph; the transpose (needed for the backward pass) is the matrix itself
    when ``symmetric`` and is otherwise built lazily and cached.
    """

    indptr: torch.Tensor  # [n_rows + 1] int64
    indices: torch.Tensor  # [nnz] int64
    values: torch.Tensor  # [nnz] float
    shape: tuple[int, int]
    symmetric: bool = False
    _transpose: "SparseGraph | None" = field(default=None, repr=False)
    _torch_csr: torch.Tensor | None = field(default=None, repr=False)
    _chunks: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_scipy(cls, m: sp.spmatrix, *, symmetric: bool = False, device="cpu",
                   dtype=torch.float32) -> "SparseGraph":
        m = sp.csr_matrix(m)
        m.sum_duplicates()
        m.sort_indices()
        return cls(
            indptr=torch.from_numpy(m.indptr.astype(np.int64)).to(device),
            indices=torch.from_numpy(m.indices.astype(np.int64)).to(device),
            values=torch.from_numpy(m.data).to(device=device, dtype=dtype),
            shape=(int(m.shape[0]), int(m.shape[1])),
            symmetric=symmetric,
        )

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    @property
    def device(self) -> torch.device:
        return self.values.device

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix(
            (self.values.cpu().numpy(), self.indices.cpu().numpy(), self.indptr.cpu().numpy()),
            shape=self.shape,
        )

    def to_dense(self) -> torch.Tensor:
        return torch.from_numpy(self.to_scipy().toarray()).to(self.device)

    def to(self, device) -> "SparseGraph":
        device = torch.device(device)
        if device == self.device:
            return self
        return SparseGraph(self.indptr.to(device), self.indices.to(device), self.values.to(device),
                           self.shape, self.symmetric)

    def t(self) -> "SparseGraph":
        if self.symmetric:
            return self
        if self._transpose is None:
            tr = SparseGraph.from_scipy(self.to_scipy().T, device=self.device, dtype=self.values.dtype)
            tr._transpose = self
            self._transpose = tr
        return self._transpose

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``self @ x`` for dense ``x`` of shape ``[n_cols, d]`` -> ``[n_rows, d]``, differentiable in ``x``."""
        if x.dim() != 2 or x.shape[0] != self.shape[1]:
            raise ValueError(f"matmul: expected x of shape [{self.shape[1]}, d], got {list(x.shape)}")
        return _SpMM.apply(x, self)

    __matmul__ = matmul

    def _mm(self, x: torch.Tensor) -> torch.Tensor:
        """Forward product without autograd bookkeeping."""
        x = x.contiguous()
        if x.dtype != self.values.dtype:
            raise TypeError(f"matmul: x is {x.dtype} but the graph values are {self.values.dtype}")
        if x.device.type == "cpu" and _numba is not None and _SPMM_BACKEND != "torch":
            out = torch.empty(self.shape[0], x.shape[1], dtype=x.dtype)
            if self._chunks is None:
                self._chunks = _row_chunks(self.indptr.numpy())
            _numba_spmm_kernel(x.shape[1])(self._chunks, self.indptr.numpy(), self.indices.numpy(),
                                           self.values.numpy(), x.numpy(), out.numpy())
            return out
        if self._torch_csr is None:
            with warnings.catch_warnings():  # "CSR support is in beta": we test this path ourselves
                warnings.simplefilter("ignore", UserWarning)
                self._torch_csr = torch.sparse_csr_tensor(self.indptr, self.indices, self.values,
                                                          size=self.shape, check_invariants=False)
        return self._torch_csr @ x


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, graph):
        ctx.graph = graph
        return graph._mm(x.detach())

    @staticmethod
    def backward(ctx, grad):
        return ctx.graph.t()._mm(grad), None


# --------------------------------------------------------------------------- construction

def bipartite_adjacency(pairs: np.ndarray, num_users: int, num_items: int) -> sp.csr_matrix:
    """0/1 adjacency ``[U + I, U + I]`` of the user-item graph: ``[[0, R], [R^T, 0]]``.

    ``pairs`` is ``[n, 2]`` (user, item); item ``i`` is node ``U + i``. Duplicates count once.
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    u, i = pairs[:, 0], pairs[:, 1] + num_users
    n = num_users + num_items
    a = sp.csr_matrix((np.ones(2 * len(u), dtype=np.float32), (np.r_[u, i], np.r_[i, u])), shape=(n, n))
    a.sum_duplicates()
    a.data[:] = 1.0
    return a


def sym_normalize(adj: sp.spmatrix) -> sp.csr_matrix:
    """``D^{-1/2} A D^{-1/2}`` (LightGCN eq. 7); rows/cols of isolated nodes stay zero."""
    adj = sp.csr_matrix(adj, dtype=np.float32)
    deg = np.asarray(adj.sum(axis=1), dtype=np.float64).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = deg[nz] ** -0.5
    d = sp.diags(inv_sqrt.astype(np.float32))
    out = (d @ adj @ d).tocsr()
    out.sort_indices()
    return out


def normalized_bipartite_graph(pairs: np.ndarray, num_users: int, num_items: int,
                               device="cpu") -> SparseGraph:
    """The LightGCN propagation matrix ``Â = D^{-1/2} A D^{-1/2}`` as a :class:`SparseGraph`."""
    return SparseGraph.from_scipy(sym_normalize(bipartite_adjacency(pairs, num_users, num_items)),
                                  symmetric=True, device=device)


def _rand(n: int, generator: torch.Generator | None) -> np.ndarray:
    return torch.rand(n, generator=generator).numpy()


def edge_dropout(pairs: np.ndarray, num_users: int, num_items: int, p: float,
                 generator: torch.Generator | None = None, device="cpu") -> SparseGraph:
    """SGL-ED: keep each interaction with probability ``1 - p`` and renormalize the graph."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"edge dropout p={p} must be in [0, 1)")
    pairs = np.asarray(pairs).reshape(-1, 2)
    keep = _rand(len(pairs), generator) >= p
    return normalized_bipartite_graph(pairs[keep], num_users, num_items, device)


def node_dropout(pairs: np.ndarray, num_users: int, num_items: int, p: float,
                 generator: torch.Generator | None = None, device="cpu") -> SparseGraph:
    """SGL-ND: drop each user/item node with probability ``p`` (all its edges) and renormalize."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"node dropout p={p} must be in [0, 1)")
    pairs = np.asarray(pairs).reshape(-1, 2)
    alive = _rand(num_users + num_items, generator) >= p
    keep = alive[pairs[:, 0]] & alive[num_users + pairs[:, 1]]
    return normalized_bipartite_graph(pairs[keep], num_users, num_items, device)


# --------------------------------------------------------------------------- propagation

def propagate(graph: SparseGraph | Sequence[SparseGraph], x: torch.Tensor, layers: int,
              after_layer: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Return ``[x, Â x, Â² x, ...]`` (``layers + 1`` tensors of shape ``[n, d]``).

    ``graph`` is one matrix or one per layer (SGL's random-walk variant). ``after_layer(h, l)``
    may transform layer ``l``'s output (1-based) before the next product, e.g. SimGCL's noise.
    """
    graphs = list(graph) if isinstance(graph, (list, tuple)) else [graph] * layers
    if len(graphs) != layers:
        raise ValueError(f"propagate: got {len(graphs)} per-layer graphs for {layers} layers")
    out = [x]
    h = x
    for layer, g in enumerate(graphs, start=1):
        h = g.matmul(h)
        if after_layer is not None:
            h = after_layer(h, layer)
        out.append(h)
    return out
