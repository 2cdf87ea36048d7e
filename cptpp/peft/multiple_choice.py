"""Commonsense multiple-choice sets (LLM-Adapters format) and scoring them by LM likelihood.

Data: the seven evaluation sets used by LLM-Adapters (Hu et al., 2023) and MambaPEFT -- BoolQ, PIQA,
SIQA, WinoGrande, ARC-e, ARC-c, OBQA -- one ``test.json`` each. HellaSwag and the commonsense_170k
training mix are not available here, so experiments fine-tune on a seeded half of each set and
evaluate on the other half (``split_examples``); numbers are therefore not the paper's protocol.

Scoring: every choice is a continuation of the prompt, and the prediction is the choice with the
highest log-likelihood under the causal LM. ``mode="label"`` scores the answer label in the
LLM-Adapters response format ("the correct answer is solution1") -- what fine-tuning trains;
``mode="text"`` scores each option's text with the length-normalized (per token) log-likelihood,
the usual zero-shot protocol.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cptpp.config import ConfigError, check_choice
from cptpp.data_catalog import find_data
from cptpp.download import MalformedLineError
from cptpp.peft.tokenizers import Tokenizer
from cptpp.train.batching import pad

# name -> folder of its test.json in LLM-Adapters/dataset and in the mirror (files: cptpp.data_catalog)
COMMONSENSE: dict[str, str] = {
    "boolq": "boolq", "piqa": "piqa", "siqa": "social_i_qa", "winogrande": "winogrande",
    "arc-e": "ARC-Easy", "arc-c": "ARC-Challenge", "obqa": "openbookqa",
}
SCORING_MODES = ("label", "text")
# The LLM-Adapters / Alpaca instruction template (no input field in these sets).
PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
          "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\nthe correct answer is")
_FORMAT = re.compile(r"Answer format:\s*([\w/]+)\s*$")
_OPTION = re.compile(r"(Solution|Answer|Option)(\d+):\s*")


@dataclass(frozen=True)
class MCExample:
    """One question: the instruction, the answer labels (e.g. solution1/solution2), each option's text, gold index."""

    task: str
    instruction: str
    labels: tuple[str, ...]
    options: tuple[str, ...]
    answer: int


def _parse_options(instruction: str, labels: tuple[str, ...], where: str) -> tuple[str, ...]:
    """Texts of "Solution1: ... Solution2: ..." in the instruction; BoolQ's labels are their own text."""
    if labels == ("true", "false"):
        return labels
    body = instruction[: instruction.rfind("Answer format:")]
    parts = _OPTION.split(body)  # [question, kind, num, text, kind, num, text, ...]
    texts = {int(parts[i + 1]): parts[i + 2].strip() for i in range(1, len(parts) - 2, 3)}
    try:
        return tuple(texts[int(re.sub(r"\D", "", lab))] for lab in labels)
    except (KeyError, ValueError):
        raise ConfigError(f"{where}: cannot find the text of every option {labels} in the instruction") from None


def parse_record(task: str, rec: dict, where: str) -> MCExample:
    """One LLM-Adapters record -> ``MCExample``; ``where`` ("file:record N") goes into errors."""
    try:
        instruction, gold = rec["instruction"], rec["answer"]
    except (KeyError, TypeError):
        raise ConfigError(f"{where}: expected a record with 'instruction' and 'answer' keys, got {rec!r:.120}") from None
    m = _FORMAT.search(instruction.strip())
    if m is None:
        raise ConfigError(f"{where}: instruction has no 'Answer format: a/b/...' line")
    labels = tuple(m.group(1).split("/"))
    # A few ARC items list a 5th option in the text but not in the answer format; gold must be listed.
    if gold not in labels:
        raise ConfigError(f"{where}: answer {gold!r} is not one of the listed choices {labels}")
    return MCExample(task, instruction.strip(), labels, _parse_options(instruction, labels, where), labels.index(gold))


def commonsense_path(name: str, *, allow_download: bool = True) -> Path:
    """Path of ``name``'s test.json: $CPTPP_DATA_MIRROR/text/commonsense-llm-adapters/<folder>/, cache, or download."""
    check_choice("task", name, tuple(COMMONSENSE))
    return find_data("text", f"commonsense-llm-adapters/{COMMONSENSE[name]}/test.json",
                     allow_download=allow_download)


_RECORD = "an LLM-Adapters record {'instruction': ... 'Answer format: a/b/...', 'answer': a listed label}"


def _json_array_items(path: Path, text: str) -> list[tuple[int, object]]:
    """``(line, value)`` of each element of the JSON array ``text``; a syntax error names ``path:line``."""
    decoder = json.JSONDecoder()
    lines = text.splitlines()

    def fail(pos: int, expected: str, why: str):
        lineno = text.count("\n", 0, pos) + 1
        return MalformedLineError(path, lineno, lines[lineno - 1] if lineno <= len(lines) else "", expected, why)

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    counted = [0, 1]  # (offset, its line): line numbers are counted forward once, not from 0 per record

    def line_at(pos: int) -> int:
        counted[1] += text.count("\n", counted[0], pos)
        counted[0] = pos
        return counted[1]

    pos = skip(0)
    if text[pos:pos + 1] != "[":
        raise fail(pos, "a JSON array of records", "the file does not start with '['")
    items, pos = [], skip(pos + 1)
    while text[pos:pos + 1] != "]":
        if items:
            if text[pos:pos + 1] != ",":
                raise fail(pos, "',' or ']' between records", "invalid JSON")
            pos = skip(pos + 1)
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise fail(e.pos, _RECORD, f"invalid JSON ({e.msg})") from None
        items.append((line_at(pos), value))
        pos = skip(end)
    if skip(pos + 1) != len(text):
        raise fail(skip(pos + 1), "nothing after the closing ']'", "trailing data")
    return items


def load_commonsense(name: str, path: str | Path | None = None) -> list[MCExample]:
    """All examples of set ``name`` (one of ``COMMONSENSE``), from ``path`` or the data resolution order.
    A syntax error or a record that is not a valid question raises :class:`MalformedLineError` naming
    ``path:line`` of the record's start."""
    path = Path(path) if path else commonsense_path(name)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    out = []
    for i, (lineno, rec) in enumerate(_json_array_items(path, text)):
        try:
            out.append(parse_record(name, rec, f"record {i}"))
        except ConfigError as e:
            raise MalformedLineError(path, lineno, lines[lineno - 1], _RECORD, str(e)) from None
    return out


def split_examples(examples: Sequence[MCExample], seed: int, *, valid_fraction: float = 0.1,
                   limit: int | None = None) -> dict[str, list[MCExample]]:
    """Seeded halves: the first half is fine-tuning data (``valid_fraction`` of it held out for model
    selection), the second half is ``test``. ``limit`` caps train and test (valid: ``limit // 2``) for quick runs."""
    order = np.random.default_rng(seed).permutation(len(examples))
    half = len(order) // 2
    n_valid = max(1, int(round(half * valid_fraction)))
    parts = {"train": order[n_valid:half], "valid": order[:n_valid], "test": order[half:]}
    caps = {"train": limit, "test": limit, "valid": None if limit is None else max(1, limit // 2)}
    return {k: [examples[i] for i in idx[:caps[k]]] for k, idx in parts.items()}


def context_text(ex: MCExample) -> str:
    return PROMPT.format(instruction=ex.instruction)


def continuations(ex: MCExample, mode: str) -> list[str]:
    check_choice("mode", mode, SCORING_MODES)
    return [" " + (lab if mode == "label" else opt) for lab, opt in zip(ex.labels, ex.options)]


def encode_pair(tok: Tokenizer, context: str, continuation: str, max_len: int) -> tuple[list[int], int]:
    """Token ids of context + continuation, left-truncated to ``max_len``; returns (ids, continuation length)."""
    ctx = tok.encode(context, add_special_tokens=False)
    cont = tok.encode(continuation, add_special_tokens=False)
    if len(cont) >= max_len:
        raise ConfigError(f"a continuation of {len(cont)} tokens does not fit max_len={max_len}")
    return (ctx + cont)[-max_len:], len(cont)


def continuation_logprobs(model, seqs: list[list[int]], cont_lens: list[int], pad_id: int,
                          device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log p(continuation tokens | prefix) per sequence, and the continuation lengths. Shapes [n]."""
    ids = pad(seqs, pad_id).to(device)  # right padding: scores at real positions ignore what follows
    logp = F.log_softmax(model(ids, use_cache=False).logits[:, :-1].float(), dim=-1)
    token_logp = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)  # [n, width - 1]: log p(ids[t+1] | ids[:t+1])
    pos = torch.arange(ids.shape[1] - 1, device=device)[None]
    lens = torch.tensor([len(s) for s in seqs], device=device)[:, None]
    clen = torch.tensor(cont_lens, device=device)[:, None]
    in_cont = (pos >= lens - 1 - clen) & (pos < lens - 1)
    return (token_logp * in_cont).sum(1), clen.squeeze(1).float()


@torch.no_grad()
def choice_scores(model, tok: Tokenizer, examples: Sequence[MCExample], *, mode: str = "label",
                  batch_size: int = 16, max_len: int = 512, pad_id: int = 0) -> list[np.ndarray]:
    """LM score of every choice per example: the continuation's summed log-likelihood (``label`` mode)
    or its mean per token (``text`` mode). One array of len(example.labels) per example."""
    check_choice("mode", mode, SCORING_MODES)
    device = next(model.parameters()).device
    pairs = [encode_pair(tok, context_text(ex), c, max_len) for ex in examples for c in continuations(ex, mode)]
    scores = []
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s:s + batch_size]
        total, n = continuation_logprobs(model, [p[0] for p in chunk], [p[1] for p in chunk], pad_id, device)
        scores.append((total / n if mode == "text" else total).cpu())
    flat = torch.cat(scores).numpy() if scores else np.zeros(0)
    bounds = np.cumsum([0] + [len(ex.labels) for ex in examples])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def predict(model, tok: Tokenizer, examples: Sequence[MCExample], *, mode: str = "label", batch_size: int = 16,
            max_len: int = 512, pad_id: int = 0) -> np.ndarray:
    """Predicted choice index per example (argmax of LM likelihood). [len(examples)]"""
    return best_choices(choice_scores(model, tok, examples, mode=mode, batch_size=batch_size, max_len=max_len,
                                      pad_id=pad_id))


def best_choices(scores: Sequence[np.ndarray]) -> np.ndarray:
    """Index of the highest-scoring choice per example (from ``choice_scores``). [len(scores)]"""
    return np.array([int(np.argmax(s)) for s in scores], dtype=np.int64)


def choice_nll(examples: Sequence[MCExample], scores: Sequence[np.ndarray]) -> float:
    """Mean over examples of -log softmax(choice scores)[gold]: how much probability the model puts on the
    right choice among the offered ones (log(number of choices) for a model indifferent between them).
    Unlike accuracy it moves when a method changes the scores without changing the argmax."""
    if not examples:
        return 0.0
    nll = [float(np.logaddexp.reduce(s) - s[ex.answer]) for ex, s in zip(examples, scores)]
    return float(np.mean(nll))


def accuracy(examples: Sequence[MCExample], preds: np.ndarray) -> dict[str, float]:
    """Overall accuracy, the mean over tasks, and per-task accuracy ("accuracy/<task>")."""
    gold = np.array([ex.answer for ex in examples])
    hit = preds == gold
    tasks = sorted({ex.task for ex in examples})
    per = {t: float(hit[[ex.task == t for ex in examples]].mean()) for t in tasks}
    out = {"accuracy": float(hit.mean()) if len(hit) else 0.0, "task_mean": float(np.mean(list(per.values())))}
    return out | {f"accuracy/{t}": v for t, v in per.items()}


def training_example(tok: Tokenizer, ex: MCExample, max_len: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) for LM fine-tuning on the gold label; labels are -100 outside the answer."""
    ids, n = encode_pair(tok, context_text(ex), continuations(ex, "label")[ex.answer], max_len)
    return ids, [-100] * (len(ids) - n) + ids[len(ids) - n:]
