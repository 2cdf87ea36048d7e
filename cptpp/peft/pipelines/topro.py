"""`cptpp topro`: ToPro or a token-classification baseline, trained on English, tested zero-shot elsewhere.

Methods: ``topro`` (token-level prompt decomposition, whole backbone fine-tuned; :mod:`cptpp.peft.topro`),
``finetune`` (a linear head on each word's first sub-token, whole backbone fine-tuned), ``prompt`` (the
same head with a frozen backbone and a soft prompt) and ``probe`` (the same head on the frozen backbone
alone: a per-token linear probe, the reference row; its features are computed once). Stages: ``train`` (one ``fit`` run: the epoch is chosen
on English validation, English test reported once) and ``zero-shot`` (every other language, evaluated once
at that epoch). Metrics: entity F1 (PAN-X NER), token accuracy (UD-POS).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.peft.pipelines.stages import ModelRunConfig, StageRun, config_dict, size_or_none

METHODS = ("topro", "finetune", "prompt", "probe")
METRIC = {"ner": "f1", "pos": "accuracy"}
LANGUAGES = {"ner": ("de", "zh", "ar", "hi", "sw", "ja", "ru"), "pos": ("de", "zh", "ar", "hi", "ja")}


@dataclass
class ToProRunConfig(ModelRunConfig):
    task: str = field(default="ner", metadata={
        "help": "ner (PAN-X named entities) or pos (UD-POS part-of-speech tags)", "choices": ("ner", "pos")})
    method: str = field(default="topro", metadata={
        "help": "topro, or the fine-tuning / prompt-tuning / linear-probe baseline", "choices": METHODS})
    langs: list[str] = field(default_factory=list, metadata={
        "help": "zero-shot languages, comma-separated (ner: de,zh,ar,hi,sw,ja,ru; pos: de,zh,ar,hi,ja)"})
    eval_size: int = field(default=0, metadata={"help": "seeded subsample of every evaluation set (0: all)"})
    epochs: int = field(default=2, metadata={"help": "training epochs"})
    lr: float = field(default=1e-4, metadata={"help": "learning rate of topro and finetune"})
    prompt_lr: float = field(default=1e-2, metadata={"help": "learning rate of prompt"})
    probe_lr: float = field(default=1e-2, metadata={"help": "learning rate of probe"})
    prompt_tokens: int = field(default=20, metadata={"help": "soft prompt length (method prompt)"})
    batch_size: int = field(default=8, metadata={"help": "sentences per batch (finetune, prompt)"})
    max_tokens: int = field(default=512, metadata={"help": "topro: prompted copies x length per forward pass"})
    words_per_sentence: int = field(default=0, metadata={
        "help": "topro: word copies sampled per training sentence per epoch (0: all words, the paper's setting)"})

    def __post_init__(self):
        super().__post_init__()
        check_choice("task", self.task, tuple(METRIC))
        check_choice("method", self.method, METHODS)
        for lang in self.langs:
            if lang not in LANGUAGES[self.task]:
                raise ConfigError(f"langs: {lang!r} is not valid for {self.task}; choose from: "
                                  f"{', '.join(LANGUAGES[self.task])}")
        for name in ("epochs", "prompt_tokens", "batch_size", "max_tokens"):
            check_range(name, getattr(self, name), 1)
        check_range("eval_size", self.eval_size, 0)
        check_range("words_per_sentence", self.words_per_sentence, 0)
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("prompt_lr", self.prompt_lr, 0, lo_open=True)
        check_range("probe_lr", self.probe_lr, 0, lo_open=True)


def unk_rate(tok, sentences) -> float:
    """Fraction of the sentences' sub-tokens that are the unknown token."""
    words = [w for s in sentences for w in s.words]
    ids = tok(words, add_special_tokens=False)["input_ids"] if words else []
    total = sum(len(i) for i in ids)
    return sum(t == tok.unk_token_id for i in ids for t in i) / max(total, 1)


def run_topro(cfg: ToProRunConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) one method on one tagging task; returns and writes results.json."""
    import torch

    from cptpp.models import load_pretrained
    from cptpp.peft.prompt import SoftPrompt, SoftPromptConfig
    from cptpp.peft.tagging_data import TAGS, load_tagging_splits
    from cptpp.peft.architecture import detect_architecture
    from cptpp.peft.token_classification import TokenClassifier, TokenProbeTask, TokenTask
    from cptpp.peft.topro import ToProConfig, ToProTagger, ToProTask, ToProTemplate, decoder_prefix_for
    from cptpp.train.params import count_parameters
    from cptpp.train import TrainConfig, resolve_device

    device = resolve_device(cfg.device)
    splits = load_tagging_splits(cfg.task, cfg.langs, seed=cfg.seed, max_train=size_or_none(cfg.train_size),
                                 max_eval=size_or_none(cfg.eval_size))
    backbone, tok = load_pretrained(cfg.model, head="masked-lm")
    run = StageRun(out, {"command": "topro", "config": config_dict(cfg)}, resume)
    torch.manual_seed(cfg.seed)  # fresh heads are drawn from the global generator
    if cfg.method == "topro":
        tpl = ToProTemplate(tok, ToProConfig(task=cfg.task, max_length=cfg.max_len, max_tokens_per_batch=cfg.max_tokens,
                                             train_words_per_sentence=size_or_none(cfg.words_per_sentence)))
        prefix = decoder_prefix_for(backbone, tok) if detect_architecture(backbone) == "encoder-decoder" else ()
        model = ToProTagger(backbone, tpl.label_ids, prefix).to(device)
        task = ToProTask(model, tpl, splits, device=device)
        lr = cfg.lr
    else:
        prompt = None
        if cfg.method == "prompt":
            emb = backbone.get_input_embeddings().weight
            prompt = SoftPrompt.from_config(SoftPromptConfig(num_tokens=cfg.prompt_tokens, seed=cfg.seed), emb)
        model = TokenClassifier(backbone, len(TAGS[cfg.task]), prompt=prompt,
                                train_backbone=cfg.method == "finetune").to(device)
        make_task = TokenProbeTask if cfg.method == "probe" else TokenTask
        task = make_task(model, tok, splits, max_length=cfg.max_len, batch_size=cfg.batch_size, device=device)
        lr = {"finetune": cfg.lr, "prompt": cfg.prompt_lr, "probe": cfg.probe_lr}[cfg.method]
    metric = METRIC[cfg.task]
    res = run.fit("train", task, TrainConfig(epochs=cfg.epochs, lr=lr, optimizer="adamw", metric=metric,
                                             patience=0, seed=cfg.seed, progress=False))

    def zero_shot() -> dict[str, float]:
        with torch.no_grad():
            return {lang: task.evaluate(lang)[metric] for lang in splits.zero_shot}

    scores = {"en": res["test"][metric], **run.cached("zero-shot", zero_shot)}
    return run.finish({
        "task": cfg.task, "method": cfg.method, "protocol": splits.protocol, "languages": ["en", *cfg.langs],
        "metric": metric, "scores": scores, "valid_en": res["valid"][metric], "best_epoch": res["best_epoch"],
        "fit": res, "trainable_params": count_parameters(model).trainable,
        "sizes": {"train": len(splits.train), "valid": len(splits.valid), "test": len(splits.test),
                  **{lang: len(v) for lang, v in splits.zero_shot.items()}},
        "unk_rate": {"en": unk_rate(tok, splits.test), **{k: unk_rate(tok, v) for k, v in splits.zero_shot.items()}},
    })
