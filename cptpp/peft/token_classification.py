"""Sequence labelling by token classification, the plain baselines ToPro is compared with, and what every
tagging method shares (how a tokenizer splits words and lays out segment pairs, the evaluation of a tagger).

- :func:`pair_layout` / :func:`word_pieces`: special-token layout of a segment pair; each word's sub-tokens.
- :class:`TokenClassifier`: a linear head on each word's first sub-token state (vanilla fine-tuning), or the
  same with a frozen backbone and a soft prompt (prompt tuning), or with a frozen backbone alone (a linear
  probe; :class:`TokenProbeTask` computes its features once).
- :func:`encode_words` / :func:`collate_words`: sentences -> ids + word-start positions -> padded batches.
- :func:`word_last_bytes` / :func:`encode_words_bytes`: the same for a byte-level causal model (UTF-8 bytes of the
  space-joined words; each word is read at its last byte).
- :class:`TaggingTask`: per-split and per-language evaluation; :class:`TokenTask` is the ``cptpp.train.fit``
  task of a :class:`TokenClassifier`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cptpp.config import ConfigError, check_range
from cptpp.peft.prompt import SoftPrompt, prepend_prompt
from cptpp.peft.tagging_data import TAGS, TaggedSentence, TaggingSplits, tagging_metrics
from cptpp.train.batching import pad, pad_batch, pad_token_id


# ---------------------------------------------------------------- tokenization


@dataclass(frozen=True)
class PairLayout:
    """Where a tokenizer puts its special tokens around a pair ``(A, B)``:
    ``prefix + A + middle + B + suffix``, with segment (token type) ids for each part."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    type_a: int = 0
    type_b: int = 0

    @property
    def num_special(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    def join(self, a: Sequence[int], b: Sequence[int]) -> tuple[list[int], list[int]]:
        """``(input_ids, token_type_ids)`` of the pair."""
        ids = [*self.prefix, *a, *self.middle, *b, *self.suffix]
        n_a = len(self.prefix) + len(a) + len(self.middle)
        return ids, [self.type_a] * n_a + [self.type_b] * (len(ids) - n_a)


def pair_layout(tokenizer) -> PairLayout:
    """Probe ``tokenizer`` with a two-segment input to learn its special-token layout (works for any fast
    tokenizer: BERT ``[CLS] A [SEP] B [SEP]``, XLM-R ``<s> A </s></s> B </s>``, T5 ``A </s> B </s>``)."""
    enc = tokenizer("a", "b", return_token_type_ids=True)
    try:
        seq = enc.sequence_ids()
    except (ValueError, AttributeError):  # slow tokenizer: no alignment information; plain concatenation
        return PairLayout((), (), ())
    ids = list(enc["input_ids"])
    types = list(enc.get("token_type_ids") or [0] * len(ids))
    a = [i for i, s in enumerate(seq) if s == 0]
    b = [i for i, s in enumerate(seq) if s == 1]
    if not a or not b:
        return PairLayout((), (), ())
    return PairLayout(tuple(ids[: a[0]]), tuple(ids[a[-1] + 1: b[0]]), tuple(ids[b[-1] + 1:]),
                      types[a[0]], types[b[0]])


def word_pieces(tokenizer, words: Sequence[str]) -> list[list[int]]:
    """Sub-token ids of each word, tokenized on its own (a word that tokenizes to nothing becomes
    ``[unk]`` so every word keeps a place)."""
    if not words:
        return []
    enc = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    return [list(ids) if len(ids) else [unk] for ids in enc]


# ---------------------------------------------------------------- token classification


class TokenClassifier(nn.Module):
    """Vanilla token classification: ``Linear(H, C)`` on each word's first sub-token state.

    With ``prompt`` (a :class:`SoftPrompt`) and ``train_backbone=False`` this is prompt tuning for tagging:
    the prompt is prepended to the input embeddings and only the prompt and the head train.
    forward(input_ids, attention_mask ``[B, L]``, first ``[B, W]`` word-start positions) -> ``[B, W, C]``.
    """

    def __init__(self, backbone: nn.Module, num_tags: int, prompt: SoftPrompt | None = None,
                 train_backbone: bool = True):
        super().__init__()
        self.backbone = backbone.base_model
        for p in self.backbone.parameters():
            p.requires_grad_(train_backbone)
        self.prompt = prompt
        self.head = nn.Linear(self.backbone.get_input_embeddings().weight.shape[1], num_tags)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(input_ids, attention_mask, first))

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        """Final state of each word's first sub-token, ``[B, W, H]`` (what the head reads)."""
        n_prompt = 0
        if self.prompt is None:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            embeds = self.backbone.get_input_embeddings()(input_ids)
            embeds, mask = prepend_prompt(self.prompt.values(), embeds, attention_mask)
            hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            n_prompt = self.prompt.num_tokens
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        return hidden[rows, first + n_prompt]


@dataclass
class WordBatch:
    """``input_ids``/``attention_mask`` ``[B, L]``, ``first`` ``[B, W]`` (first sub-token of each word, 0 for
    padding), ``labels`` ``[B, W]`` (-100 for padding/unknown), ``n_words`` per sentence."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    first: torch.Tensor
    labels: torch.Tensor
    n_words: list[int] = field(default_factory=list)


def encode_words(tokenizer, sentences: Sequence[TaggedSentence], tag_index: dict[str, int],
                 max_length: int) -> list[tuple[list[int], list[int], list[int]]]:
    """Per sentence ``(ids, first_positions, labels)``. Words cut by ``max_length`` keep position 0 (the
    first special token) so every word still gets a prediction (scored as whatever the head says there)."""
    layout = pair_layout(tokenizer)
    single_prefix = len(layout.prefix)
    out = []
    for s in sentences:
        pieces = word_pieces(tokenizer, s.words)
        room = max_length - layout.num_special + len(layout.middle)  # single segment: prefix + A + suffix
        ids, first, full = list(layout.prefix), [], False
        for p in pieces:
            full = full or len(ids) - single_prefix + len(p) > room
            if full:  # truncation: this word and every later one are cut
                first.append(0)
                continue
            first.append(len(ids))
            ids.extend(p)
        ids.extend(layout.suffix if layout.suffix else layout.middle)
        out.append((ids, first, [tag_index[t] for t in s.tags]))
    return out


def word_last_bytes(words: Sequence[str]) -> tuple[list[int], list[int]]:
    """UTF-8 bytes of ``" ".join(words)`` and the offset of each word's last byte.

    A causal (left-to-right) byte model has read a whole word, and everything before it, at the word's
    last byte, so that is where a word's tag is read (at its first byte it has seen one character).
    E.g. ``["Zürich", "is"]`` -> 9 bytes (``ü`` is 2), last bytes ``[6, 9]``.
    """
    ids: list[int] = []
    last: list[int] = []
    for i, w in enumerate(words):
        if i:
            ids.append(0x20)
        ids.extend(w.encode("utf-8"))
        last.append(len(ids) - 1)
    return ids, last


def encode_words_bytes(sentences: Sequence[TaggedSentence], tag_index: dict[str, int],
                       max_length: int | None = None) -> list[tuple[list[int], list[int], list[int]]]:
    """:func:`encode_words` for a byte-level model: per sentence ``(byte ids, last-byte positions, labels)``.

    ``max_length`` cuts the bytes; a word whose last byte is cut reads position 0 and gets label -100 (left
    out of the loss). ``None`` keeps every byte (evaluation: every word is read at its own last byte).
    """
    out = []
    for s in sentences:
        ids, last = word_last_bytes(s.words)
        labels = [tag_index[t] for t in s.tags]
        if max_length is not None and len(ids) > max_length:
            ids = ids[:max_length]
            labels = [y if p < max_length else -100 for p, y in zip(last, labels)]
            last = [p if p < max_length else 0 for p in last]
        out.append((ids, last, labels))
    return out


def collate_words(items: Sequence[tuple[list[int], list[int], list[int]]], pad_id: int) -> WordBatch:
    """Right-padded :class:`WordBatch` of :func:`encode_words` items."""
    ids, mask = pad_batch([i[0] for i in items], pad_id)
    first = pad([i[1] for i in items], 0)
    return WordBatch(ids, mask, first, pad([i[2] for i in items], -100), [len(i[1]) for i in items])


# ---------------------------------------------------------------- fit() tasks


class TaggingTask:
    """What every tagging ``fit`` task shares: ``evaluate("valid" | "test" | "<lang>")`` -> :func:`tagging_metrics`
    of ``predict`` (per-word tags) on that split or zero-shot language."""

    model: nn.Module

    def __init__(self, splits: TaggingSplits, device: torch.device | str = "cpu"):
        self.splits, self.device = splits, torch.device(device)
        self.task = splits.task
        self.metric = "f1" if self.task == "ner" else "accuracy"  # entity F1 for NER, token accuracy for POS

    def sentences(self, split: str) -> list[TaggedSentence]:
        if split in ("train", "valid", "test"):
            return getattr(self.splits, split)
        if split not in self.splits.zero_shot:
            raise ConfigError(f"no evaluation set {split!r}; have valid, test, {', '.join(self.splits.zero_shot)}")
        return self.splits.zero_shot[split]

    def predict(self, sentences: Sequence[TaggedSentence]) -> list[list[str]]:
        raise NotImplementedError

    def evaluate(self, split: str) -> dict[str, float]:
        sents = self.sentences(split)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            pred = self.predict(sents)
        self.model.train(was_training)
        return tagging_metrics(self.task, [list(s.tags) for s in sents], pred)


class TokenTask(TaggingTask):
    """``cptpp.train.fit`` task for :class:`TokenClassifier` (vanilla fine-tuning or prompt tuning), or any
    model called as ``model(input_ids, attention_mask, positions [B, W]) -> [B, W, C]``; a subclass changes how
    words become ids and positions by overriding :meth:`encode`."""

    def __init__(self, model: TokenClassifier, tokenizer, splits: TaggingSplits, max_length: int = 256,
                 batch_size: int = 16, eval_batch_size: int = 64, device: torch.device | str = "cpu"):
        super().__init__(splits, device)
        check_range("batch_size", batch_size, 1)
        # the soft prompt's tokens share the model's positions with the words: leave room for them
        prompt = getattr(model, "prompt", None)
        n_prompt = prompt.num_tokens if prompt is not None else 0
        check_range("max_length", max_length - n_prompt, 1)
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length - n_prompt
        self.tags = TAGS[splits.task]
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.pad_id = pad_token_id(tokenizer)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_items = self.encode(splits.train, train=True)

    def encode(self, sentences: Sequence[TaggedSentence], train: bool = False):
        """Items ``(ids, positions, labels)`` for :func:`collate_words` (``train``: the training set)."""
        return encode_words(self.tokenizer, sentences, self.tag_index, self.max_length)

    def batches(self, epoch: int, generator: torch.Generator) -> list[WordBatch]:
        order = torch.randperm(len(self.train_items), generator=generator).tolist()
        return [collate_words([self.train_items[i] for i in order[k: k + self.batch_size]], self.pad_id)
                for k in range(0, len(order), self.batch_size)]

    def _logits(self, b: WordBatch) -> torch.Tensor:
        return self.model(b.input_ids.to(self.device), b.attention_mask.to(self.device), b.first.to(self.device))

    def loss(self, batch: WordBatch) -> torch.Tensor:
        logits = self._logits(batch)
        return F.cross_entropy(logits.flatten(0, 1), batch.labels.to(self.device).flatten(), ignore_index=-100)

    def predict(self, sentences: Sequence[TaggedSentence]) -> list[list[str]]:
        items = self.encode(sentences)
        out = []
        for k in range(0, len(items), self.eval_batch_size):
            b = collate_words(items[k: k + self.eval_batch_size], self.pad_id)
            pred = self._logits(b).argmax(-1).cpu()
            out.extend([[self.tags[t] for t in pred[i, :n].tolist()] for i, n in enumerate(b.n_words)])
        return out


class TokenProbeTask(TokenTask):
    """A per-token linear probe's ``fit`` task: ``model`` is a :class:`TokenClassifier` with a frozen backbone and
    no prompt, so each word's feature (:meth:`TokenClassifier.features`, ``[H]``) is computed once per split,
    in eval mode, and an epoch trains only ``model.head`` on them (batches of ``batch_size`` sentences). The
    scores equal :class:`TokenTask`'s on the same model; only the backbone's repeated forward passes go."""

    def __init__(self, model: TokenClassifier, *args, **kwargs):
        from cptpp.peft.classification import HeadOnly

        if model.prompt is not None:
            raise ConfigError("a linear probe trains only model.head: build the TokenClassifier without a prompt")
        super().__init__(model, *args, **kwargs)
        self.classifier = model
        self.model = HeadOnly(model)  # what fit trains and checkpoints: the head, not the frozen backbone
        self._cache: dict[str, list[torch.Tensor]] = {}
        self.train_labels = [torch.tensor(item[2]) for item in self.train_items]

    def _word_features(self, items) -> list[torch.Tensor]:
        """Per sentence ``[n_words, H]``, in order (computed in length-sorted batches: less padding)."""
        out: list[torch.Tensor] = [torch.zeros(0)] * len(items)
        order = sorted(range(len(items)), key=lambda i: len(items[i][0]))
        was_training = self.classifier.training
        self.classifier.eval()
        with torch.no_grad():
            for k in range(0, len(order), self.eval_batch_size):
                idx = order[k: k + self.eval_batch_size]
                b = collate_words([items[i] for i in idx], self.pad_id)
                f = self.classifier.features(b.input_ids.to(self.device), b.attention_mask.to(self.device),
                                        b.first.to(self.device)).float()
                for j, (i, n) in enumerate(zip(idx, b.n_words)):
                    out[i] = f[j, :n]
        self.classifier.train(was_training)
        return out

    def features(self, split: str) -> list[torch.Tensor]:
        if split not in self._cache:
            items = self.train_items if split == "train" else encode_words(
                self.tokenizer, self.sentences(split), self.tag_index, self.max_length)
            self._cache[split] = self._word_features(items)
        return self._cache[split]

    def batches(self, epoch: int, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(self.train_items), generator=generator).tolist()
        return [order[k: k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    def loss(self, batch: list[int]) -> torch.Tensor:
        feats = self.features("train")
        x = torch.cat([feats[i] for i in batch])
        y = torch.cat([self.train_labels[i] for i in batch]).to(self.device)
        return F.cross_entropy(self.model.head(x), y)

    def evaluate(self, split: str) -> dict[str, float]:
        sents = self.sentences(split)
        with torch.no_grad():
            pred = [[self.tags[t] for t in self.model.head(f).argmax(-1).tolist()] for f in self.features(split)]
        return tagging_metrics(self.task, [list(s.tags) for s in sents], pred)
