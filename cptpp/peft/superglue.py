"""SuperGLUE loaders, verbalizers and metrics; :func:`build_task` makes a ``cptpp.train.fit`` task of a task's splits.

Evaluation protocol (SuperGLUE test labels are hidden): the official train split is divided into
train / valid by a seeded permutation (``valid_fraction`` held out, for model selection only) and the
official validation split is the test set, reported once. Tasks without a train file here (BoolQ) are
few-shot: FewGLUE's 32-example train, P-tuning's dev32 as valid, the official validation as test.

Files ``superglue/<Task>/{train,val}.jsonl`` and ``fewglue/<Task>/{train,dev32}.jsonl`` are found like every
dataset (``$CPTPP_DATA_MIRROR/text`` -> ``$CPTPP_DATA_HOME/text`` -> the official URL; see
:mod:`cptpp.data_catalog`) and checked against the sha256 of the published copies.

Every task becomes a list of :class:`~cptpp.peft.classification.Example` ``(text_a, text_b, label, group)``:
an encoder reads the pair, an LM reads ``"{text_a}\\n{text_b}\\nAnswer:"`` and the class is scored by its
verbalizer word.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cptpp.data_catalog import find_data
from cptpp.download import MalformedLineError, numbered_lines
from cptpp.config import ConfigError, check_choice, check_range
from cptpp.peft.classification import ClassificationTask, Example, accuracy, encode, f1_binary, f1_macro
from cptpp.train.batching import pad_token_id

TASKS = ("BoolQ", "CB", "COPA", "MultiRC", "RTE", "WiC", "WSC")
# raw label values in class-index order
LABELS: dict[str, list] = {
    "BoolQ": [False, True], "CB": ["entailment", "contradiction", "neutral"], "COPA": [0, 1],
    "MultiRC": [0, 1], "RTE": ["entailment", "not_entailment"], "WiC": [False, True], "WSC": [False, True],
}
# one word per class, same order as LABELS (answers to the question in text_b)
VERBALIZERS: dict[str, list[str]] = {
    "BoolQ": ["no", "yes"], "CB": ["yes", "no", "maybe"], "COPA": ["first", "second"],
    "MultiRC": ["no", "yes"], "RTE": ["yes", "no"], "WiC": ["no", "yes"], "WSC": ["no", "yes"],
}


# ---------------------------------------------------------------- files


def find_file(relpath: str, root: str | Path | None = None, verify: bool = True) -> Path:
    """``relpath`` like ``"superglue/RTE/train.jsonl"``: under ``root`` only (a folder holding superglue/ and
    fewglue/), else mirror -> cache -> official URL (:func:`cptpp.data_catalog.find_data`), sha256-checked."""
    return find_data("text", relpath, root=root, verify=verify)


def read_jsonl(path: str | Path, expected_sha256: str | None = None) -> list[dict]:
    """Records of a JSON-lines file; a checksum mismatch or a bad line is an error naming file and line."""
    records = []
    for lineno, line in numbered_lines(path, expected_sha256):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise MalformedLineError(path, lineno, line, "one JSON object per line",
                                     f"{e.msg} at column {e.colno}") from None
        if not isinstance(rec, dict):
            raise MalformedLineError(path, lineno, line, "one JSON object per line", f"a JSON {type(rec).__name__}")
        records.append(rec)
    return records


def load_records(relpath: str, root: str | Path | None = None, verify: bool = True) -> list[dict]:
    return read_jsonl(find_file(relpath, root, verify))


# ---------------------------------------------------------------- records -> examples


def _label(task: str, rec: dict, where: str) -> int:
    if "label" not in rec:
        raise ConfigError(f"{where}: record idx={rec.get('idx')} has no label (test files are unlabeled)")
    try:
        return LABELS[task].index(rec["label"])
    except ValueError:
        raise ConfigError(f"{where}: label {rec['label']!r} is not one of {LABELS[task]}") from None


def _pair(task: str, rec: dict) -> tuple[str, str]:
    if task == "BoolQ":
        return rec["passage"], f"Question: {rec['question']}?"
    if task in ("CB", "RTE"):
        return rec["premise"], f'Question: does this imply that "{rec["hypothesis"]}"?'
    if task == "WiC":
        return (f"{rec['sentence1']}\n{rec['sentence2']}",
                f'Question: is the word "{rec["word"]}" used in the same sense in both sentences?')
    if task == "WSC":
        t = rec["target"]
        return rec["text"], f'Question: does "{t["span2_text"]}" refer to "{t["span1_text"]}"?'
    if task == "COPA":
        what = "cause" if rec["question"] == "cause" else "effect"
        return rec["premise"], f"Question: what was the {what}: first, {rec['choice1']} or second, {rec['choice2']}?"
    raise ConfigError(f"no pair template for {task}")


def to_examples(task: str, records: list[dict], where: str = "records") -> list[Example]:
    """Convert raw SuperGLUE records (one task) to :class:`Example` s; MultiRC yields one per answer."""
    check_choice("task", task, TASKS)
    if task != "MultiRC":
        return [Example(*_pair(task, r), _label(task, r, where), str(r.get("idx"))) for r in records]
    out = []
    for r in records:
        passage = re.sub(r"<br\s*/?>", " ", r["passage"]["text"])
        passage = re.sub(r"<[^>]+>", "", passage)
        for q in r["passage"]["questions"]:
            for a in q["answers"]:
                out.append(Example(passage, f"Question: {q['question']} Answer: {a['text']}. Is that correct?",
                                   _label(task, a, where), f"{r['idx']}-{q['idx']}"))
    return out


@dataclass
class TaskSplits:
    task: str
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    protocol: str


def split_indices(n: int, valid_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, valid) index split of ``range(n)``; valid has ``max(1, round(frac * n))`` items."""
    perm = np.random.default_rng(seed).permutation(n)
    n_valid = max(1, round(valid_fraction * n))
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


def load_task(task: str, root: str | Path | None = None, *, few_shot: bool = False, valid_fraction: float = 0.1,
              seed: int = 0, max_train: int | None = None, max_valid: int | None = None,
              max_test: int | None = None, verify: bool = True) -> TaskSplits:
    """Train / valid / test :class:`Example` lists following the module's protocol.

    Records (MultiRC: paragraphs) are split before flattening, so no paragraph is in both train and
    valid. ``max_train`` / ``max_test`` subsample (seeded) after splitting; the protocol string says so.
    """
    check_choice("task", task, TASKS)
    check_range("valid_fraction", valid_fraction, 0, 1, lo_open=True)
    if few_shot:
        train_recs = load_records(f"fewglue/{task}/train.jsonl", root, verify)
        valid_recs = load_records(f"fewglue/{task}/dev32.jsonl", root, verify)
        protocol = "few-shot: FewGLUE 32-shot train; P-tuning dev32 as valid; official validation as test"
    else:
        try:
            all_train = load_records(f"superglue/{task}/train.jsonl", root, verify)
        except FileNotFoundError as e:
            if task != "BoolQ":  # the one task whose full train file the mirror does not hold
                raise
            raise FileNotFoundError(f"{e}\n(or use the few-shot protocol, few_shot=True)") from None
        tr, va = split_indices(len(all_train), valid_fraction, seed)
        train_recs, valid_recs = [all_train[i] for i in tr], [all_train[i] for i in va]
        protocol = (f"official train split {100 * (1 - valid_fraction):.0f}/{100 * valid_fraction:.0f} "
                    f"(seed {seed}) into train/valid; official validation as test")
    test_recs = load_records(f"superglue/{task}/val.jsonl", root, verify)
    train = to_examples(task, train_recs, f"{task} train")
    valid = to_examples(task, valid_recs, f"{task} valid")
    test = to_examples(task, test_recs, f"{task} val")
    if max_train is not None and len(train) > max_train:
        train = _subsample(train, max_train, seed)
        protocol += f"; train subsampled to {max_train} (seed {seed})"
    if max_valid is not None and len(valid) > max_valid:
        valid = _subsample(valid, max_valid, seed)
        protocol += f"; valid subsampled to {max_valid} (seed {seed})"
    if max_test is not None and len(test) > max_test:
        test = _subsample(test, max_test, seed)
        protocol += f"; test subsampled to {max_test} (seed {seed})"
    return TaskSplits(task, train, valid, test, protocol)


def _subsample(examples: list[Example], n: int, seed: int) -> list[Example]:
    idx = np.sort(np.random.default_rng(seed + 1).choice(len(examples), n, replace=False))
    return [examples[i] for i in idx]


# ---------------------------------------------------------------- metrics


def exact_match(pred: np.ndarray, gold: np.ndarray, groups: list[str]) -> float:
    """Fraction of groups (MultiRC questions) whose every answer option is right."""
    right: dict[str, bool] = {}
    for p, g, q in zip(np.asarray(pred), np.asarray(gold), groups):
        right[q] = right.get(q, True) and bool(p == g)
    return float(np.mean(list(right.values())))


def task_metrics(task: str, pred, gold, groups: list[str] | None = None) -> dict[str, float]:
    """SuperGLUE metrics; ``score`` is the task's leaderboard number (CB: mean of acc and macro F1;
    MultiRC: mean of F1a and EM; else accuracy). ``accuracy`` is always present."""
    out = {"accuracy": accuracy(pred, gold)}
    if task == "CB":
        out["f1"] = f1_macro(pred, gold, 3)
        out["score"] = (out["accuracy"] + out["f1"]) / 2
    elif task == "MultiRC":
        out["f1a"] = f1_binary(pred, gold)
        out["em"] = exact_match(pred, gold, groups or [str(i) for i in range(len(gold))])
        out["score"] = (out["f1a"] + out["em"]) / 2
    else:
        out["score"] = out["accuracy"]
    return out


# ---------------------------------------------------------------- the fit() task


def build_task(task: str, splits: TaskSplits, model: torch.nn.Module, tokenizer, architecture: str,
               max_length: int, **kwargs: Any) -> ClassificationTask:
    """Tokenize every split of ``splits`` and wrap them with ``model`` for ``fit``, scored by :func:`task_metrics`."""
    examples = {"train": splits.train, "valid": splits.valid, "test": splits.test}
    ids = {s: encode(ex, tokenizer, architecture, max_length) for s, ex in examples.items()}
    return ClassificationTask(model, ids, examples, pad_token_id(tokenizer),
                              metrics=lambda pred, gold, ex: task_metrics(task, pred, gold, [e.group for e in ex]),
                              metric="score", **kwargs)  # the task's leaderboard number (see task_metrics)
