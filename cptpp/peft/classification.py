"""Text(-pair) classification with any Hugging Face backbone: examples, verbalizer ids, encoding, metrics and
the ``cptpp.train.fit`` task that SuperGLUE, TNCC and the PEFT methods on them share.

An example is a pair ``(text_a, text_b)`` (context, question about it). An encoder reads the pair
``[CLS] a [SEP] b [SEP]``; an LM reads ``"{text_a}\\n{text_b}\\nAnswer:"`` and a class is scored by the
logit of its verbalizer word's first sub-token (:func:`verbalizer_ids`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cptpp.config import ConfigError, check_range
from cptpp.train.batching import pad_batch


@dataclass(frozen=True)
class Example:
    """text_a: the long context (passage/premise/sentence/title); text_b: the question about it; label: class
    index; group: which question an answer option belongs to (MultiRC EM), else the example's id."""

    text_a: str
    text_b: str
    label: int
    group: str


# ---------------------------------------------------------------- tokenization


def verbalizer_ids(tokenizer, words: Sequence[str], architecture: str = "encoder") -> list[int]:
    """First sub-token id of each verbalizer word, in order; they must be distinct.

    A decoder reads the word right after "Answer:", so it is tokenized with a leading space; a masked LM
    or an encoder-decoder predicts it on its own (no space).
    """
    ids = []
    for w in words:
        text = " " + w if architecture == "decoder" else w
        toks = tokenizer.encode(text, add_special_tokens=False)
        if not toks:
            raise ConfigError(f"verbalizer word {w!r} tokenizes to nothing")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        dup = [w for w, i in zip(words, ids) if ids.count(i) > 1]
        raise ConfigError(f"verbalizer words {dup} share a first token; pick distinct words")
    return ids


def encode(examples: Sequence[Example], tokenizer, architecture: str, max_length: int) -> list[list[int]]:
    """Token ids per example (unpadded). Encoder: ``[CLS] a [SEP] b [SEP]`` truncated longest-first;
    LM: ``a \\n b \\nAnswer:`` with ``a`` cut from the end so the question and "Answer:" always survive."""
    if architecture == "encoder":
        enc = tokenizer([e.text_a for e in examples], [e.text_b for e in examples],
                        truncation="longest_first", max_length=max_length)
        return [list(ids) for ids in enc["input_ids"]]
    eos = [tokenizer.eos_token_id] if architecture == "encoder-decoder" and tokenizer.eos_token_id is not None else []
    out = []
    for e in examples:
        tail = tokenizer.encode("\n" + e.text_b + "\nAnswer:", add_special_tokens=False) + eos
        head = tokenizer.encode(e.text_a, add_special_tokens=False)[: max(0, max_length - len(tail))]
        out.append((head + tail)[-max_length:])
    return out


# ---------------------------------------------------------------- metrics


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(gold)).mean())


def f1_binary(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """F1 of class ``positive`` (0 when it is never predicted nor present)."""
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = float((pred & gold).sum())
    denom = float(pred.sum() + gold.sum())
    return 2 * tp / denom if denom else 0.0


def f1_macro(pred: np.ndarray, gold: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 (SuperGLUE's CB F1, TNCC's macro-F1)."""
    return float(np.mean([f1_binary(pred, gold, c) for c in range(num_classes)]))


# ---------------------------------------------------------------- the fit() task

Metrics = Callable[[np.ndarray, np.ndarray, Sequence[Example]], dict[str, float]]


class ClassificationTask:
    """Adapter for ``cptpp.train.fit``: ``model(input_ids, attention_mask) -> logits [B, C]`` trained with
    cross-entropy. Splits are token-id lists (from :func:`encode`), right-padded per batch with ``pad_id``.

    ``metrics(pred, gold, examples)`` scores a split (default: accuracy); ``metric`` is the key of it that
    selects the best epoch.
    """

    def __init__(self, model: torch.nn.Module, ids: dict[str, list[list[int]]], examples: dict[str, list[Example]],
                 pad_id: int, batch_size: int = 16, eval_batch_size: int = 64,
                 device: torch.device | str = "cpu", metrics: Metrics | None = None, metric: str = "accuracy"):
        check_range("batch_size", batch_size, 1)
        self.model, self.ids, self.examples = model, ids, examples
        self.labels = {s: torch.tensor([e.label for e in ex]) for s, ex in examples.items()}
        self.pad_id, self.batch_size, self.eval_batch_size = pad_id, batch_size, eval_batch_size
        self.device = torch.device(device)
        self.metrics = metrics or (lambda pred, gold, examples: {"accuracy": accuracy(pred, gold)})
        self.metric = metric

    def _batch(self, split: str, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = pad_batch([self.ids[split][i] for i in idx], self.pad_id)
        return ids.to(self.device), mask.to(self.device), self.labels[split][idx].to(self.device)

    def batches(self, epoch: int, generator: torch.Generator):
        perm = torch.randperm(len(self.ids["train"]), generator=generator)
        return [self._batch("train", perm[i: i + self.batch_size].tolist())
                for i in range(0, len(perm), self.batch_size)]

    def iter_split(self, split: str, batch_size: int | None = None):
        """Batches ``(input_ids, attention_mask, labels)`` of ``split`` in order."""
        bs = batch_size or self.eval_batch_size
        n = len(self.ids[split])
        return (self._batch(split, list(range(i, min(i + bs, n)))) for i in range(0, n, bs))

    def loss(self, batch) -> torch.Tensor:
        input_ids, mask, labels = batch
        return F.cross_entropy(self.model(input_ids, mask), labels)

    def predict(self, split: str) -> np.ndarray:
        preds = []
        with torch.no_grad():
            for input_ids, mask, _ in self.iter_split(split):
                preds.append(self.model(input_ids, mask).argmax(-1).cpu())
        return torch.cat(preds).numpy()

    def evaluate(self, split: str) -> dict[str, float]:
        return self.metrics(self.predict(split), self.labels[split].numpy(), self.examples[split])


class HeadOnly(nn.Module):
    """The part of a linear probe that trains: ``model.head`` (shared, not copied), so ``fit`` checkpoints and
    restores the head alone (state keys ``head.weight``/``head.bias``, as in the whole model), not the frozen
    backbone (1 GB for Gemma 3 270M) every epoch. Raises unless the head is all ``model`` trains."""

    def __init__(self, model: nn.Module):
        super().__init__()
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        if getattr(model, "head", None) is None or any(not n.startswith("head.") for n in trainable):
            raise ConfigError(f"a linear probe trains only model.head; trainable here: {trainable[:5]}")
        self.head = model.head


class ProbeTask(ClassificationTask):
    """A linear probe's ``fit`` task: the model's backbone is frozen, so its pooled features
    (``model.features(ids, mask)`` ``[N, H]``) are computed once per split, in eval mode, and an epoch trains
    only ``model.head`` on them. Same data, metrics and results as :class:`ClassificationTask` on the same
    model, at the cost of one forward pass per example instead of one per example and epoch. The features
    are standardized with the training split's mean and std before the head (a fixed affine map, so the
    head stays linear in the features; without it a decoder's large-norm final states make Adam's first
    steps overshoot); :meth:`fold_standardization` folds them into the head's weights. ``task.model`` is
    :class:`HeadOnly` (what ``fit`` trains and checkpoints); ``task.classifier`` the whole model.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.classifier = self.model
        self.model = HeadOnly(self.classifier)
        self._features: dict[str, torch.Tensor] = {}
        train = self.features("train")
        self.shift, self.scale = train.mean(0), train.std(0).clamp_min(1e-6)

    def features(self, split: str) -> torch.Tensor:
        """``[N, H]`` pooled features of ``split``, in its order (computed in length-sorted batches: less padding)."""
        if split not in self._features:
            was_training = self.classifier.training
            self.classifier.eval()
            order = sorted(range(len(self.ids[split])), key=lambda i: len(self.ids[split][i]))
            with torch.no_grad():
                feats = torch.cat([self.classifier.features(*self._batch(split, order[k: k + self.eval_batch_size])[:2])
                                   for k in range(0, len(order), self.eval_batch_size)]).float()
            self.classifier.train(was_training)
            self._features[split] = torch.empty_like(feats)
            self._features[split][torch.tensor(order)] = feats
        return self._features[split]

    def _logits(self, split: str, idx) -> torch.Tensor:
        return self.model.head((self.features(split)[idx] - self.shift) / self.scale)

    def batches(self, epoch: int, generator: torch.Generator):
        perm = torch.randperm(len(self.ids["train"]), generator=generator)
        return [perm[i: i + self.batch_size] for i in range(0, len(perm), self.batch_size)]

    def loss(self, batch) -> torch.Tensor:
        return F.cross_entropy(self._logits("train", batch), self.labels["train"][batch].to(self.device))

    def predict(self, split: str) -> np.ndarray:
        with torch.no_grad():
            return self._logits(split, slice(None)).argmax(-1).cpu().numpy()

    def fold_standardization(self) -> None:
        """Rewrite ``model.head`` so that it reads raw features: ``W' = W / scale``, ``b' = b - W' shift``
        (then ``model(ids, mask)`` gives the probe's logits without this task)."""
        with torch.no_grad():
            head = self.model.head
            head.weight /= self.scale
            head.bias -= head.weight @ self.shift
        self.shift, self.scale = torch.zeros_like(self.shift), torch.ones_like(self.scale)


def probe_task(task: ClassificationTask) -> ProbeTask:
    """The :class:`ProbeTask` over the same model, data and metrics as ``task``."""
    return ProbeTask(task.model, task.ids, task.examples, task.pad_id, batch_size=task.batch_size,
                     eval_batch_size=task.eval_batch_size, device=task.device, metrics=task.metrics,
                     metric=task.metric)
