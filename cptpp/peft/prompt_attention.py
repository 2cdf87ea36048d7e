"""Prompt-attention study (Oymak, Rawat, Soltanolkotabi, Thrampoulidis, ICML 2023).

Data: a *contextual mixture*. Each input ``X: [T, d]`` has a label ``y in {-1, +1}``; a fraction
``zeta`` of its tokens are context-relevant and carry the label, the rest are context-irrelevant and
carry label-independent noise that can be stronger than the signal:

    relevant   x_t = q_star + y * v_star + sigma * z_t
    irrelevant x_t = q_j + rho * s_t * v_star + kappa * r_t * q_star + sigma * z_t,
                     j ~ U{1..M},  s_t, r_t ~ U{-1, +1} independent

with orthonormal directions ``q_star`` (the relevant context), ``q_1..q_M`` (irrelevant contexts) and
``v_star`` (the label direction), and ``z_t ~ N(0, I/d)``. The rule: ``y = sign`` of the mean of
``<x_t, v_star>`` over the *relevant* tokens (exact when ``sigma = 0``). Averaging all tokens drowns
the label when ``rho`` is large and ``zeta`` small. ``kappa < 1`` gives irrelevant tokens a random-sign
share of the relevant context: a softmax over ``<x_t, q_star>`` still singles out the relevant tokens
(score 1 vs ``+-kappa``), but a linear score weights every irrelevant token by ``+-kappa`` and lets its
``rho`` noise through. (The paper's model has this structure; the concrete constants are ours.)

Models (scalar output ``f(X)``, logistic loss ``log(1 + exp(-y f))``), ``S`` = softmax over tokens:

- softmax prompt-attention  ``f = v^T U^T X^T S(X W p)``     prompt ``p: [d]`` attends over the tokens;
  key-query ``W`` and value ``U`` ``[d, d]`` frozen (``train_attention=False``) or trainable.
- softmax self-attention    ``f = (1/T) sum_t v^T U^T X^T S(X W x_t)`` (tokens attend to each other).
- linear prompt-attention   ``f = v^T U^T X^T (X W p) / T``   (no softmax).
- linear head               ``f = v^T mean_t x_t``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cptpp.config import check_range


@dataclass
class ContextualMixtureConfig:
    seq_len: int = 16
    dim: int = 16
    relevant_fraction: float = 0.25
    num_irrelevant_contexts: int = 4
    noise_strength: float = 2.0      # rho: label-independent v_star component on irrelevant tokens
    context_overlap: float = 0.7     # kappa: random-sign q_star component on irrelevant tokens
    sigma: float = 0.2               # isotropic token noise
    seed: int = 0

    def __post_init__(self):
        check_range("seq_len", self.seq_len, 1)
        check_range("dim", self.dim, self.num_irrelevant_contexts + 2)
        check_range("relevant_fraction", self.relevant_fraction, 0, 1, lo_open=True)
        check_range("num_irrelevant_contexts", self.num_irrelevant_contexts, 1)
        check_range("noise_strength", self.noise_strength, 0)
        check_range("context_overlap", self.context_overlap, 0, 1)
        check_range("sigma", self.sigma, 0)

    @property
    def num_relevant(self) -> int:
        return max(1, round(self.relevant_fraction * self.seq_len))


@dataclass
class ContextualMixture:
    """X: ``[N, T, d]``; y: ``[N]`` in {-1, +1}; relevant: ``[N, T]`` bool; directions ``q_star``,
    ``v_star``: ``[d]``, ``q_irrelevant``: ``[M, d]``."""

    X: torch.Tensor
    y: torch.Tensor
    relevant: torch.Tensor
    q_star: torch.Tensor
    v_star: torch.Tensor
    q_irrelevant: torch.Tensor


def mixture_directions(cfg: ContextualMixtureConfig) -> torch.Tensor:
    """``[M + 2, d]`` orthonormal rows: q_star, v_star, q_1..q_M (fixed by ``cfg.seed``)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    q, _ = torch.linalg.qr(torch.randn(cfg.dim, cfg.num_irrelevant_contexts + 2, generator=gen, dtype=torch.float64))
    return q.T.float()


def sample_mixture(cfg: ContextualMixtureConfig, n: int, seed: int) -> ContextualMixture:
    """``n`` examples of the contextual mixture (directions shared by every call with the same cfg)."""
    dirs = mixture_directions(cfg)
    q_star, v_star, q_irr = dirs[0], dirs[1], dirs[2:]
    gen = torch.Generator().manual_seed(seed)
    T, d, k = cfg.seq_len, cfg.dim, cfg.num_relevant
    y = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
    # which k positions are relevant: a random permutation per example
    order = torch.rand(n, T, generator=gen).argsort(1)
    relevant = torch.zeros(n, T, dtype=torch.bool)
    relevant.scatter_(1, order[:, :k], True)
    ctx = q_irr[torch.randint(0, cfg.num_irrelevant_contexts, (n, T), generator=gen)]      # [n, T, d]
    sign = torch.randint(0, 2, (n, T), generator=gen).float() * 2 - 1
    overlap = torch.randint(0, 2, (n, T), generator=gen).float() * 2 - 1
    irrelevant_x = ctx + cfg.noise_strength * sign[..., None] * v_star + cfg.context_overlap * overlap[..., None] * q_star
    relevant_x = q_star + y[:, None, None] * v_star
    X = torch.where(relevant[..., None], relevant_x.expand(n, T, d), irrelevant_x)
    X = X + cfg.sigma * torch.randn(n, T, d, generator=gen) / d ** 0.5
    return ContextualMixture(X, y, relevant, q_star, v_star, q_irr)


def label_rule(data: ContextualMixture) -> torch.Tensor:
    """``sign(mean_{t relevant} <x_t, v_star>)``: ``[N]``; equals ``data.y`` when sigma = 0."""
    proj = data.X @ data.v_star                                    # [N, T]
    rel = data.relevant.float()
    return torch.sign((proj * rel).sum(1) / rel.sum(1))


def logistic_loss(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``log(1 + exp(-y f))``."""
    return F.softplus(-y * f).mean()


class _Attention(nn.Module):
    """Shared parameters: key-query ``W`` and value ``U`` (``[d, d]``, identity-initialized plus a small
    seeded perturbation, standing in for pretrained weights) and the head ``v: [d]``."""

    def __init__(self, dim: int, train_attention: bool, seed: int):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.eye(dim) + 0.1 * torch.randn(dim, dim, generator=gen) / dim ** 0.5,
                              requires_grad=train_attention)
        self.U = nn.Parameter(torch.eye(dim) + 0.1 * torch.randn(dim, dim, generator=gen) / dim ** 0.5,
                              requires_grad=train_attention)
        self.v = nn.Parameter(torch.zeros(dim))


class PromptAttention(_Attention):
    """Softmax prompt-attention ``f(X) = v^T U^T X^T softmax(X W p)``; X ``[N, T, d]`` -> ``[N]``."""

    def __init__(self, dim: int, train_attention: bool = False, seed: int = 0):
        super().__init__(dim, train_attention, seed)
        # a small random prompt: at p = v = 0 the linear variant (bilinear in p and v) has zero gradient
        gen = torch.Generator().manual_seed(seed + 1)
        self.p = nn.Parameter(0.1 * torch.randn(dim, generator=gen))

    def attention(self, X: torch.Tensor) -> torch.Tensor:
        """Attention of the prompt over the tokens: ``[N, T]``."""
        return torch.softmax(X @ (self.W @ self.p), dim=-1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        pooled = torch.einsum("nt,ntd->nd", self.attention(X), X)
        return pooled @ self.U @ self.v


class LinearPromptAttention(PromptAttention):
    """``f(X) = v^T U^T X^T (X W p) / T``: prompt-attention without the softmax."""

    def attention(self, X: torch.Tensor) -> torch.Tensor:
        return X @ (self.W @ self.p) / X.shape[1]


class SelfAttention(_Attention):
    """Softmax self-attention, token-averaged: ``f(X) = (1/T) sum_t v^T U^T X^T softmax(X W x_t)``."""

    def __init__(self, dim: int, train_attention: bool = True, seed: int = 0):
        super().__init__(dim, train_attention, seed)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(X @ self.W @ X.transpose(1, 2), dim=1)   # [N, T(keys), T(queries)]
        pooled = torch.einsum("nsq,nsd->nd", scores, X) / X.shape[1]
        return pooled @ self.U @ self.v


class LinearHead(nn.Module):
    """``f(X) = v^T mean_t x_t`` (no attention)."""

    def __init__(self, dim: int, seed: int = 0):
        super().__init__()
        self.v = nn.Parameter(torch.zeros(dim))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return X.mean(1) @ self.v


def prompt_attention_gradients(model: PromptAttention, X: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Hand-derived gradient of ``logistic_loss(model(X), y)`` for softmax prompt-attention.

    Per example, with ``a = X W p``, ``s = softmax(a)``, ``u = X U v`` and ``f = s^T u``:
        dL/df = -y * sigmoid(-y f)                      (logistic loss)
        df/da = s * (u - s^T u)                         (softmax Jacobian: diag(s) - s s^T)
        df/dp = W^T X^T df/da,   df/dW = X^T df/da p^T,  df/dU = X^T s v^T,  df/dv = U^T X^T s
    averaged over the batch. Returns ``{"p", "W", "U", "v"}``.
    """
    p, W, U, v = model.p.detach(), model.W.detach(), model.U.detach(), model.v.detach()
    s = torch.softmax(X @ (W @ p), dim=-1)                      # [N, T]
    u = X @ (U @ v)                                             # [N, T]
    f = (s * u).sum(-1)                                         # [N]
    dl_df = -y * torch.sigmoid(-y * f) / len(y)                 # [N], includes the 1/N of the mean
    df_da = s * (u - f[:, None])                                # [N, T]
    Xt_da = torch.einsum("ntd,nt->nd", X, df_da)                # X^T df/da per example: [N, d]
    Xt_s = torch.einsum("ntd,nt->nd", X, s)                     # X^T s: [N, d]
    return {
        "p": (dl_df[:, None] * Xt_da).sum(0) @ W,               # sum_n dl * W^T X^T da (as a row: da^T X W)
        "W": torch.einsum("n,nd,e->de", dl_df, Xt_da, p),
        "U": torch.einsum("n,nd,e->de", dl_df, Xt_s, v),
        "v": (dl_df[:, None] * Xt_s).sum(0) @ U,
    }


MODELS = {
    "prompt-attention (frozen W,U)": lambda d, seed: PromptAttention(d, train_attention=False, seed=seed),
    "prompt-attention (trainable W,U)": lambda d, seed: PromptAttention(d, train_attention=True, seed=seed),
    "self-attention": lambda d, seed: SelfAttention(d, train_attention=True, seed=seed),
    "linear prompt-attention": lambda d, seed: LinearPromptAttention(d, train_attention=False, seed=seed),
    "linear head": lambda d, seed: LinearHead(d, seed=seed),
}


class _FullBatchTask:
    """``fit`` task: one epoch = one full-batch step on the logistic loss; records the loss curve."""

    metric = "accuracy"

    def __init__(self, model: nn.Module, train: ContextualMixture):
        self.model, self.train, self.curve = model, train, []

    def batches(self, epoch: int, generator: torch.Generator) -> list[ContextualMixture]:
        return [self.train]

    def loss(self, data: ContextualMixture) -> torch.Tensor:
        loss = logistic_loss(self.model(data.X), data.y)
        self.curve.append(float(loss.detach()))
        return loss

    def evaluate(self, split: str) -> dict[str, float]:  # the study tests on fresh data itself
        return {"accuracy": accuracy(self.model, self.train)}


def train_model(model: nn.Module, train: ContextualMixture, steps: int = 300, lr: float = 0.05) -> list[float]:
    """Full-batch Adam (torch's default, unfused kernel) on the logistic loss; returns the loss curve.

    Trained by ``cptpp.train.fit`` (one epoch = one step), which seeds the global RNGs with 0."""
    from cptpp.train import TrainConfig, fit

    task = _FullBatchTask(model, train)
    fit(task, TrainConfig(epochs=steps, lr=lr, optimizer="adam", fused=False, eval_every=0, patience=0,
                          progress=False))
    return task.curve


@torch.no_grad()
def accuracy(model: nn.Module, data: ContextualMixture) -> float:
    return float((torch.sign(model(data.X)) == data.y).float().mean())
