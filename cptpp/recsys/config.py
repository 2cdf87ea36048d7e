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

# Per-model defaults for fields left as None, chosen on ml-100k validation with `cptpp search` and
# checked on ml-1m-implicit (README "Defaults"; benchmarks/results/cptpp.md). SGL joint training uses
# RecBole's form (all-node negatives, tau 0.5, lambda 0.05): on ml-100k it learns from the first
# epochs, where SELFRec's (in-batch, tau 0.2, lambda 0.1) is flat for ~70 (README "SGL";
# benchmarks/RESULTS.md#recbole-peer). SimGCL and XSimGCL keep their papers' tau/eps/layers but take
# lambda 0.02 / 0.05: the papers' 0.5 / 0.2 (tuned on large sparse sets) keep ml-100k near its
# first-epoch recall for 100 epochs. CPTPP's pre-training (mode=pretrain, the contrastive loss alone) keeps the
# form of its reference code, a SELFRec fork: PRETRAIN_DEFAULTS.
MODEL_DEFAULTS = {
    "mf": dict(layers=0),
    "lightgcn": dict(layers=3),
    "sgl": dict(layers=3, cl_weight=0.05, tau=0.5, cl_negatives="all"),
    "simgcl": dict(layers=2, cl_weight=0.02, tau=0.2, eps=0.1),
    "xsimgcl": dict(layers=2, cl_weight=0.05, tau=0.15, eps=0.2),
}


def _per_model(key: str) -> str:
    """Help text for a per-model default, e.g. ``per model (mf 0, lightgcn 3, sgl 3, ...)``."""
    vals = ", ".join(f"{m} {d[key]}" for m, d in MODEL_DEFAULTS.items() if key in d)
    unused = [m for m, d in MODEL_DEFAULTS.items() if key not in d]
    return f"per model ({vals}{'; unused by ' + ', '.join(unused) if unused else ''})"


@dataclass
class DataConfig:
    """Which data and how it is split (see ``cptpp data list``)."""

    dataset: str = field(default="ml-100k", metadata={
        "help": "a registered dataset (see `cptpp data list`), a ratings file (user item [rating] [timestamp]) "
                "or a folder of train/test[/valid] files", "metavar": "NAME|PATH"})
    data_seed: int = field(default=0, metadata={
        "help": "seed of the train/validation/test split (independent of --seed)"})
    valid_ratio: float = field(default=0.1, metadata={
        "help": "fraction of each user's training interactions held out for validation when the dataset "
                "has no validation split"})
    rating_threshold: float | str | None = field(default=None, metadata={
        "help": RATING_THRESHOLD_HELP, "default": "4 where the file has ratings"})
    kcore: int = field(default=0, metadata={
        "help": "keep only users and items with at least K interactions before splitting; 0 = no filter"})
    device: str = field(default="auto", metadata={
        "help": "auto (CUDA when present, else CPU), cpu, cuda or cuda:N"})

    def __post_init__(self):
        check_range("valid_ratio", self.valid_ratio, 0)
        check_rating_threshold(self.rating_threshold)
        check_range("kcore", self.kcore, 0)


@dataclass
class RecTrainConfig(TrainConfig):
    """The loop's settings for recommenders: SELFRec's seed, so runs match the results recorded so far.

    (The validation metric is the task's own: Recall@20.)
    """

    seed: int = field(default=2020, metadata={
        "help": "seed of model initialization, negative sampling and batch order (2020: SELFRec's)"})


@dataclass
class RankingConfig:
    """What every BPR-trained, full-ranking-evaluated recommender shares: the batch, the L2 weight and
    the evaluation cutoffs and block size (users scored per matmul)."""

    batch_size: int = field(default=2048, metadata={"help": "(user, positive, negative) triples per BPR batch"})
    l2: float = field(default=1e-4, metadata={"help": "L2 weight on the embeddings of each batch"})
    ks: list[int] = field(default_factory=lambda: [5, 10, 20], metadata={
        "help": "ranking cutoffs, comma-separated: 5,10,20 reports recall, ndcg, precision, hit and mrr at 5, "
                "10 and 20", "metavar": "K,K,..."})
    eval_block: int = field(default=2048, metadata={
        "help": "users scored per matrix product in full-ranking evaluation (lower it to save memory)"})

    def __post_init__(self):
        check_range("batch_size", self.batch_size, 1)
        check_range("l2", self.l2, 0)
        check_range("eval_block", self.eval_block, 1)
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"ks={self.ks} must be a non-empty list of positive cutoffs")


@dataclass
class RecConfig(RankingConfig):
    """Model and objective hyperparameters (``None`` = the model's default from MODEL_DEFAULTS)."""

    recommender: str = field(default="lightgcn", metadata={
        "help": "recommender: one LightGCN encoder (mf: 0 layers) with the BPR loss, or with SGL's, SimGCL's "
                "or XSimGCL's contrastive loss added", "choices": MODELS})
    mode: str = field(default="joint", metadata={
        "help": "joint: BPR + cl_weight x InfoNCE (the papers); pretrain: the contrastive loss alone "
                "(sgl, simgcl, xsimgcl; CPTPP's stage 1)", "choices": MODES})
    dim: int = field(default=64, metadata={"help": "embedding size"})
    layers: int | None = field(default=None, metadata={
        "help": "propagation layers", "default": _per_model("layers")})
    cl_weight: float | None = field(default=None, metadata={
        "help": "weight of the contrastive loss", "default": _per_model("cl_weight")})
    tau: float | None = field(default=None, metadata={
        "help": "InfoNCE temperature", "default": _per_model("tau")})
    eps: float | None = field(default=None, metadata={
        "help": "simgcl/xsimgcl: norm of the random noise added to the embeddings", "default": _per_model("eps")})
    drop_ratio: float = field(default=0.1, metadata={"help": "sgl: fraction of edges/nodes dropped per view"})
    sgl_aug: str = field(default="ed", metadata={
        "help": "sgl: view augmentation (ed: edge dropout, nd: node dropout, rw: random walk, a new graph per layer)",
        "choices": ("ed", "nd", "rw")})
    cl_layer: int = field(default=1, metadata={
        "help": "xsimgcl: the layer whose embeddings are contrasted with the final ones (1..layers)"})
    cl_negatives: str | None = field(default=None, metadata={
        "help": "sgl: the contrastive term's negatives: batch (the batch's distinct users and items stacked, "
                "SELFRec) or all (every user / item of the other view, RecBole)", "choices": ("batch", "all"),
        "default": "all for joint training, batch for pretrain"})

    def __post_init__(self):
        super().__post_init__()
        check_choice("recommender", self.recommender, MODELS)
        check_choice("mode", self.mode, MODES)
        check_choice("sgl_aug", self.sgl_aug, ("ed", "nd", "rw"))
        pretrain = PRETRAIN_DEFAULTS.get(self.recommender, {}) if self.mode == "pretrain" else {}
        for key, value in {**MODEL_DEFAULTS[self.recommender], **pretrain}.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.cl_negatives is None:
            self.cl_negatives = "batch"
        check_choice("cl_negatives", self.cl_negatives, ("batch", "all"))
        if self.cl_negatives == "all" and self.recommender != "sgl":
            raise ConfigError(f"cl_negatives=all is SGL's RecBole form; recommender={self.recommender} contrasts "
                              "in-batch nodes only (cl_negatives=batch)")
        for key in ("cl_weight", "tau", "eps"):
            if getattr(self, key) is None:
                setattr(self, key, 0.0)
            check_range(key, getattr(self, key))  # finite, even where this model does not use it
        check_range("dim", self.dim, 1)
        check_range("layers", self.layers, 0)
        check_range("drop_ratio", self.drop_ratio, 0)
        if self.drop_ratio >= 1:
            raise ConfigError(f"drop_ratio={self.drop_ratio} must be < 1")
        if self.recommender == "mf" and self.layers != 0:
            raise ConfigError("recommender=mf has no propagation; use recommender=lightgcn for layers > 0")
        if self.recommender in ("sgl", "simgcl", "xsimgcl"):
            check_range("tau", self.tau, 0, lo_open=True)
            if self.layers < 1:
                raise ConfigError(f"recommender={self.recommender} needs layers >= 1")
        if self.recommender == "xsimgcl" and not 1 <= self.cl_layer <= self.layers:
            raise ConfigError(f"cl_layer={self.cl_layer} must be in [1, layers={self.layers}]")
        if self.mode == "pretrain" and self.recommender in ("mf", "lightgcn"):
            raise ConfigError(f"mode=pretrain needs a contrastive recommender (sgl, simgcl, xsimgcl), "
                              f"not {self.recommender}")

    @property
    def objective(self) -> str:
        return "bpr" if self.recommender in ("mf", "lightgcn") else self.recommender


TUNES = ("prompt", "prompt+items", "all")
PROMPT_MODES = ("paper", "official-code")


@dataclass
class PromptTuneConfig(RankingConfig):
    prompt: str = field(default="high_order", metadata={
        "help": "user profile the prompt is generated from (CPTPP-H, -M, -R)", "choices": PROMPTS})
    fusion: str = field(default="concat_mlp", metadata={
        "help": "how a prompt joins the user embedding", "choices": FUSIONS})
    tune: str | None = field(default=None, metadata={
        "help": "what trains: the prompt layers, also the item table, or everything",
        "choices": TUNES, "default": "per recipe (paper: prompt; official-code: all)"})
    recipe: str = field(default="paper", metadata={
        "help": "paper: as the paper describes; official-code: as the reference code runs (prompt layers "
                "untrained, best epoch chosen on TEST; not a validated result)", "choices": PROMPT_MODES})
    rescale: bool | None = field(default=None, metadata={
        "help": "scale the pre-trained embeddings by one scalar to mean row norm 1 (--no-rescale: as they are)",
        "default": "per recipe (paper: on; official-code: off)"})
    hidden: int = field(default=256, metadata={"help": "hidden size of the prompt generator"})
    nmf_iters: int = field(default=200, metadata={"help": "factorization prompt: NMF iterations"})

    def __post_init__(self):
        super().__post_init__()
        check_choice("prompt", self.prompt, PROMPTS)
        check_choice("fusion", self.fusion, FUSIONS)
        check_choice("recipe", self.recipe, PROMPT_MODES)
        if self.tune is None:
            self.tune = "all" if self.recipe == "official-code" else "prompt"
        check_choice("tune", self.tune, TUNES)
        if self.rescale is None:
            self.rescale = self.recipe == "paper"
        if self.recipe == "official-code" and (self.tune != "all" or self.fusion != "concat_mlp" or self.rescale):
            raise ConfigError("recipe=official-code reproduces the reference code: it trains the whole "
                              "encoder (tune=all) with concat_mlp fusion and no rescale")
        check_range("hidden", self.hidden, 1)
        check_range("nmf_iters", self.nmf_iters, 1)
