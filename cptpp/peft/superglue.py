"""SuperGLUE loaders, verbalizers, metrics and a ``cptpp.train.fit`` task for classification.

Evaluation protocol (SuperGLUE test labels are hidden): the official train split is divided into
train / valid by a seeded permutation (``valid_fraction`` held out, for model selection only) and the
official validation split is the test set, reported once. Tasks without a train file here (BoolQ) are
few-shot: FewGLUE's 32-example train, P-tuning's dev32 as valid, the official validation as test.

Files are found under ``$CPTPP_DATA_MIRROR/text`` then ``$CPTPP_DATA_HOME/text`` (default
``~/.cache/cptpp/text``), as ``superglue/<Task>/{train,val}.jsonl`` and ``fewglue/<Task>/{train,dev32}.jsonl``;
files whose names are known are checked against the sha256 of the published copies.

Every task becomes a list of :class:`Example` ``(text_a, text_b, label, group)``: an encoder reads the
pair, an LM reads ``"{text_a}\\n{text_b}\\nAnswer:"`` and the class is scored by its verbalizer word.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cptpp.download import verify_sha256
from cptpp.config import ConfigError, check_choice, check_range

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
OFFICIAL_URL = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/{task}.zip"
SHA256 = {
    "superglue/BoolQ/val.jsonl": "0c86a5045886e5795fe9052003873f7d94b88ed3028a33007c51d99e44fd66d9",
    "superglue/CB/train.jsonl": "32017480d3a10508646e3efd64502c639f13d4d15077f278d2fd0992c33a3126",
    "superglue/CB/val.jsonl": "c6125587e9601560cb16ea223c33964c5a915568d2af68a81f651b6ef25395ec",
    "superglue/COPA/train.jsonl": "e74ed25f36119fff954d90900ebbaae277e2cc4864be4b961e7a46c8f67d11a9",
    "superglue/COPA/val.jsonl": "fa61467cc251010178ed72f8ca82a0fceefc4ca9a85f87ec3b6102955e1a1f1a",
    "superglue/MultiRC/train.jsonl": "bb73d0838618f8269190a2533fead3140607558975ea0df6511fa534e8d3535c",
    "superglue/MultiRC/val.jsonl": "d2b480195b15574ac00d52c4479f630bc161a7ab2de77e970fd00652846953ee",
    "superglue/RTE/train.jsonl": "fdfb03443abe3ec0424b7fc5d1a8863361719bc061338b7a63e56b94d615f201",
    "superglue/RTE/val.jsonl": "ab990507bf5f35dc176cba7770a72bfa2c50a88ed72b8cc95cfbf9db95ab1af1",
    "superglue/WiC/train.jsonl": "ce301970aaf361ade6c1d218fe15c50b185b14a4bcb618c5785a8484a46f9943",
    "superglue/WiC/val.jsonl": "9f7207c88beba42cbc139de4c62ce05b23bffc189b3d561594b160e0c3920c0b",
    "superglue/WSC/train.jsonl": "0ffaa3fd8d21e58a0805962565d1619aa4819bc3d034255777f606f801ae5a42",
    "superglue/WSC/val.jsonl": "e5c685ea4bdc347354036a28176459f6feeb0b6870375ecfb3d6ddb1f0e28bef",
    "fewglue/BoolQ/train.jsonl": "317245ba0842129234a368274701dfc196139aa627eff44aefc827c6888935e1",
    "fewglue/BoolQ/dev32.jsonl": "0af324b658a72fdd7767aa3c27c1dfafbc03e8e987a148b29e42a72d84b9f9e3",
    "fewglue/CB/train.jsonl": "e6f446e5f117cbfbcd156d8221d163cc370924fa594a1d67f44a151ce5c171b2",
    "fewglue/CB/dev32.jsonl": "ec7e1bfe37a7ea4514fc2335bfa3b35be77bfe084aae2e7ca55f765aaee41337",
    "fewglue/COPA/train.jsonl": "9955ae6e0ee109c96c00c0957d5873c0cb4ea9aced83b6a15b15258bb64b7dd5",
    "fewglue/COPA/dev32.jsonl": "eb43b015d061738467f284c60049ef0afcaf707ec8e528ab3c5c4285a5f5618a",
    "fewglue/MultiRC/train.jsonl": "e584db1b55f7da7c1e6a2d0a6b56eb6edcaff26e69393d628390e70c39ccb561",
    "fewglue/MultiRC/dev32.jsonl": "3734d2cac8d1e8d13e2f5e13bec727be7576b45453e9fd765e2075e163f9653d",
    "fewglue/RTE/train.jsonl": "91a83197e3a286a8bf102e483646f87cd8b1e4c9c5ccd893bc0b9dba0643d580",
    "fewglue/RTE/dev32.jsonl": "a3ba6200d2f27691d927ab97d387292b045316956f877fbfccc9a4658af2b351",
    "fewglue/WiC/train.jsonl": "b82c0c3f79d2f19bdd3c894f90f9deff0ebff787822a99ff6420db733c2a88f0",
    "fewglue/WiC/dev32.jsonl": "3df4ca565f109be9476caa51884ba13c5f2a33c939898cf80bb53e09fdc73062",
    "fewglue/WSC/train.jsonl": "e814e1a9a781c1e4b1ad98151f09f2e9326a3db51f9c52639cb0f8b1f428ad47",
    "fewglue/WSC/dev32.jsonl": "2bbaca5c995778e7e14f389f1fe9a4be9a58d99e66db0d73d868ab66564b9da7",
}


@dataclass(frozen=True)
class Example:
    """text_a: the long context (passage/premise/sentence); text_b: the question about it; label: class
    index into ``LABELS[task]``; group: which question an answer option belongs to (MultiRC EM), else idx."""

    text_a: str
    text_b: str
    label: int
    group: str


# ---------------------------------------------------------------- files


def data_roots() -> list[Path]:
    """Where SuperGLUE/FewGLUE folders are looked for, in order."""
    roots = []
    if os.environ.get("CPTPP_DATA_MIRROR"):
        roots.append(Path(os.environ["CPTPP_DATA_MIRROR"]) / "text")
    home = os.environ.get("CPTPP_DATA_HOME") or Path.home() / ".cache" / "cptpp"
    roots.append(Path(home) / "text")
    return roots


def find_file(relpath: str, root: str | Path | None = None) -> Path:
    """``relpath`` like ``"superglue/RTE/train.jsonl"`` under ``root`` (a folder holding superglue/ and
    fewglue/) or the first of :func:`data_roots` that has it."""
    roots = [Path(root)] if root is not None else data_roots()
    for r in roots:
        if (r / relpath).is_file():
            return r / relpath
    task = relpath.split("/")[1] if relpath.count("/") >= 2 else "<Task>"
    raise FileNotFoundError(
        f"{relpath} not found under {', '.join(map(str, roots))}; set CPTPP_DATA_MIRROR to a mirror "
        f"(its text/ folder) or unpack {OFFICIAL_URL.format(task=task)} into <root>/superglue/{task}/")


def read_jsonl(path: str | Path, expected_sha256: str | None = None) -> list[dict]:
    """Records of a JSON-lines file; a checksum mismatch or bad line is an error naming file and line."""
    path = Path(path)
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256, hint="not the published copy")
    records = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: malformed JSON line ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ConfigError(f"{path}:{lineno}: expected a JSON object per line")
            records.append(rec)
    return records


def load_records(relpath: str, root: str | Path | None = None, verify: bool = True) -> list[dict]:
    path = find_file(relpath, root)
    return read_jsonl(path, SHA256.get(relpath) if verify else None)


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
            raise FileNotFoundError(f"{e}\n(no full train split for {task}: use few_shot=True)") from None
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


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float((np.asarray(pred) == np.asarray(gold)).mean())


def f1_binary(pred: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """F1 of class ``positive`` (0 when it is never predicted nor present)."""
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = float((pred & gold).sum())
    denom = float(pred.sum() + gold.sum())
    return 2 * tp / denom if denom else 0.0


def f1_macro(pred: np.ndarray, gold: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 (SuperGLUE's CB F1)."""
    return float(np.mean([f1_binary(pred, gold, c) for c in range(num_classes)]))


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


# ---------------------------------------------------------------- tokenization


def verbalizer_ids(tokenizer, words: list[str], architecture: str) -> list[int]:
    """First sub-token id of each verbalizer word as it follows "Answer:" (decoders see a leading space)."""
    ids = []
    for w in words:
        text = " " + w if architecture == "decoder" else w
        toks = tokenizer.encode(text, add_special_tokens=False)
        if not toks:
            raise ConfigError(f"verbalizer word {w!r} tokenizes to nothing")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise ConfigError(f"verbalizer words {words} share a first token; pick distinct words")
    return ids


def encode(examples: list[Example], tokenizer, architecture: str, max_length: int) -> list[list[int]]:
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


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest: ``input_ids [B, L]``, ``attention_mask [B, L]``."""
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


# ---------------------------------------------------------------- the fit() task


class SuperGlueTask:
    """Adapter for ``cptpp.train.fit``: ``model(input_ids, attention_mask) -> logits [B, C]`` trained with
    cross-entropy; ``evaluate`` returns :func:`task_metrics`. Splits are token-id lists, padded per batch."""

    metric = "score"  # the task's leaderboard number (see task_metrics)

    def __init__(self, task: str, model: torch.nn.Module, ids: dict[str, list[list[int]]],
                 examples: dict[str, list[Example]], pad_id: int, batch_size: int = 16,
                 eval_batch_size: int = 64, device: torch.device | str = "cpu"):
        check_range("batch_size", batch_size, 1)
        self.task, self.model, self.ids, self.examples = task, model, ids, examples
        self.labels = {s: torch.tensor([e.label for e in ex]) for s, ex in examples.items()}
        self.pad_id, self.batch_size, self.eval_batch_size = pad_id, batch_size, eval_batch_size
        self.device = torch.device(device)

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
        gold = self.labels[split].numpy()
        return task_metrics(self.task, self.predict(split), gold, [e.group for e in self.examples[split]])


def build_task(task: str, splits: TaskSplits, model: torch.nn.Module, tokenizer, architecture: str,
               max_length: int, **kwargs: Any) -> SuperGlueTask:
    """Tokenize every split of ``splits`` and wrap them with ``model`` for ``fit``."""
    examples = {"train": splits.train, "valid": splits.valid, "test": splits.test}
    ids = {s: encode(ex, tokenizer, architecture, max_length) for s, ex in examples.items()}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    return SuperGlueTask(task, model, ids, examples, pad, **kwargs)

