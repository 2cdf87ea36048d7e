"""TNCC-title (Tibetan news title classification, 12 classes) loader and a ``cptpp.train.fit`` task.

Files ``tncc-title/{train,validation,test}.txt`` (``<Label><TAB><title>`` per line, the published 8:1:1
split of metaphors/TibetanPLMsFineTuning) are found like every dataset (``$CPTPP_DATA_MIRROR/text`` ->
``$CPTPP_DATA_HOME/text`` -> the published files; see :mod:`cptpp.data_catalog`), sha256-checked.
Metrics: accuracy and macro-F1 (unweighted mean of the 12 per-class F1s).

Reading Tibetan needs a tokenizer that covers the script: a byte-level BPE (SmolLM2, GPT-2 style) always
can (many tokens per syllable); an English WordPiece vocabulary (MiniLM) maps almost every syllable to
``[UNK]`` -- :func:`tokenizer_coverage` measures it.

In the published files the syllables are separated by spaces: the tsheg (U+0F0B, Tibetan's syllable
delimiter) does not occur once in them, nor does the shad, so the delimiter was replaced by spaces when the
corpus was made. :func:`restore_tsheg` writes it back between two syllables; a tokenizer trained on real
Tibetan text (Gemma 3's) then reads a title in ~30% fewer tokens (2.75 instead of 3.97 per syllable on the
training titles), i.e. in the form it was trained on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cptpp.data_catalog import find_data
from cptpp.download import MalformedLineError, numbered_lines
from cptpp.config import ConfigError, check_choice
from cptpp.peft.classification import ClassificationTask, Example, accuracy, encode, f1_macro, verbalizer_ids
from cptpp.train.batching import pad_token_id

LABELS = ("Arts", "Customs", "Economics", "Education", "Environment", "Instruments", "Language", "Literature",
          "Medicine", "Politics", "Religion", "Tourism")
SPLITS = {"train": "train.txt", "valid": "validation.txt", "test": "test.txt"}
TSHEG = "\u0f0b"
TSHEG_MODES = ("restore", "keep")
# whitespace between two Tibetan letters / vowel signs (U+0F40-U+0FBC): a syllable boundary. Head marks
# (U+0F04 U+0F05), digits and Latin text keep their spaces.
_BETWEEN_SYLLABLES = re.compile(r"(?<=[\u0f40-\u0fbc])\s+(?=[\u0f40-\u0fbc])")
_SYLLABLE_BREAK = re.compile(r"[\s\u0f0b]+")
QUESTION = "What is the topic?"


@dataclass(frozen=True)
class Title:
    text: str
    label: int  # index into LABELS


def read_tncc(path: str | Path, expected_sha256: str | None = None) -> list[Title]:
    """Titles of one file; an unknown label or a line without a tab is an error naming file and line."""
    out = []
    for lineno, line in numbered_lines(path, expected_sha256):
        label, sep, text = line.partition("\t")
        if not sep or not text.strip():
            raise MalformedLineError(path, lineno, line, "'<Label><TAB><title>'", "no tab" if not sep else "empty title")
        if label not in LABELS:
            raise MalformedLineError(path, lineno, line, f"a label in {', '.join(LABELS)}", f"unknown label {label!r}")
        out.append(Title(text.strip(), LABELS.index(label)))
    return out


def find_tncc(root: str | Path | None = None, verify: bool = True) -> Path:
    """The folder holding the three split files: under ``root`` only (laid out like the mirror's text/),
    else mirror -> cache -> the published files, each sha256-checked."""
    paths = [find_data("text", f"tncc-title/{name}", root=root, verify=verify) for name in SPLITS.values()]
    if len({p.parent for p in paths}) != 1:  # e.g. a partial mirror: files would mix sources
        raise FileNotFoundError(f"tncc-title split files found in different folders: {', '.join(map(str, paths))}")
    return paths[0].parent


def stratified_subsample(titles: list[Title], n: int | None, seed: int) -> list[Title]:
    """About ``n`` titles with every class kept in proportion (at least one per present class), seeded;
    original order kept. All titles when ``n`` is None or not smaller."""
    if n is None or len(titles) <= n:
        return list(titles)
    rng = np.random.default_rng(seed)
    labels = np.array([t.label for t in titles])
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = max(1, round(n * len(idx) / len(titles)))
        keep.extend(rng.choice(idx, min(k, len(idx)), replace=False).tolist())
    return [titles[i] for i in sorted(keep)]


def load_tncc(root: str | Path | None = None, *, seed: int = 0, max_train: int | None = None,
              max_valid: int | None = None, max_test: int | None = None,
              verify: bool = True) -> dict[str, list[Title]]:
    """``{"train", "valid", "test"}`` from the published split, optionally stratified-subsampled (seeded)."""
    folder = find_tncc(root, verify)
    caps = {"train": max_train, "valid": max_valid, "test": max_test}
    out = {}
    for i, (split, name) in enumerate(SPLITS.items()):
        titles = read_tncc(folder / name)
        out[split] = stratified_subsample(titles, caps[split], seed + i)
    return out


def restore_tsheg(text: str) -> str:
    """``text`` with the whitespace between two Tibetan syllables replaced by a tsheg (་)."""
    return _BETWEEN_SYLLABLES.sub(TSHEG, text)


def with_tsheg(splits: dict[str, list[Title]], mode: str) -> dict[str, list[Title]]:
    """The splits as a model reads them: ``"restore"`` (:func:`restore_tsheg` on every title) or ``"keep"``
    (the published spaces)."""
    check_choice("tsheg", mode, TSHEG_MODES)
    if mode == "keep":
        return splits
    return {k: [replace(t, text=restore_tsheg(t.text)) for t in v] for k, v in splits.items()}


def syllables(text: str) -> list[str]:
    """Syllables of a title, with either spelling of the delimiter (space or tsheg)."""
    return [s for s in _SYLLABLE_BREAK.split(text) if s]


def tncc_metrics(pred, gold) -> dict[str, float]:
    return {"accuracy": accuracy(pred, gold), "macro_f1": f1_macro(pred, gold, len(LABELS))}


def tokenizer_coverage(tokenizer, texts: list[str]) -> dict[str, float]:
    """How well ``tokenizer`` reads ``texts``: fraction of tokens that are the unknown token, mean tokens
    per text and per syllable (:func:`syllables`), the fraction of texts whose token sequence is shared with
    another text, and the same over the distinct syllables: an unreadable script collapses different
    syllables onto ``[UNK]`` (and an uncased BERT normalizer strips Tibetan vowel signs, which are Unicode
    combining marks)."""
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    total = sum(len(e) for e in enc)
    n_unk = sum(sum(t == unk for t in e) for e in enc) if unk is not None else 0
    per_text = [syllables(t) for t in texts]
    words = sorted({w for s in per_text for w in s})
    word_ids = [tuple(e) for e in tokenizer(words, add_special_tokens=False)["input_ids"]] if words else []
    return {"unk_fraction": n_unk / max(total, 1), "tokens_per_text": total / max(len(enc), 1),
            "tokens_per_syllable": total / max(sum(map(len, per_text)), 1),
            "collided_fraction": _collided(enc), "word_collided_fraction": _collided(word_ids)}


def _collided(seqs) -> float:
    """Fraction of sequences whose token ids equal another (different) item's."""
    seqs = [tuple(s) for s in seqs]
    counts: dict[tuple, int] = {}
    for s in seqs:
        counts[s] = counts.get(s, 0) + 1
    return sum(counts[s] > 1 for s in seqs) / max(len(seqs), 1)


def to_examples(titles: list[Title]) -> list[Example]:
    """The SuperGLUE-style pair an encoder or LM reads: (title, question about its topic)."""
    return [Example(t.text, QUESTION, t.label, str(i)) for i, t in enumerate(titles)]


def label_word_ids(tokenizer, architecture: str) -> list[int] | None:
    """Verbalizer ids (first sub-token of each English class name) for LM backbones; None for encoders."""
    check_choice("architecture", architecture, ("encoder", "decoder", "encoder-decoder"))
    return None if architecture == "encoder" else verbalizer_ids(tokenizer, list(LABELS), architecture)


def build_tncc_task(splits: dict[str, list[Title]], model: torch.nn.Module, tokenizer, architecture: str,
                    max_length: int, **kwargs: Any) -> ClassificationTask:
    """Tokenize (titles cut from the end to ``max_length`` tokens, the question kept) and wrap for ``fit``;
    evaluation reports :func:`tncc_metrics`."""
    examples = {s: to_examples(t) for s, t in splits.items()}
    ids = {s: encode(ex, tokenizer, architecture, max_length) for s, ex in examples.items()}
    return ClassificationTask(model, ids, examples, pad_token_id(tokenizer),
                              metrics=lambda pred, gold, ex: tncc_metrics(pred, gold), metric="macro_f1",
                              **kwargs)
