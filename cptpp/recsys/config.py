"""Recommendation configs (dataclasses; no torch import, so the CLI parser builds fast)."""
from __future__ import annotations

from dataclasses import dataclass, field

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.train.config import TrainConfig

PROMPTS = ("historical", "factorization", "high_order")
FUSIONS = ("concat_mlp", "add")

# Explicit ratings become implicit feedback by keeping rating >= threshold. None: the dataset's default
# (4 for every file with a rating column: the MovieLens sets and user files alike, as CPTPP does);
# a number: keep rating >= it; "all": keep every rating (negative ones too).
DEFAULT_RATING_THRESHOLD = 4.0
RATING_THRESHOLD_HELP = ("keep interactions with rating >= this (files with a rating column; default 4, "
                         "as for MovieLens); 'all' keeps every rating; files without ratings ignore 'all'")

# The metric names full-ranking evaluation reports, as METRIC@K (cptpp.recsys.evaluation.METRICS).
RANKING_METRICS = ("recall", "ndcg", "precision", "hit", "mrr")


def check_rating_threshold(value) -> None:
    """None, "all" or a finite number (see DEFAULT_RATING_THRESHOLD)."""
    if value is None or value == "all":
        return
    if isinstance(value, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"rating_threshold={value!r} must be a number (keep rating >= it) "
                          "or 'all' (keep every rating)")
    check_range("rating_threshold", float(value))


def check_ranking_metric(metric: str | None, ks) -> None:
    """``metric`` (the loop's validation metric; None = the task's) must be one evaluation reports for ``ks``."""
    if metric is not None:
        check_choice("metric", metric, [f"{m}@{k}" for k in ks for m in RANKING_METRICS])


MODELS = ("mf", "lightgcn", "sgl", "simgcl", "xsimgcl")
MODES = ("joint", "pretrain")
PRETRAIN_DEFAULTS = {"sgl": dict(cl_negatives="batch", tau=0.2)}

# Per-model defaults for fields left as None: the reference settings of each paper / SELFRec.
# SGL joint training uses RecBole's form (all-node negatives, tau 0.5, lambda 0.05): on ml-100k it
# learns from the first epochs, where SELFRec's (in-batch, tau 0.2, lambda 0.1) is flat for ~70
# (README "SGL"; benchmarks/RESULTS.md#recbole-peer). CPTPP's pre-training (mode=pretrain) keeps
# the form of its reference code, a SELFRec fork: PRETRAIN_DEFAULTS.
MODEL_DEFAULTS = {
    "mf": dict(layers=0),
    "lightgcn": dict(layers=3),
    "sgl": dict(layers=3, cl_weight=0.05, tau=0.5, cl_negatives="all"),
    "simgcl": dict(layers=2, cl_weight=0.5, tau=0.2, eps=0.1),
    "xsimgcl": dict(layers=2, cl_weight=0.2, tau=0.15, eps=0.2),
}


@dataclass
class DataConfig:
    """Which data and how it is split (see ``cptpp data list``)."""

    dataset: str = "ml-100k"
    data_seed: int = 0
    valid_ratio: float = 0.1
    rating_threshold: float | str | None = field(default=None, metadata={"help": RATING_THRESHOLD_HELP})
    kcore: int = 0
    device: str = "auto"

    def __post_init__(self):
        check_range("valid_ratio", self.valid_ratio, 0)
        check_rating_threshold(self.rating_threshold)
        check_range("kcore", self.kcore, 0)


@dataclass
class RecTrainConfig(TrainConfig):
    """The loop's settings for recommenders: SELFRec's seed, so runs match the results recorded so far.

    (The validation metric is the task's own: Recall@20.)
    """

    seed: int = 2020


@dataclass
class RankingConfig:
    """What every BPR-trained, full-ranking-evaluated recommender shares: the batch, the L2 weight and
    the evaluation cutoffs and block size (users scored per matmul)."""

    batch_size: int = 2048
    l2: float = 1e-4
    ks: list[int] = field(default_factory=lambda: [5, 10, 20])
    eval_block: int = 2048

    def __post_init__(self):
        check_range("batch_size", self.batch_size, 1)
        check_range("l2", self.l2, 0)
        check_range("eval_block", self.eval_block, 1)
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks={self.ks} must be a non-empty list of positive cutoffs")


@dataclass
class RecConfig(RankingConfig):
    """Model and objective hyperparameters (``None`` = the model's default from MODEL_DEFAULTS)."""

    model: str = "lightgcn"
    mode: str = "joint"
    dim: int = 64
    layers: int | None = None
    cl_weight: float | None = None
    tau: float | None = None
    eps: float | None = None
    drop_ratio: float = 0.1
    sgl_aug: str = "ed"
    cl_negatives: str | None = None  # SGL: batch (SELFRec) or all (RecBole); see objectives.sgl_cl
    cl_layer: int = 1

    def __post_init__(self):
        super().__post_init__()
        check_choice("model", self.model, MODELS)
        check_choice("mode", self.mode, MODES)
        check_choice("sgl_aug", self.sgl_aug, ("ed", "nd", "rw"))
        pretrain = PRETRAIN_DEFAULTS.get(self.model, {}) if self.mode == "pretrain" else {}
        for key, value in {**MODEL_DEFAULTS[self.model], **pretrain}.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.cl_negatives is None:
            self.cl_negatives = "batch"
        check_choice("cl_negatives", self.cl_negatives, ("batch", "all"))
        if self.cl_negatives == "all" and self.model != "sgl":
            raise ConfigError(f"cl_negatives=all is SGL's RecBole form; model={self.model} contrasts in-batch "
                              "nodes only (cl_negatives=batch)")
        for key in ("cl_weight", "tau", "eps"):
            if getattr(self, key) is None:
                setattr(self, key, 0.0)
            check_range(key, getattr(self, key))  # finite, even where this model does not use it
        check_range("dim", self.dim, 1)
        check_range("layers", self.layers, 0)
        check_range("drop_ratio", self.drop_ratio, 0)
        if self.drop_ratio >= 1:
            raise ConfigError(f"drop_ratio={self.drop_ratio} must be < 1")
        if self.model == "mf" and self.layers != 0:
            raise ConfigError("model=mf has no propagation; use model=lightgcn for layers > 0")
        if self.model in ("sgl", "simgcl", "xsimgcl"):
            check_range("tau", self.tau, 0, lo_open=True)
            if self.layers < 1:
                raise ConfigError(f"model={self.model} needs layers >= 1")
        if self.model == "xsimgcl" and not 1 <= self.cl_layer <= self.layers:
            raise ConfigError(f"cl_layer={self.cl_layer} must be in [1, layers={self.layers}]")
        if self.mode == "pretrain" and self.model in ("mf", "lightgcn"):
            raise ConfigError(f"mode=pretrain needs a contrastive model (sgl, simgcl, xsimgcl), not {self.model}")

    @property
    def objective(self) -> str:
        return "bpr" if self.model in ("mf", "lightgcn") else self.model


TUNES = ("prompt", "prompt+items", "all")
PROMPT_MODES = ("paper", "official-code")


@dataclass
class PromptTuneConfig(RankingConfig):
    prompt: str = "high_order"
    fusion: str = "concat_mlp"
    tune: str | None = None  # paper: "prompt"; official-code: "all"
    mode: str = "paper"
    rescale: bool | None = None  # paper: True; official-code: False (see prompt_tuning.py)
    hidden: int = 256
    nmf_iters: int = 200

    def __post_init__(self):
        super().__post_init__()
        check_choice("prompt", self.prompt, PROMPTS)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("mode", self.mode, PROMPT_MODES)
        if self.tune is None:
            self.tune = "all" if self.mode == "official-code" else "prompt"
        check_choice("tune", self.tune, TUNES)
        if self.rescale is None:
            self.rescale = self.mode == "paper"
        if self.mode == "official-code" and (self.tune != "all" or self.fusion != "concat_mlp" or self.rescale):
            raise ConfigError("mode=official-code reproduces the reference code: it trains the whole "
                              "encoder (tune=all) with concat_mlp fusion and no rescale")
        check_range("hidden", self.hidden, 1)
        check_range("nmf_iters", self.nmf_iters, 1)
