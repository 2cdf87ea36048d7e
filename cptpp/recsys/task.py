"""A recommendation task for the shared training loop: data + LightGCN encoder + objective."""
from __future__ import annotations

import torch

from cptpp.config import ConfigError, check_choice
from cptpp.recsys.config import MODEL_DEFAULTS, MODELS, RecConfig  # noqa: F401 (re-exported)
from cptpp.recsys.encoders import LightGCN
from cptpp.recsys.evaluation import evaluate_embeddings
from cptpp.recsys.interactions import Interactions
from cptpp.recsys.objectives import OBJECTIVES
from cptpp.recsys.sampling import NegativeSampler, bpr_batches, num_bpr_batches
from cptpp.train import distributed as dist
from cptpp.train.batching import SizedIterable
from graph_tools.sparse import normalized_bipartite_graph

class RecTask:
    """Everything the loop needs for one recommender run.

    ``loss`` = ``rec + l2 + cl_weight * cl`` (joint) or ``cl`` (pretrain); evaluation is full
    ranking with train items masked (and validation items too when testing).
    """

    def __init__(self, data: Interactions, cfg: RecConfig, device: torch.device | str = "cpu"):
        self.data, self.cfg, self.device = data, cfg, torch.device(device)
        self.num_users, self.num_items = data.num_users, data.num_items
        if len(data.train) == 0:
            raise ConfigError(f"dataset {data.name} has no training interactions")
        self.train_pairs_np = data.train
        self.train_pairs = torch.from_numpy(data.train).to(self.device)
        self.graph = normalized_bipartite_graph(data.train, self.num_users, self.num_items, self.device)
        self.sampler = NegativeSampler(data.train, self.num_users, self.num_items, device=self.device)
        objective_cls = OBJECTIVES.get(cfg.objective)
        self.model = LightGCN(self.num_users, self.num_items, cfg.dim, cfg.layers,
                              readout_from=min(objective_cls.readout_from, cfg.layers)).to(self.device)
        self.objective = objective_cls(self)
        self._csr = {s: data.csr(s) for s in ("train", "valid", "test")}
        self.last_terms: dict[str, float] = {}
        self.metric = f"recall@{20 if 20 in cfg.ks else max(cfg.ks)}"  # the loop's validation metric

    # ---- the loop's interface
    def batches(self, epoch: int, generator: torch.Generator):
        self.objective.start_epoch(generator)
        rank, world = dist.rank(), dist.world_size()
        it = bpr_batches(self.train_pairs, self.cfg.batch_size, self.sampler, generator, rank, world)
        return SizedIterable(it, num_bpr_batches(len(self.train_pairs), self.cfg.batch_size, world))

    def loss(self, batch) -> torch.Tensor:
        users, pos, neg = batch
        pretrain = self.cfg.mode == "pretrain"
        terms = self.objective.terms(users, pos, neg, need_rec=not pretrain)
        if pretrain:
            total = terms["cl"]
        else:
            total = terms["rec"] + terms["l2"]
            if "cl" in terms:
                total = total + self.cfg.cl_weight * terms["cl"]
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return total

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference embeddings (clean graph, no perturbation): ``[U, d]``, ``[I, d]``."""
        with torch.no_grad():
            return self.model(self.graph)

    def evaluate(self, split: str) -> dict[str, float]:
        check_choice("split", split, ("valid", "test"))
        exclude = [self._csr["train"]] + ([self._csr["valid"]] if split == "test" else [])
        user_emb, item_emb = self.embeddings()
        return evaluate_embeddings(user_emb, item_emb, self._csr[split], exclude, ks=self.cfg.ks,
                                   block_size=self.cfg.eval_block)
