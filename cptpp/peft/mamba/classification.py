"""Byte-level token and sentence classification with a Mamba, fully fine-tuned or with a MambaPEFT config.

The primary tasks of ``benchmarks/mamba_table.py`` -- ones a small byte-level Mamba can learn from the
mirror's training data (the commonsense multiple-choice sets, :mod:`cptpp.peft.mamba.experiment`, it cannot):

- ``pos``: UD-POS English (:mod:`cptpp.peft.tagging_data`: train-en / dev-en valid / test-en test), token accuracy.
- ``ner``: PAN-X English (train-en; dev-en split in seeded halves into valid / test), entity F1 (conlleval).
- ``tncc``: TNCC-title, Tibetan news titles in 12 topics (:mod:`cptpp.peft.tncc`), macro-F1.

Input is UTF-8 bytes (:class:`~cptpp.peft.tokenizers.ByteTokenizer`). Tagging joins a sentence's words with
one space and reads each word's tag at its **last byte** (:func:`~cptpp.peft.token_classification.word_last_bytes`):
a causal model has read the whole word there (no right context: the tagger is one-directional). A title is
read as ``"{title}\\nWhat is the topic?\\nAnswer:"`` (:func:`~cptpp.peft.tncc.build_tncc_task`) and
classified from the **mean** of the final hidden states over its bytes (a 2.7M-parameter state need not
carry a 160-byte title to its last byte); titles are spelled as published (syllables split by spaces), as in
the pre-training text (``cptpp.peft.mamba.corpus``). The head, ``Linear(hidden, classes)``, trains with every method.

``seed`` draws the training subsample (``max_train``), the head, the adapters and the batch order; the
evaluation sets are fixed (seed 0), so every seed is scored on the same sentences.
"""
from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
from torch import nn
from transformers import MambaForCausalLM

from cptpp.config import check_choice
from cptpp.peft.mamba.tuners import ADDED_NAMES, MambaPeftConfig, apply_mamba_peft, use_cptpp_scan
from cptpp.peft.tagging_data import TAGS, TaggedSentence, TaggingSplits, load_tagging_splits, subsample, tagging_metrics
from cptpp.peft.tncc import LABELS, build_tncc_task, load_tncc, stratified_subsample, tncc_metrics
from cptpp.peft.token_classification import TokenTask, collate_words, encode_words_bytes
from cptpp.peft.tokenizers import ByteTokenizer
from cptpp.train import TrainConfig, fit
from cptpp.train.batching import length_bucketed
from cptpp.train.params import count_parameters

TASKS = ("pos", "ner", "tncc")
METRIC = {"pos": "accuracy", "ner": "f1", "tncc": "macro_f1"}  # model selection and the table's number


class MambaClassifier(nn.Module):
    """``Linear(hidden, num_classes)`` on the final (normed) hidden states of a Mamba LM's backbone.

    forward(input_ids ``[B, L]``, attention_mask ``[B, L]``, positions ``[B, W]`` or None) -> logits
    ``[B, W, C]`` at ``positions`` (tagging), or ``[B, C]`` from the mean over real positions (a sentence).
    The LM head is not used (tied to the embeddings, it adds no parameters).
    """

    def __init__(self, lm: MambaForCausalLM, num_classes: int):
        super().__init__()
        self.lm = lm
        self.head = nn.Linear(lm.config.hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.lm.backbone(input_ids=input_ids, attention_mask=attention_mask,
                                  use_cache=False).last_hidden_state  # [B, L, H]
        if positions is not None:
            rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
            return self.head(hidden[rows, positions])
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * m).sum(1) / m.sum(1).clamp(min=1))


class ByteTokenTask(TokenTask):
    """:class:`TokenTask` over bytes: training sentences cut to ``max_length`` bytes (cut words leave the
    loss) in length-bucketed random batches (bytes make padding costly), evaluation reads every word (no
    cut), batched by length."""

    def __init__(self, model: MambaClassifier, splits: TaggingSplits, **kwargs: Any):
        super().__init__(model, ByteTokenizer(), splits, **kwargs)

    def encode(self, sentences: Sequence[TaggedSentence], train: bool = False):
        return encode_words_bytes(sentences, self.tag_index, self.max_length if train else None)

    def batches(self, epoch: int, generator: torch.Generator):
        lengths = [len(item[0]) for item in self.train_items]
        return [collate_words([self.train_items[i] for i in idx], self.pad_id)
                for idx in length_bucketed(lengths, self.batch_size, generator)]

    def predict(self, sentences: Sequence[TaggedSentence]) -> list[list[str]]:
        items = self.encode(sentences)
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))  # little padding per batch
        out: list[list[str]] = [[] for _ in items]
        for k in range(0, len(order), self.eval_batch_size):
            idx = order[k: k + self.eval_batch_size]
            b = collate_words([items[i] for i in idx], self.pad_id)
            pred = self._logits(b).argmax(-1).cpu()
            for row, (i, n) in enumerate(zip(idx, b.n_words)):
                out[i] = [self.tags[t] for t in pred[row, :n].tolist()]
        return out


@dataclass
class TaskData:
    """One task's splits: :class:`TaggingSplits` (pos, ner) or ``{"train", "valid", "test"}`` titles (tncc)."""

    task: str
    splits: Any
    labels: tuple[str, ...]
    protocol: str

    @property
    def metric(self) -> str:
        return METRIC[self.task]

    def sizes(self) -> dict[str, int]:
        get = (lambda s: self.splits[s]) if self.task == "tncc" else (lambda s: getattr(self.splits, s))
        return {s: len(get(s)) for s in ("train", "valid", "test")}


def load_task(task: str, seed: int = 0, *, max_train: int | None = None, max_eval: int | None = None,
              root=None, verify: bool = True) -> TaskData:
    """Splits of ``task``: the training set subsampled to ``max_train`` with ``seed``, the evaluation sets to
    ``max_eval`` with seed 0 (the same for every ``seed``)."""
    check_choice("task", task, TASKS)
    if task == "tncc":
        splits = load_tncc(root, seed=0, max_valid=max_eval, max_test=max_eval, verify=verify)
        splits["train"] = stratified_subsample(splits["train"], max_train, seed)
        protocol = "TNCC-title: published train / validation / test split"
        if max_train:
            protocol += f"; train stratified-subsampled to about {max_train} titles (the run's seed)"
        if max_eval:
            protocol += f"; validation and test stratified-subsampled to about {max_eval} titles (seed 1, 2)"
        return TaskData(task, splits, LABELS, protocol)
    splits = load_tagging_splits(task, (), root, seed=0, max_eval=max_eval, verify=verify)
    if max_train is not None and len(splits.train) > max_train:
        splits.train = subsample(splits.train, max_train, seed)
        splits.protocol += f"; train subsampled to {max_train} sentences (the run's seed)"
    return TaskData(task, splits, TAGS[task], splits.protocol)


def constant_baseline(data: TaskData) -> dict[str, Any]:
    """Always the training set's most frequent tag / topic:
    ``{"valid": metrics, "test": metrics, "constant": label}``."""
    if data.task == "tncc":
        gold = {s: [t.label for t in data.splits[s]] for s in ("train", "valid", "test")}
        top = Counter(gold["train"]).most_common(1)[0][0]
        scores = {s: tncc_metrics([top] * len(gold[s]), gold[s]) for s in ("valid", "test")}
        return scores | {"constant": LABELS[top]}
    top = Counter(t for s in data.splits.train for t in s.tags).most_common(1)[0][0]
    scores = {}
    for split in ("valid", "test"):
        sents = getattr(data.splits, split)
        scores[split] = tagging_metrics(data.task, [list(s.tags) for s in sents], [[top] * len(s.tags) for s in sents])
    return scores | {"constant": top}


def build_task(data: TaskData, model: MambaClassifier, *, max_len: int = 256, batch_size: int = 16,
               eval_batch_size: int = 64, device: torch.device | str = "cpu"):
    """The ``fit`` task of ``model`` on ``data`` (training inputs cut to ``max_len`` bytes)."""
    if data.task == "tncc":
        return build_tncc_task(data.splits, model, ByteTokenizer(), "decoder", max_len, batch_size=batch_size,
                               eval_batch_size=eval_batch_size, device=device)
    return ByteTokenTask(model, data.splits, max_length=max_len, batch_size=batch_size,
                         eval_batch_size=eval_batch_size, device=device)


def classifier(lm: MambaForCausalLM, num_classes: int, peft: MambaPeftConfig | None, seed: int = 0) -> MambaClassifier:
    """A copy of ``lm`` made trainable (``peft`` None: every weight) or adapted with ``peft`` (adapters seeded
    with ``seed``), under a fresh seeded head. Trains: everything, or the adapters (+ norms for
    ``partial:norm``) and the head."""
    lm = copy.deepcopy(lm)
    if peft is None:
        use_cptpp_scan(lm).requires_grad_(True)
    else:
        apply_mamba_peft(lm, replace(peft, seed=seed))
    torch.manual_seed(seed)
    return MambaClassifier(lm, num_classes).to(next(lm.parameters()).device)


def finetune_classifier(lm: MambaForCausalLM, data: TaskData, peft: MambaPeftConfig | None, train: TrainConfig,
                        *, max_len: int = 256, batch_size: int = 16, eval_batch_size: int = 64) -> dict[str, Any]:
    """Fine-tune ``classifier(lm, ..., peft, train.seed)`` on ``data`` with ``fit``: its results (valid/test at
    the best validation epoch) plus trainable / base parameter counts."""
    model = classifier(lm, len(data.labels), peft, train.seed)
    count = count_parameters(model, base=model.lm, added=ADDED_NAMES)
    device = next(model.parameters()).device
    task = build_task(data, model, max_len=max_len, batch_size=batch_size, eval_batch_size=eval_batch_size,
                      device=device)
    results = fit(task, replace(train, metric=data.metric))
    return results | {"trainable_params": count.trainable, "base_params": count.base,
                      "trainable_percent": count.percent}
