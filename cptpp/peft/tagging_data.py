"""PAN-X (WikiANN NER) and UD-POS loaders in the XTREME token-per-line format, and their metrics.

Files (``token<TAB>tag`` per line, a blank line between sentences) ``wikiann-panx/<split>-<lang>.tsv`` and
``udpos/<split>-<lang>.tsv`` (German UD test: ``udpos/de_gsd/test-de.tsv``, a GSD-only substitute, see its
SOURCE.txt) are found like every dataset (``$CPTPP_DATA_MIRROR/text`` -> ``$CPTPP_DATA_HOME/text``; see
:mod:`cptpp.data_catalog`, which says how to produce them with XTREME's script) and checked against the
sha256 of the mirrored copies.

Cross-lingual protocol (train on English, zero-shot on the rest):

- UD-POS: train-en / dev-en (model selection) / test-en; other languages: their labelled test files.
- PAN-X: XTREME strips the tags from every ``test-*.tsv``, so English dev is split (seeded, halves) into
  valid (model selection) and test; other languages are evaluated on their labelled dev files.

Metrics: POS token accuracy; NER entity-level micro F1 with conlleval/seqeval (default mode) chunking, where
an ``I-X`` that does not continue an ``X`` entity starts a new one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cptpp.config import ConfigError, check_choice
from cptpp.data_catalog import find_data
from cptpp.download import MalformedLineError, verify_sha256

TASKS = ("ner", "pos")
NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
POS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
            "PUNCT", "SCONJ", "SYM", "VERB", "X")
TAGS = {"ner": NER_TAGS, "pos": POS_TAGS}
FOLDERS = {"ner": "wikiann-panx", "pos": "udpos"}
# languages with labelled evaluation files in the mirror
LANGUAGES = {"ner": ("en", "de", "zh", "ar", "hi", "sw", "ja", "ru"), "pos": ("en", "de", "zh", "ar", "hi", "ja")}


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: ``words[i]`` has tag ``tags[i]``."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self):
        if len(self.words) != len(self.tags):
            raise ConfigError(f"{len(self.words)} words but {len(self.tags)} tags")


# ---------------------------------------------------------------- files


def relpath(task: str, split: str, lang: str) -> str:
    """Mirror-relative path of one file, e.g. ``("pos", "test", "de") -> "udpos/de_gsd/test-de.tsv"``."""
    check_choice("task", task, TASKS)
    check_choice("split", split, ("train", "dev", "test"))
    if task == "pos" and split == "test" and lang == "de":
        return "udpos/de_gsd/test-de.tsv"
    return f"{FOLDERS[task]}/{split}-{lang}.tsv"


def find_file(rel: str, root: str | Path | None = None, verify: bool = True) -> Path:
    """``rel`` from :func:`relpath`: under ``root`` only (laid out like the mirror's text/), else mirror -> cache;
    the XTREME release is a script, so a missing file is an error saying how to produce it."""
    return find_data("text", rel, root=root, verify=verify)


def read_tsv(path: str | Path, tag_set: tuple[str, ...] | None = None,
             expected_sha256: str | None = None) -> list[TaggedSentence]:
    """Sentences of an XTREME ``token<TAB>tag`` file. A line without a tab (e.g. PAN-X's unlabelled test
    files), an empty token or a tag outside ``tag_set`` is an error naming the file and line."""
    path = Path(path)
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256, hint="not the published copy")
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                if words:
                    sentences.append(TaggedSentence(tuple(words), tuple(tags)))
                    words, tags = [], []
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0]:
                why = "no tab (PAN-X test files carry no tags: evaluate on dev)" if len(parts) == 1 else ""
                raise MalformedLineError(path, lineno, line, "'token<TAB>tag'", why)
            if tag_set is not None and parts[1] not in tag_set:
                raise MalformedLineError(path, lineno, line, f"a tag in {', '.join(tag_set)}",
                                         f"unknown tag {parts[1]!r}")
            words.append(parts[0])
            tags.append(parts[1])
    if words:
        sentences.append(TaggedSentence(tuple(words), tuple(tags)))
    return sentences


def load_tagging(task: str, split: str, lang: str, root: str | Path | None = None,
                 verify: bool = True) -> list[TaggedSentence]:
    """All sentences of one file (``split`` in train/dev/test as named in XTREME)."""
    return read_tsv(find_file(relpath(task, split, lang), root, verify), TAGS[task])


# ---------------------------------------------------------------- splits


@dataclass
class TaggingSplits:
    """English train/valid/test plus zero-shot evaluation sets ``{lang: sentences}``."""

    task: str
    train: list[TaggedSentence]
    valid: list[TaggedSentence]
    test: list[TaggedSentence]
    zero_shot: dict[str, list[TaggedSentence]] = field(default_factory=dict)
    protocol: str = ""


def subsample(items: list, n: int | None, seed: int) -> list:
    """``n`` items drawn without replacement (seeded), original order kept; all if ``n`` is None or larger."""
    if n is None or len(items) <= n:
        return list(items)
    idx = np.sort(np.random.default_rng(seed).choice(len(items), n, replace=False))
    return [items[i] for i in idx]


def load_tagging_splits(task: str, langs: tuple[str, ...] | list[str] = (), root: str | Path | None = None, *,
                        seed: int = 0, max_train: int | None = None, max_eval: int | None = None,
                        verify: bool = True) -> TaggingSplits:
    """The cross-lingual protocol of the module docstring; ``langs`` are the zero-shot languages (not en).

    ``max_train`` / ``max_eval`` subsample (seeded) train and every evaluation set; the protocol says so.
    """
    check_choice("task", task, TASKS)
    for lang in langs:
        check_choice("language", lang, LANGUAGES[task][1:])
    train = load_tagging(task, "train", "en", root, verify)
    if task == "pos":
        valid, test = load_tagging(task, "dev", "en", root, verify), load_tagging(task, "test", "en", root, verify)
        protocol = "UD-POS: train-en / dev-en (valid) / test-en; zero-shot on test-<lang> (de: UD German-GSD test)"
        zero_split = "test"
    else:
        dev = load_tagging(task, "dev", "en", root, verify)
        perm = np.random.default_rng(seed).permutation(len(dev))
        half = len(dev) // 2
        valid = [dev[i] for i in np.sort(perm[:half])]
        test = [dev[i] for i in np.sort(perm[half:])]
        protocol = (f"PAN-X: train-en; dev-en split in halves (seed {seed}) into valid/test (test files are "
                    "unlabelled); zero-shot on dev-<lang>")
        zero_split = "dev"
    zero = {lang: load_tagging(task, zero_split, lang, root, verify) for lang in langs}
    if max_train is not None and len(train) > max_train:
        protocol += f"; train subsampled to {max_train} sentences (seed {seed})"
    if max_eval is not None:
        protocol += f"; every evaluation set subsampled to at most {max_eval} sentences (seed {seed})"
    return TaggingSplits(task, subsample(train, max_train, seed), subsample(valid, max_eval, seed + 1),
                         subsample(test, max_eval, seed + 2),
                         {k: subsample(v, max_eval, seed + 3) for k, v in zero.items()}, protocol)


# ---------------------------------------------------------------- metrics


def entity_spans(tags: list[str] | tuple[str, ...]) -> set[tuple[str, int, int]]:
    """Entities ``(type, start, end_exclusive)`` of an IOB2 sequence, conlleval-style: ``B-X`` starts an
    entity; ``I-X`` continues one of type X and otherwise starts a new one; ``O`` ends it."""
    spans = set()
    kind, start = None, 0
    for i, tag in enumerate(list(tags) + ["O"]):
        prefix, _, label = tag.partition("-")
        continues = prefix == "I" and label == kind
        if kind is not None and not continues:
            spans.add((kind, start, i))
            kind = None
        if prefix in ("B", "I") and not continues:
            kind, start = label, i
    return spans


def entity_f1(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Micro precision / recall / F1 over exact entity matches (type and boundaries) of all sentences.

    Equals seqeval's default (conlleval) mode, ``seqeval.metrics.f1_score(gold, pred)`` with
    ``zero_division=0``, ill-formed IOB2 included (``tests/test_seqeval_parity.py``, to 1e-12); not
    ``mode="strict"``, which drops an ``I-X`` without a ``B-X`` instead of starting an entity there.
    """
    if len(gold) != len(pred):
        raise ConfigError(f"{len(gold)} gold sentences but {len(pred)} predicted")
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred):
        if len(g) != len(p):
            raise ConfigError(f"sentence has {len(g)} gold tags but {len(p)} predicted")
        gs, ps = entity_spans(g), entity_spans(p)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def token_accuracy(gold: list[list[str]], pred: list[list[str]]) -> float:
    right = total = 0
    for g, p in zip(gold, pred, strict=True):
        if len(g) != len(p):
            raise ConfigError(f"sentence has {len(g)} gold tags but {len(p)} predicted")
        right += sum(a == b for a, b in zip(g, p))
        total += len(g)
    return right / total if total else 0.0


def tagging_metrics(task: str, gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """POS: ``{"accuracy"}``; NER: entity ``f1``/``precision``/``recall`` plus token ``accuracy``."""
    check_choice("task", task, TASKS)
    out = {"accuracy": token_accuracy(gold, pred)}
    if task == "ner":
        out.update(entity_f1(gold, pred))
    return out

