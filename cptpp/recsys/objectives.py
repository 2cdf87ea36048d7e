"""Training objectives over the one LightGCN encoder: BPR, InfoNCE, SGL, SimGCL, XSimGCL.

Each objective turns a batch ``(users, pos, neg)`` into named loss terms; the task weights them:
``joint`` mode (as in the SGL/SimGCL/XSimGCL papers) uses ``rec + l2 + cl_weight * cl`` and
``pretrain`` mode (CPTPP's pre-training) uses the contrastive term alone.

References: BPR (Rendle et al. 2009); SGL (Wu et al., SIGIR 2021) eq. 9-10; SimGCL (Yu et al.,
SIGIR 2022) eq. 7; XSimGCL (Yu et al., TKDE 2023) eq. 9.

Contrastive terms, and which reference code each follows (``cl_negatives``):

* SGL, ``batch`` (SELFRec ``SGL.cal_cl_loss``): ONE InfoNCE over the batch's distinct users and
  distinct positive items stacked into one ``[n_u + n_i, d]`` matrix, so a user's negatives are the
  other stacked users *and* items. ``sgl_cl``.
* SGL, ``all`` (RecBole 1.2.1 ``SGL.calc_ssl_loss``): every batch row (a user who appears twice counts
  twice) against *every* user of the other view, and every positive item against every item; the
  two means are added (RecBole sums both over the batch, as it sums BPR: the same ratio). ``sgl_cl``.
* SimGCL / XSimGCL (SELFRec and RecBole alike): two InfoNCEs, distinct batch users among
  themselves plus distinct positive items among themselves. ``two_term_cl``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from cptpp.registry import Registry
from graph_tools.sparse import edge_dropout, node_dropout

if TYPE_CHECKING:  # pragma: no cover
    from cptpp.recsys.task import RecTask

OBJECTIVES: Registry[type["Objective"]] = Registry("objective")


# --------------------------------------------------------------------------- loss functions

def bpr_loss(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """``mean(-log sigmoid(u·p - u·n))`` for ``[B, d]`` embeddings (softplus form is stable)."""
    return F.softplus((user * neg).sum(-1) - (user * pos).sum(-1)).mean()


def l2_penalty(*embs: torch.Tensor) -> torch.Tensor:
    """LightGCN's regularizer: ``sum ||e||^2 / 2`` over the batch's layer-0 rows, divided by batch size."""
    return sum(e.pow(2).sum() for e in embs) / (2 * embs[0].shape[0])


def info_nce(view1: torch.Tensor, view2: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE over ``[n, d]`` views: row ``k`` of ``view2`` is the positive of row ``k`` of ``view1``,
    every other row of ``view2`` a negative; cosine similarity over temperature ``tau`` (SGL eq. 9)."""
    z1, z2 = F.normalize(view1, dim=-1) / tau, F.normalize(view2, dim=-1)  # 1/tau on [n, d], not [n, n]
    logits = z1 @ z2.t()
    return F.cross_entropy(logits, torch.arange(len(z1), device=z1.device))


def info_nce_all(view1: torch.Tensor, view2: torch.Tensor, index: torch.Tensor, tau: float) -> torch.Tensor:
    """InfoNCE with every node as a negative (RecBole's SGL). For each ``k`` of ``index`` (``[B]``, may
    repeat), anchor ``view1[index_k]`` has positive ``view2[index_k]`` and negatives all other rows of
    ``view2`` (``[N, d]``, the whole view)::

        -1/B sum_k log( exp(cos(z1_{i_k}, z2_{i_k}) / tau) / sum_j exp(cos(z1_{i_k}, z2_j) / tau) )

    A repeated index counts once per occurrence, as RecBole sums over batch rows; each distinct
    anchor is scored once and weighted by its count (the same value, a third of the work at B=2048
    on ml-100k).
    """
    nodes, counts = torch.unique(index, return_counts=True)
    logits = (F.normalize(view1[nodes], dim=-1) / tau) @ F.normalize(view2, dim=-1).t()
    per_node = F.cross_entropy(logits, nodes, reduction="none")
    return (per_node * counts).sum() / len(index)


def sgl_cl(u1, i1, u2, i2, users, pos, tau: float, negatives: str) -> torch.Tensor:
    """SGL's contrastive term between views ``(u1, i1)`` and ``(u2, i2)`` (``[U, d]``, ``[I, d]``) for a
    batch of ``users`` / positive items ``pos`` (``[B]``), SGL eq. 9-10 as its reference codes write it.

    ``negatives="batch"`` (SELFRec): one InfoNCE over ``[u1[uu]; i1[ii]]`` vs ``[u2[uu]; i2[ii]]`` with
    ``uu``/``ii`` the distinct users/items, in-batch negatives. ``negatives="all"`` (RecBole):
    ``info_nce_all`` of the ``B`` batch users against all ``U`` users plus that of the ``B`` positive
    items against all ``I`` items.
    """
    if negatives == "all":
        return info_nce_all(u1, u2, users, tau) + info_nce_all(i1, i2, pos, tau)
    if negatives != "batch":
        raise ValueError(f"negatives={negatives!r}: choose batch or all")
    uu, ii = torch.unique(users), torch.unique(pos)
    return info_nce(torch.cat([u1[uu], i1[ii]]), torch.cat([u2[uu], i2[ii]]), tau)


def two_term_cl(u1, i1, u2, i2, users, pos, tau: float) -> torch.Tensor:
    """SimGCL eq. 7 / XSimGCL eq. 9: InfoNCE over the distinct batch users plus InfoNCE over the
    distinct positive items, each with in-batch negatives of its own kind."""
    uu, ii = torch.unique(users), torch.unique(pos)
    return info_nce(u1[uu], u2[uu], tau) + info_nce(i1[ii], i2[ii], tau)


def uniform_noise(h: torch.Tensor, eps: float) -> torch.Tensor:
    """SimGCL's perturbation ``h + eps * sign(h) ⊙ Δ/||Δ||`` with ``Δ ~ U(0, 1)`` per row (eq. 6)."""
    with torch.no_grad():  # d sign(h)/dh = 0, so the noise carries no gradient: skip its graph
        noise = F.normalize(torch.rand_like(h), dim=-1).mul_(torch.sign(h)).mul_(eps)
    return h + noise


# --------------------------------------------------------------------------- objectives

class Objective:
    """Computes loss terms for a batch. Subclasses with a contrastive term set ``has_cl``."""

    has_cl = False
    readout_from = 0  # which layers the encoder averages (SimGCL/XSimGCL skip layer 0)

    def __init__(self, task: "RecTask"):
        self.task = task
        self.cfg = task.cfg

    def start_epoch(self, generator: torch.Generator) -> None:
        """Per-epoch state, e.g. SGL's augmented graphs."""

    def terms(self, users, pos, neg, need_rec: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _rec_terms(self, user_emb, item_emb, users, pos, neg) -> dict[str, torch.Tensor]:
        m = self.task.model
        return {
            "rec": bpr_loss(user_emb[users], item_emb[pos], item_emb[neg]),
            "l2": self.cfg.l2 * l2_penalty(m.user[users], m.item[pos], m.item[neg]),
        }

    def _clean_rec_terms(self, users, pos, neg):
        user_emb, item_emb = self.task.model(self.task.graph)
        return self._rec_terms(user_emb, item_emb, users, pos, neg)

    def _cl(self, u1, i1, u2, i2, users, pos) -> torch.Tensor:
        """The contrastive term between two views; SimGCL/XSimGCL's two-term form unless overridden."""
        return two_term_cl(u1, i1, u2, i2, users, pos, self.cfg.tau)


@OBJECTIVES.register("bpr")
class BPR(Objective):
    """Plain BPR (LightGCN, MF)."""

    def terms(self, users, pos, neg, need_rec=True):
        return self._clean_rec_terms(users, pos, neg)


class TwoViews(Objective):
    """InfoNCE between two stochastic views of the encoder; BPR on the clean graph (SGL, SimGCL)."""

    has_cl = True

    def view(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """View ``k`` (0 or 1) as (users ``[U, d]``, items ``[I, d]``)."""
        raise NotImplementedError

    def terms(self, users, pos, neg, need_rec=True):
        (u1, i1), (u2, i2) = self.view(0), self.view(1)
        out = {"cl": self._cl(u1, i1, u2, i2, users, pos)}
        if need_rec:
            out.update(self._clean_rec_terms(users, pos, neg))
        return out


@OBJECTIVES.register("sgl")
class SGL(TwoViews):
    """SGL: two stochastic views of the graph per epoch (edge dropout ``ed``, node dropout ``nd``,
    or random walk ``rw`` = independent edge dropout per layer), InfoNCE between them as ``sgl_cl``
    (``cl_negatives``: ``batch`` = SELFRec's single stacked InfoNCE, ``all`` = RecBole's)."""

    def _cl(self, u1, i1, u2, i2, users, pos):
        return sgl_cl(u1, i1, u2, i2, users, pos, self.cfg.tau, self.cfg.cl_negatives)

    def start_epoch(self, generator):
        t, cfg = self.task, self.cfg
        args = (t.train_pairs_np, t.num_users, t.num_items, cfg.drop_ratio, generator, t.device)
        if cfg.sgl_aug == "nd":
            self.views = [node_dropout(*args) for _ in range(2)]
        elif cfg.sgl_aug == "ed":
            self.views = [edge_dropout(*args) for _ in range(2)]
        else:  # rw: a fresh subgraph for every layer of every view
            self.views = [[edge_dropout(*args) for _ in range(t.model.layers)] for _ in range(2)]

    def view(self, k: int):
        return self.task.model(self.views[k])


@OBJECTIVES.register("simgcl")
class SimGCL(TwoViews):
    """SimGCL: two views from uniform noise added after every layer; clean graph for BPR."""

    readout_from = 1

    def view(self, k: int):
        eps = self.cfg.eps
        return self.task.model(self.task.graph, lambda h, layer: uniform_noise(h, eps))


@OBJECTIVES.register("xsimgcl")
class XSimGCL(Objective):
    """XSimGCL: one noisy forward; BPR on its readout, InfoNCE between the readout and layer ``l*``."""

    has_cl = True
    readout_from = 1

    def terms(self, users, pos, neg, need_rec=True):
        m, eps = self.task.model, self.cfg.eps
        layers = m.layer_outputs(self.task.graph, lambda h, layer: uniform_noise(h, eps))
        user_emb, item_emb = m.readout(layers)
        mid = layers[self.cfg.cl_layer]
        u2, i2 = mid[: m.num_users], mid[m.num_users:]
        out = {"cl": self._cl(user_emb, item_emb, u2, i2, users, pos)}
        if need_rec:
            out.update(self._rec_terms(user_emb, item_emb, users, pos, neg))
        return out
