"""CPTPP's personalized user prompts (Yang et al., NeurIPS 2023, Sec. 3.2).

A user profile (one of three, all ``[num_users, d]``) goes through a prompt generator (tanh MLP)
and is fused with the frozen pre-trained user embedding:

* **historical** (H):       ``P = R E_item`` — the sum of the user's interacted item embeddings;
* **factorization** (M):    ``R ≈ W H`` non-negative, ``P = W`` (``k = d`` components);
* **high_order** (R):       ``P = [mean_{k=0..L} Â^k [E_user; E_item]]_users``.

``E_user``/``E_item`` are the encoder's output (layer-mean) embeddings, as in the reference code.
Nothing here builds a dense ``R``: profiles use the CSR kernels in :mod:`graph_tools.sparse`.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from graph_tools.sparse import SparseGraph, propagate

from cptpp.recsys.config import FUSIONS, PROMPTS  # noqa: F401


def interaction_graph(train_csr: sp.spmatrix, device="cpu") -> SparseGraph:
    """The 0/1 user x item matrix ``R`` as a (non-symmetric) :class:`SparseGraph`."""
    r = sp.csr_matrix(train_csr, dtype=np.float32)
    r.data[:] = 1.0
    return SparseGraph.from_scipy(r, device=device)


def historical_profile(r: SparseGraph, item_emb: torch.Tensor) -> torch.Tensor:
    """H profile ``R E_item``: ``[U, I] x [I, d] -> [U, d]``."""
    return r.matmul(item_emb)


def high_order_profile(adj: SparseGraph, user_emb: torch.Tensor, item_emb: torch.Tensor,
                       layers: int) -> torch.Tensor:
    """R profile: user rows of ``mean_{k=0..L} Â^k [E_user; E_item]`` -> ``[U, d]``."""
    x = torch.cat([user_emb, item_emb], 0)
    mean = torch.stack(propagate(adj, x, layers), 0).mean(0)
    return mean[: user_emb.shape[0]]


def nmf(r: SparseGraph, k: int, iters: int = 200, seed: int = 0, eps: float = 1e-10,
        ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Non-negative factorization ``R ≈ W H`` by Lee-Seung multiplicative updates (Frobenius loss).

    ``W <- W ⊙ (R Hᵀ) / (W H Hᵀ)``, ``H <- H ⊙ (Wᵀ R) / (Wᵀ W H)``; ``R`` stays sparse (the
    products with it are CSR x dense), so memory is ``O(nnz + (U + I) k)``. Initialization is
    uniform in ``[0, sqrt(mean(R) / k))`` as scikit-learn's ``init="random"``.

    Returns ``W [U, k]``, ``H [k, I]`` and the loss ``||R - WH||_F^2`` after each iteration
    (computed without densifying ``R``: ``||R||² - 2<R, WH> + ||WH||²``).
    """
    n_users, n_items = r.shape
    gen = torch.Generator().manual_seed(seed)
    values = r.values.double()
    scale = float(np.sqrt(float(values.sum()) / (n_users * n_items) / k))
    w = (torch.rand(n_users, k, generator=gen, dtype=torch.float64) * scale).to(r.device)
    h = (torch.rand(k, n_items, generator=gen, dtype=torch.float64) * scale).to(r.device)
    r64 = SparseGraph(r.indptr, r.indices, values, r.shape)
    r_sq = float((values ** 2).sum())
    losses = []
    for _ in range(iters):
        rht = r64.matmul(h.t().contiguous())                 # [U, k]
        w = w * rht / (w @ (h @ h.t()) + eps)
        wtr = r64.t().matmul(w).t()                           # [k, I]
        h = h * wtr / ((w.t() @ w) @ h + eps)
        cross = float((r64.matmul(h.t().contiguous()) * w).sum())   # <R, WH>
        gram = float(((w.t() @ w) * (h @ h.t())).sum())               # ||WH||^2
        losses.append(r_sq - 2 * cross + gram)
    return w.float(), h.float(), losses


class PromptGenerator(nn.Module):
    """Tanh MLP ``d -> hidden -> hidden`` (the reference code's prompt generator), plus a final
    ``hidden -> out_dim`` tanh layer when ``out_dim`` is given (needed by additive fusion)."""

    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int | None = None):
        super().__init__()
        dims = [in_dim, hidden, hidden] + ([out_dim] if out_dim else [])
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out_dim = dims[-1]

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        x = profile
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class ConcatFusion(nn.Module):
    """``tanh(W2 tanh(W1 [prompt; user]))``: ``[b, p] + [b, d] -> [b, d]`` (reference Fusion_MLP)."""

    def __init__(self, prompt_dim: int, dim: int):
        super().__init__()
        self.l1 = nn.Linear(prompt_dim + dim, dim)
        self.l2 = nn.Linear(dim, dim)

    def forward(self, prompt: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.l2(torch.tanh(self.l1(torch.cat([prompt, user], -1)))))


class AddFusion(nn.Module):
    """``user + prompt`` (prompt already ``[b, d]``); no parameters."""

    def forward(self, prompt: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        return user + prompt


def make_fusion(kind: str, prompt_dim: int, dim: int) -> nn.Module:
    if kind == "concat_mlp":
        return ConcatFusion(prompt_dim, dim)
    if kind == "add":
        return AddFusion()
    raise ValueError(f"fusion={kind!r}; choose one of: {', '.join(FUSIONS)}")
