"""PAN-X (WikiANN NER) and UD-POS loaders in the XTREME token-per-line format, and their metrics.

Files (``token<TAB>tag`` per line, a blank line between sentences) are found under
``$CPTPP_DATA_MIRROR/text`` then ``$CPTPP_DATA_HOME/text`` as ``wikiann-panx/<split>-<lang>.tsv`` and
``udpos/<split>-<lang>.tsv`` (German UD test: ``udpos/de_gsd/test-de.tsv``, a GSD-only substitute, see its
SOURCE.txt). Files whose names are known are checked against the sha256 of the mirrored copies.

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
from cptpp.download import verify_sha256
from cptpp.peft.superglue import data_roots

TASKS = ("ner", "pos")
NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
POS_TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
            "PUNCT", "SCONJ", "SYM", "VERB", "X")
TAGS = {"ner": NER_TAGS, "pos": POS_TAGS}
FOLDERS = {"ner": "wikiann-panx", "pos": "udpos"}
# languages with labelled evaluation files in the mirror
LANGUAGES = {"ner": ("en", "de", "zh", "ar", "hi", "sw", "ja", "ru"), "pos": ("en", "de", "zh", "ar", "hi", "ja")}
SHA256 = {
    "wikiann-panx/train-en.tsv": "809286bb322c820bb2a47994e72d50672ea274d02a9d53fc8b9bdf8c0445ecc5",
    "wikiann-panx/dev-en.tsv": "c5c22863492835ba1a492593b771b95289842cd710ade1439b72b4c1f0989227",
    "wikiann-panx/dev-de.tsv": "36d3b5664754b90ea7d5e3d839cd4afe2868d4e645a60d0fc68949523023d91f",
    "wikiann-panx/dev-zh.tsv": "bb39ed57694f5aa92938fd984be76a0241dfd6ef307dd043431cdae5863e0fa4",
    "wikiann-panx/dev-ar.tsv": "8bbe74e2799ced5e4b61962701d720fd0db0256e9a17bdfb349d51a3060023c3",
    "wikiann-panx/dev-hi.tsv": "440eadf30016255ae067ecfb25a49b6f564a558bd25fa085b9b84e17328c02d4",
    "wikiann-panx/dev-sw.tsv": "980f13712c86cc975dfff00e0e718a9a8b0c0edb4428beb297d0ad28940fb1e5",
    "wikiann-panx/dev-ja.tsv": "3a198ded8e6a5defb171210ea21eedbc663211d1e4a90de8a5b505127b7ef7a8",
    "wikiann-panx/dev-ru.tsv": "ed0f75e9acc5ae17c50fe1c922efb40d541a1a9c92b76909367d92ba164019f3",
    "udpos/train-en.tsv": "6466fddbd1405b67f508e2218fd122d419cd094786ba4e7c47f84adee2c89647",
    "udpos/dev-en.tsv": "8cf9fce926daec6b25fd0a93b225e4a640d2f85384519de3fabfa12a6de32f28",
    "udpos/test-en.tsv": "973635cc0a3e5233f40d9b3d846cc85a5dd6670a25f7b9c4aee52130d0493ca8",
    "udpos/test-zh.tsv": "3c33d99aaad70232bc96c725e3211a93c8ba6598cf5a34c4376fec44939e5c15",
    "udpos/test-ar.tsv": "ffd7ce8fc18726c1b153111610407654d4700d75a9b6f4ae1b314cc5171b96c0",
    "udpos/test-hi.tsv": "55fbe252704dce0f8128ea16babd4c53f273defc376e7914729c3646156feb0d",
    "udpos/test-ja.tsv": "daa1eed8b41159b4143d58939764daa12156ed6cdf632991db47e3f99c0303a5",
    "udpos/de_gsd/test-de.tsv": "18c2bd15f47292c893b91916d3da5ee36164519dd1238e6bb5dc56d439e50090",
}
XTREME_URL = "https://github.com/google-research/xtreme (scripts/download_data.sh)"


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


def find_file(rel: str, root: str | Path | None = None) -> Path:
    roots = [Path(root)] if root is not None else data_roots()
    for r in roots:
        if (r / rel).is_file():
            return r / rel
    raise FileNotFoundError(f"{rel} not found under {', '.join(map(str, roots))}; set CPTPP_DATA_MIRROR to a "
                            f"mirror (its text/ folder) or produce the XTREME files with {XTREME_URL}")


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
                hint = " (PAN-X test files carry no tags: evaluate on dev)" if len(parts) == 1 else ""
                raise ConfigError(f"{path}:{lineno}: expected 'token<TAB>tag', got {line[:60]!r}{hint}")
            if tag_set is not None and parts[1] not in tag_set:
                raise ConfigError(f"{path}:{lineno}: tag {parts[1]!r} is not one of {', '.join(tag_set)}")
            words.append(parts[0])
            tags.append(parts[1])
    if words:
        sentences.append(TaggedSentence(tuple(words), tuple(tags)))
    return sentences


def load_tagging(task: str, split: str, lang: str, root: str | Path | None = None,
                 verify: bool = True) -> list[TaggedSentence]:
    """All sentences of one file (``split`` in train/dev/test as named in XTREME)."""
    rel = relpath(task, split, lang)
    return read_tsv(find_file(rel, root), TAGS[task], SHA256.get(rel) if verify else None)


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

