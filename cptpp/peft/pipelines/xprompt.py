"""`cptpp xprompt`: XPrompt on one SuperGLUE task, every stage a ``fit`` run (see :mod:`cptpp.peft.xprompt`).

Stages (folders under ``out/stages/``): ``full`` (optional full fine-tuning reference), ``probe`` (optional
linear-probe reference: a linear head on the frozen backbone's pooled features, computed once), ``prompt`` (stage 1:
prompt tuning, the prompt-tuning baseline too), then one per pruning step: ``token<r>`` for each token ratio
and ``piece<r>`` for each piece ratio, each scored on the model of the step before, pruned, rewound to
stage 1 and retrained. Importance scores are stored with their step, so a resumed run prunes exactly as
the killed one did. The best step on validation is written to ``out/xprompt_prompt.pt``.

Protocol: the official train split 90/10 (seeded) into train/valid, the official validation split as test;
BoolQ (no train file in the mirror) is few-shot: FewGLUE 32 train / dev32 valid.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.peft.pipelines.stages import ModelRunConfig, StageRun, config_dict, size_or_none

TASKS = ("BoolQ", "CB", "COPA", "MultiRC", "RTE", "WiC", "WSC")  # cptpp.peft.superglue.TASKS (no torch import here)


def _check_ratios(name: str, ratios: list[float]) -> None:
    for r in ratios:
        if not 0 < r < 1:
            raise ConfigError(f"{name}: ratio {r} must be in (0, 1)")
    if list(ratios) != sorted(set(ratios)):
        raise ConfigError(f"{name}={list(ratios)} must be strictly increasing (pruning is cumulative)")


@dataclass
class XPromptRunConfig(ModelRunConfig):
    task: str = field(default="RTE", metadata={"help": "SuperGLUE task", "choices": TASKS})
    valid_size: int = field(default=0, metadata={"help": "seeded subsample of validation examples (0: all)"})
    test_size: int = field(default=0, metadata={"help": "seeded subsample of test examples (0: all)"})
    batch_size: int = field(default=16, metadata={"help": "training batch size (also the importance-score batch)"})
    prompt_tokens: int = field(default=20, metadata={"help": "soft prompt length P"})
    pieces: int = field(default=16, metadata={
        "help": "pieces per prompt token embedding (must divide the hidden size)"})
    token_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
                                      metadata={"help": "cumulative token pruning ratios, increasing, comma-separated"})
    piece_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5],
                                      metadata={"help": "cumulative piece pruning ratios after the best token ratio"})
    epochs_pt: int = field(default=3, metadata={"help": "epochs of stage-1 prompt tuning"})
    epochs_retrain: int = field(default=2, metadata={"help": "epochs of retraining after each pruning step"})
    lr_pt: float = field(default=1e-2, metadata={"help": "learning rate of prompt tuning and retraining"})
    patience: int = field(default=3, metadata={"help": "early stopping: evaluations without gain (0: never)"})
    full_finetune: bool = field(default=False, metadata={"help": "also fine-tune the whole backbone (reference)"})
    epochs_ft: int = field(default=2, metadata={"help": "epochs of the full fine-tuning reference"})
    lr_ft: float = field(default=5e-5, metadata={"help": "learning rate of the full fine-tuning reference"})
    probe: bool = field(default=False, metadata={
        "help": "also train a linear probe on the frozen backbone's pooled features (reference)"})
    epochs_probe: int = field(default=30, metadata={
        "help": "epochs of the linear probe (cheap: the features are computed once)"})
    lr_probe: float = field(default=1e-2, metadata={"help": "learning rate of the linear probe"})

    def __post_init__(self):
        super().__post_init__()
        check_choice("task", self.task, TASKS)
        for name in ("batch_size", "prompt_tokens", "pieces", "epochs_pt", "epochs_retrain", "epochs_ft",
                     "epochs_probe"):
            check_range(name, getattr(self, name), 1)
        for name in ("valid_size", "test_size", "patience"):
            check_range(name, getattr(self, name), 0)
        for name in ("lr_pt", "lr_ft", "lr_probe"):
            check_range(name, getattr(self, name), 0, lo_open=True)
        _check_ratios("token_ratios", self.token_ratios)
        _check_ratios("piece_ratios", self.piece_ratios)


def stage_names(cfg: XPromptRunConfig) -> list[str]:
    """Pruning steps in the order they run (their folder names)."""
    return [f"token{r:g}" for r in cfg.token_ratios] + [f"piece{r:g}" for r in cfg.piece_ratios]


def _classifier(cfg: XPromptRunConfig, mode: str, device):
    import torch

    from cptpp.models import load_pretrained
    from cptpp.peft.architecture import detect_architecture
    from cptpp.peft.classification import verbalizer_ids
    from cptpp.peft.prompt import PromptClassifier, SoftPrompt, SoftPromptConfig
    from cptpp.peft.superglue import LABELS, VERBALIZERS
    from cptpp.peft.xprompt import MaskedSoftPrompt
    from cptpp.train import seed_everything

    backbone, tok = load_pretrained(cfg.model)
    arch = detect_architecture(backbone)
    label_ids = None if arch == "encoder" else verbalizer_ids(tok, VERBALIZERS[cfg.task], arch)
    prompt = None
    if mode == "prompt":
        emb = backbone.get_input_embeddings().weight
        # init tokens from the 5000 ids after the first 1000 (skips special/unused BERT ids); small vocabs: all
        vocab = emb.shape[0]
        cand = torch.arange(1000, min(6000, vocab)) if vocab >= 1000 + cfg.prompt_tokens else torch.arange(vocab)
        base = SoftPromptConfig(num_tokens=cfg.prompt_tokens, init="vocab", seed=cfg.seed)
        prompt = MaskedSoftPrompt.from_prompt(SoftPrompt.from_config(base, emb, cand), cfg.pieces)
    seed_everything(cfg.seed)  # an encoder's linear head is drawn from the global generator
    model = PromptClassifier(backbone, len(LABELS[cfg.task]), prompt, label_ids, train_backbone=(mode == "full"),
                             head="linear" if mode == "probe" else "auto")
    return model.to(device), tok, arch


def run_xprompt(cfg: XPromptRunConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) XPrompt; returns and writes results.json (see the module docstring)."""
    import torch

    from cptpp.io import save_torch
    from cptpp.models import resolve_model
    from cptpp.peft.classification import probe_task
    from cptpp.peft.superglue import build_task, load_task
    from cptpp.peft.xprompt import XPromptConfig, importance_scores, save_pruned_prompt, xprompt_search
    from cptpp.train import TrainConfig, resolve_device
    from cptpp.train.params import count_parameters

    device = resolve_device(cfg.device)
    resolve_model(cfg.model)  # a wrong --model or missing data fails before the run folder is made
    few = cfg.task == "BoolQ"
    splits = load_task(cfg.task, few_shot=few, seed=cfg.seed, max_train=None if few else size_or_none(cfg.train_size),
                       max_valid=size_or_none(cfg.valid_size), max_test=size_or_none(cfg.test_size))
    run = StageRun(out, {"command": "xprompt", "config": config_dict(cfg)}, resume)
    results: dict[str, Any] = {"task": cfg.task, "protocol": splits.protocol,
                               "sizes": {"train": len(splits.train), "valid": len(splits.valid),
                                         "test": len(splits.test)}}

    def train_cfg(epochs: int, lr: float) -> TrainConfig:
        return TrainConfig(epochs=epochs, lr=lr, metric="accuracy", patience=cfg.patience, seed=cfg.seed,
                           progress=False, optimizer="adamw")

    def task_for(model, tok, arch):
        return build_task(cfg.task, splits, model, tok, arch, cfg.max_len, batch_size=cfg.batch_size, device=device)

    if cfg.full_finetune:
        model, tok, arch = _classifier(cfg, "full", device)
        res = run.fit("full", task_for(model, tok, arch), train_cfg(cfg.epochs_ft, cfg.lr_ft))
        results["full"] = {"results": res, "trainable": count_parameters(model).trainable}
        del model

    if cfg.probe:
        model, tok, arch = _classifier(cfg, "probe", device)
        res = run.fit("probe", probe_task(task_for(model, tok, arch)), train_cfg(cfg.epochs_probe, cfg.lr_probe))
        results["probe"] = {"results": res, "trainable": count_parameters(model).trainable}
        del model

    model, tok, arch = _classifier(cfg, "prompt", device)
    pt = task_for(model, tok, arch)
    res = run.fit("prompt", pt, train_cfg(cfg.epochs_pt, cfg.lr_pt))
    results["prompt"] = {"results": res, "trainable": count_parameters(model).trainable,
                         "prompt_params": model.prompt.num_parameters()}

    steps = iter(stage_names(cfg))
    current: list[str] = []

    def score():
        current[:] = [next(steps)]
        path = run.stage_dir(current[0]) / "scores.pt"
        if path.exists():  # the killed run's scores: same masks after pruning
            saved = torch.load(path, map_location="cpu", weights_only=True)
            return saved["token"], saved["piece"]
        tok_scores, piece_scores = importance_scores(model, model.prompt, pt.iter_split("train", cfg.batch_size))
        save_torch(path, {"token": tok_scores, "piece": piece_scores})
        return tok_scores, piece_scores

    def retrain(tag: str) -> dict[str, Any]:
        return run.fit(current[0], pt, train_cfg(cfg.epochs_retrain, cfg.lr_pt))

    xcfg = XPromptConfig(num_pieces=cfg.pieces, token_ratios=cfg.token_ratios, piece_ratios=cfg.piece_ratios)
    records, best = xprompt_search(model, model.prompt, xcfg, score, retrain)
    results["xprompt"] = {
        "records": [{"stage": name, "level": r.level, "ratio": r.ratio, "prompt_params": r.prompt_params,
                     "tokens_kept": r.tokens_kept, "valid": r.results["valid"], "test": r.results["test"]}
                    for name, r in zip(stage_names(cfg), records)],
        "best": None if best is None else {
            "level": best.level, "ratio": best.ratio, "prompt_params": best.prompt_params,
            "valid": best.results["valid"], "test": best.results["test"]},
    }
    if best is not None:
        save_pruned_prompt(run.out / "xprompt_prompt.pt", model.prompt)
    return run.finish(results)
