"""Pre-training text for a byte-level Mamba, from the local data mirror.

Sources (none overlapping an evaluation set of ``benchmarks/mamba_table.py``):
- SuperGLUE MultiRC, RTE, WiC, CB, COPA, WSC: train + val records, their text fields
  (MultiRC: passage and questions; RTE/CB: premise and hypothesis; WiC: both sentences;
  COPA: premise and both choices; WSC: the text). One record = one document.
- UD-POS English train and PAN-X English train: sentences rebuilt from their tokens (no tags),
  ``SENTENCES_PER_DOC`` consecutive sentences per document.
- TNCC-title train: the Tibetan titles (no labels), ``SENTENCES_PER_DOC`` per document.

Left out on purpose: SuperGLUE BoolQ (its validation split is the BoolQ set of the commonsense
benchmark), everything under ``commonsense-llm-adapters``, and the validation/test text of the tasks
the Mamba table fine-tunes on (UD-POS dev/test, PAN-X dev, TNCC validation/test): the base sees the
unlabelled text of their training splits only. Test files of SuperGLUE are not used.

A seeded ``heldout_fraction`` of documents (whole documents, so no text is shared) is held out
for the held-out loss; each side is one UTF-8 byte stream with documents separated by a blank line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cptpp.data_catalog import find_data
from cptpp.peft.superglue import load_records
from cptpp.peft.tagging_data import load_tagging
from cptpp.peft.tncc import read_tncc

SUPERGLUE_TASKS = ("MultiRC", "RTE", "WiC", "CB", "COPA", "WSC")
# training splits only: dev/test sentences are the Mamba table's validation and test sets
TAGGING_FILES = (("pos", "train"), ("ner", "train"))
SENTENCES_PER_DOC = 10
DOC_SEPARATOR = "\n\n"


@dataclass
class Corpus:
    """Train and held-out byte streams (uint8 tensors) and where their text came from."""

    train: torch.Tensor  # [train_bytes] uint8
    heldout: torch.Tensor  # [heldout_bytes] uint8
    documents: int
    heldout_documents: int
    source_bytes: dict[str, int] = field(default_factory=dict)  # UTF-8 bytes of text per source

    def summary(self) -> dict:
        return {"train_bytes": int(self.train.numel()), "heldout_bytes": int(self.heldout.numel()),
                "documents": self.documents, "heldout_documents": self.heldout_documents,
                "source_bytes": dict(self.source_bytes)}


def _record_text(task: str, rec: dict) -> str:
    if task == "MultiRC":
        p = rec["passage"]
        return "\n".join([p["text"]] + [q["question"] for q in p["questions"]])
    if task in ("RTE", "CB"):
        return f"{rec['premise']}\n{rec['hypothesis']}"
    if task == "WiC":
        return f"{rec['sentence1']}\n{rec['sentence2']}"
    if task == "COPA":
        return f"{rec['premise']}\n{rec['choice1']}\n{rec['choice2']}"
    return rec["text"]  # WSC


_NO_SPACE_BEFORE = re.compile(r" ([.,;:!?%)\]}]|n't\b|'s\b|'re\b|'m\b|'ll\b|'ve\b|'d\b)")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) ")


def detokenize(words) -> str:
    """Tokens of a treebank-style sentence back to running text ("Hello , world ." -> "Hello, world.")."""
    return _NO_SPACE_AFTER.sub(r"\1", _NO_SPACE_BEFORE.sub(r"\1", " ".join(words)))


def corpus_documents(root: str | Path | None = None, verify: bool = True) -> list[tuple[str, str]]:
    """(source, text) of every distinct document, in a fixed order.

    ``root``: a folder laid out like the mirror's text/ (default: mirror -> cache, see ``cptpp.data_catalog``);
    ``verify``: check the published sha256 of each file. Exact duplicates are dropped (WSC repeats a
    text once per pronoun/candidate pair), so no held-out document also appears in training.
    """
    docs: list[tuple[str, str]] = []
    for task in SUPERGLUE_TASKS:
        for split in ("train", "val"):
            rel = f"superglue/{task}/{split}.jsonl"
            docs += [(rel, _record_text(task, r)) for r in load_records(rel, root, verify)]
    for task, split in TAGGING_FILES:
        sents = [detokenize(s.words) for s in load_tagging(task, split, "en", root, verify)]
        name = f"{'udpos' if task == 'pos' else 'wikiann-panx'}/{split}-en.tsv"
        docs += _grouped(name, sents)
    titles = [t.text for t in read_tncc(find_data("text", "tncc-title/train.txt", root=root, verify=verify))]
    docs += _grouped("tncc-title/train.txt", titles)
    seen: set[str] = set()
    return [(src, text) for src, text in docs if not (text in seen or seen.add(text))]


def _grouped(source: str, lines: list[str]) -> list[tuple[str, str]]:
    return [(source, "\n".join(lines[i:i + SENTENCES_PER_DOC])) for i in range(0, len(lines), SENTENCES_PER_DOC)]


def _stream(texts: list[str]) -> torch.Tensor:
    data = DOC_SEPARATOR.join(texts).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def build_corpus(seed: int = 0, heldout_fraction: float = 0.02, root: str | Path | None = None,
                 verify: bool = True) -> Corpus:
    """Seeded split of whole documents into train / held-out byte streams (see ``corpus_documents``)."""
    docs = corpus_documents(root, verify)
    order = np.random.default_rng(seed).permutation(len(docs))
    n_held = max(1, round(heldout_fraction * len(docs)))
    held = set(order[:n_held].tolist())
    sources: dict[str, int] = {}
    for src, text in docs:
        sources[src] = sources.get(src, 0) + len(text.encode("utf-8"))
    # Training documents in a seeded order, so neighbouring windows mix sources.
    train = [docs[i][1] for i in order[n_held:]]
    heldout = [docs[i][1] for i in sorted(held)]
    return Corpus(_stream(train), _stream(heldout), len(docs), n_held, sources)


def random_windows(stream: torch.Tensor, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """``batch_size`` windows of ``length`` bytes at uniformly random offsets, as token ids. [batch, length] long"""
    if stream.numel() < length:
        raise ValueError(f"the stream has {stream.numel()} bytes, fewer than one window of {length}")
    starts = torch.randint(0, stream.numel() - length + 1, (batch_size,), generator=generator)
    return stream[starts[:, None] + torch.arange(length)].long()


def heldout_windows(stream: torch.Tensor, length: int, limit: int | None = None) -> torch.Tensor:
    """Non-overlapping windows covering the stream (the tail shorter than ``length`` is dropped);
    ``limit`` keeps that many, evenly spaced. [n, length] long"""
    n = stream.numel() // length
    if n == 0:
        raise ValueError(f"the held-out stream has {stream.numel()} bytes, fewer than one window of {length}")
    windows = stream[: n * length].view(n, length)
    if limit is not None and limit < n:
        windows = windows[torch.linspace(0, n - 1, limit).round().long()]
    return windows.long()
