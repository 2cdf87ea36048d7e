"""CPTPP prompt tuning: frozen pre-trained encoder + personalized prompts, trained with BPR.

Two modes:

* ``paper`` (default): the encoder is frozen; only the prompt generator and fusion (plus the item
  table with ``tune="prompt+items"``) train. With a frozen encoder the profiles are computed once.
  The pre-trained embeddings are rescaled (one scalar) to mean row norm 1 first (``rescale``): the
  contrastive losses compare cosines, so pre-training never sets the embeddings' norms and they stay
  near their Xavier-initialized size (ML-1M after 10 epochs of XSimGCL: mean 0.045). Against items
  that small the tanh-bounded prompted user embedding (norm <= sqrt(d)) gives BPR logits below ~0.4,
  the loss stays near ln 2 and prompt tuning barely moves (ML-1M, CPTPP-R on XSimGCL, seed 1: test
  Recall@20 0.1626 unscaled, 0.2179 rescaled). ``rescale=False`` keeps the pre-trained scale.
* ``official-code``: reproduces the public reference implementation's behaviour, defects included —
  its optimizer covers only the encoder, so the prompt generator/fusion stay at their random
  initialization while the encoder trains through them, and the best epoch is chosen on the
  *test* split (it has no validation split). Use it only to compare with that code.

Pre-trained artifacts (``cptpp pretrain``) are a run directory holding ``config.json`` (data and
model config), ``results.json`` and ``encoder.pt`` (the LightGCN state + its shape).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cptpp.config import ConfigError, check_choice, load_json_config
from cptpp.recsys.config import PromptTuneConfig  # noqa: F401 (re-exported)
from cptpp.io import load_torch, save_torch
from cptpp.recsys.encoders import LightGCN
from cptpp.recsys.evaluation import evaluate_embeddings
from cptpp.recsys.interactions import Interactions
from cptpp.recsys.objectives import bpr_loss, l2_penalty
from cptpp.recsys.prompts import (PromptGenerator, high_order_profile,
                                  historical_profile, interaction_graph, make_fusion, nmf)
from cptpp.recsys.sampling import NegativeSampler, bpr_batches, num_bpr_batches
from cptpp.train import distributed as dist
from cptpp.train.batching import SizedIterable
from graph_tools.sparse import normalized_bipartite_graph

# --------------------------------------------------------------------------- artifacts

def save_pretrained(encoder: LightGCN, out: str | Path) -> Path:
    path = Path(out) / "encoder.pt"
    save_torch(path, {"state_dict": encoder.state_dict(), "num_users": encoder.num_users,
                      "num_items": encoder.num_items, "dim": encoder.dim, "layers": encoder.layers,
                      "readout_from": encoder.readout_from})
    return path


def load_pretrained(directory: str | Path) -> tuple[LightGCN, dict]:
    """Load ``encoder.pt`` and ``config.json`` from a ``cptpp pretrain`` directory."""
    directory = Path(directory)
    enc_path, cfg_path = directory / "encoder.pt", directory / "config.json"
    for p in (enc_path, cfg_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: --pretrained must be a directory written by `cptpp pretrain`")
    again = "run `cptpp pretrain` again to write it"
    cfg = load_json_config(cfg_path)
    if not isinstance(cfg.get("data"), dict):
        raise ConfigError(f"{cfg_path}: missing key 'data' (the dataset settings `cptpp pretrain` records); "
                          f"is {directory} a folder written by `cptpp pretrain`? If so, {again}")
    blob = load_torch(enc_path, weights_only=True, remedy=again)
    keys = ("state_dict", "num_users", "num_items", "dim", "layers", "readout_from")
    missing = [k for k in keys if not isinstance(blob, dict) or k not in blob]
    if missing:
        raise ConfigError(f"{enc_path}: not an encoder saved by `cptpp pretrain` "
                          f"(missing {', '.join(missing)}); {again}")
    try:
        enc = LightGCN(blob["num_users"], blob["num_items"], blob["dim"], blob["layers"], blob["readout_from"])
        enc.load_state_dict(blob["state_dict"])
    except (RuntimeError, TypeError, ValueError) as e:
        raise ConfigError(f"{enc_path}: the encoder does not load ({str(e).splitlines()[0]}); {again}") from None
    return enc, cfg


# --------------------------------------------------------------------------- model

class PromptedRecommender(nn.Module):
    """Encoder + profile -> prompt generator -> fusion -> prompted user embeddings."""

    def __init__(self, encoder: LightGCN, data: Interactions, cfg: PromptTuneConfig, device="cpu"):
        super().__init__()
        self.cfg, self.encoder = cfg, encoder
        dim = encoder.dim
        self.adj = normalized_bipartite_graph(data.train, data.num_users, data.num_items, device)
        self.r = interaction_graph(data.csr("train"), device)
        out_dim = dim if cfg.fusion == "add" else None
        self.generator = PromptGenerator(dim, cfg.hidden, out_dim)
        self.fusion = make_fusion(cfg.fusion, self.generator.out_dim, dim)
        self.to(device)

        encoder.requires_grad_(cfg.tune == "all")
        if cfg.recipe == "official-code":  # its optimizer never sees these modules
            self.generator.requires_grad_(False)
            self.fusion.requires_grad_(False)
        with torch.no_grad():
            user, item = encoder(self.adj)
            # one scalar for users and items, fixed from the pre-trained encoder (rebuilt identically on resume)
            self.scale = float(1 / torch.cat([user, item]).norm(dim=1).mean()) if cfg.rescale else 1.0
            user, item = user * self.scale, item * self.scale
        # Derived tensors are non-persistent buffers: checkpoints hold the encoder they come from.
        frozen = cfg.tune != "all"  # a frozen encoder's outputs are constants
        self.register_buffer("user_frozen", user.clone() if frozen else None, persistent=False)
        self.register_buffer("item_frozen", item.clone() if frozen else None, persistent=False)
        # prompt+items: the (final) item embeddings become a trainable table initialized from the encoder
        self.item_table = nn.Parameter(item.clone()) if cfg.tune == "prompt+items" else None
        self.register_buffer("profile_fixed", None, persistent=False)
        if cfg.prompt == "factorization":  # depends on the data only: computed once
            self.profile_fixed = nmf(self.r, dim, cfg.nmf_iters)[0]
        elif frozen:
            self.profile_fixed = self._profile(user, item)

    def _profile(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        if self.cfg.prompt == "historical":
            return historical_profile(self.r, item)
        return high_order_profile(self.adj, user, item, self.encoder.layers)

    def forward(self, users: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompted embeddings of ``users`` (all when None) ``[b, d]`` and all items ``[I, d]``."""
        if self.cfg.tune == "all":
            user, item = (x * self.scale for x in self.encoder(self.adj))
            profile = self.profile_fixed if self.profile_fixed is not None else self._profile(user, item)
        else:
            user, profile = self.user_frozen, self.profile_fixed
            item = self.item_table if self.item_table is not None else self.item_frozen
        if users is not None:
            user, profile = user[users], profile[users]
        return self.fusion(self.generator(profile), user), item


class PromptTuningTask:
    """The loop's task for prompt tuning (BPR + L2 on the batch's prompted user/item rows)."""

    def __init__(self, encoder: LightGCN, data: Interactions, cfg: PromptTuneConfig, device="cpu"):
        if (encoder.num_users, encoder.num_items) != (data.num_users, data.num_items):
            raise ConfigError(f"the pre-trained encoder has {encoder.num_users} users x {encoder.num_items} items "
                              f"but dataset {data.name} has {data.num_users} x {data.num_items}: "
                              "prompt-tune on the data it was pre-trained on")
        self.data, self.cfg, self.device = data, cfg, torch.device(device)
        self.model = PromptedRecommender(encoder.to(self.device), data, cfg, self.device)
        self.train_pairs = torch.from_numpy(data.train).to(self.device)
        self.sampler = NegativeSampler(data.train, data.num_users, data.num_items, device=self.device)
        self._csr = {s: data.csr(s) for s in ("train", "valid", "test")}
        self.metric = f"recall@{20 if 20 in cfg.ks else max(cfg.ks)}"  # the loop's validation metric

    def batches(self, epoch: int, generator: torch.Generator):
        rank, world = dist.rank(), dist.world_size()
        it = bpr_batches(self.train_pairs, self.cfg.batch_size, self.sampler, generator, rank, world)
        return SizedIterable(it, num_bpr_batches(len(self.train_pairs), self.cfg.batch_size, world))

    def loss(self, batch) -> torch.Tensor:
        users, pos, neg = batch
        user, item = self.model(users)
        p, n = item[pos], item[neg]
        return bpr_loss(user, p, n) + self.cfg.l2 * l2_penalty(user, p, n)

    def evaluate(self, split: str) -> dict[str, float]:
        check_choice("split", split, ("valid", "test"))
        if self.cfg.recipe == "official-code":  # the reference code selects its best epoch on test
            split = "test"
        exclude = [self._csr["train"]] + ([self._csr["valid"]] if split == "test" else [])
        with torch.no_grad():
            user, item = self.model()
        return evaluate_embeddings(user, item, self._csr[split], exclude, ks=self.cfg.ks,
                                   block_size=self.cfg.eval_block)
