"""Code tasks from the data mirror and the generation task that `cptpp.train.fit` trains.

Tasks (dataset folders, found like every dataset: ``$CPTPP_DATA_MIRROR/code/<folder>`` ->
``$CPTPP_DATA_HOME/code/<folder>`` -> the official URL; files and sha256 in :mod:`cptpp.data_catalog`):

| task            | folder                           | source -> target             | train split in the mirror |
|-----------------|----------------------------------|------------------------------|---------------------------|
| ``translation`` | codexglue_java_cs_translation    | Java method -> C# method     | yes                       |
| ``assert``      | atlas_style_assert_generation    | test with placeholder -> assert | yes                    |
| ``repair``      | codexglue_bugs2fix_small         | buggy -> fixed Java (abstracted) | **no**                |
| ``summarization`` | tlcodesum_java_summarization   | Java method -> first Javadoc sentence | **no**           |
| ``docstring``   | python_code_docstring_v1         | Python function -> docstring | **no**                    |

Code targets (translation: C#; assert, repair: Java) are also scored by CodeBLEU; text targets are not.

No train split is invented. For the last three, ``load_splits`` uses protocol
``"valid-as-train"``: the mirror's *valid* file is split (seeded, 90/10) into train and
validation, and the mirror's *test* file is the test set -- a different protocol from the papers'
(far less training data), and results say so.

Sequence layout. Encoder-decoder: encoder ``source </s>``, labels ``target </s>``. Decoder-only:
``source  separator  target eos`` with the loss on ``target eos`` only; generation is greedy from
``source separator`` (left-padded). ``fuse_mask`` marks the source tokens, whose embeddings a
Transducer fuses with the source's code property graph.

Zero-shot prompting of a chat model (``CodeTaskConfig.instruction``): the prompt is the tokenizer's chat
template around one user turn ``instruction + blank line + source`` (the task's ``TaskSpec.instruction``),
ending where the assistant's answer starts; the answer is read by :func:`answer_line` (the first fenced code
block, or the text, joined into one line), since a chat model answers in markdown over several lines.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import torch

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.data_catalog import find_data
from cptpp.download import MalformedLineError
from cptpp.train.batching import pad, pad_token_id

from .metrics import generation_metrics
from .task_specs import PROTOCOLS, TASKS, CodeTaskConfig  # noqa: F401 (CodeTaskConfig re-exported)


@dataclass(frozen=True)
class CodePair:
    source: str
    target: str


def data_file(task: str, file: str, root: str | Path | None = None, verify: bool = True) -> Path:
    """One file of ``task``'s dataset: under ``<root>/<folder>/`` only when ``root`` is given (laid out like
    ``$CPTPP_DATA_MIRROR/code``), else mirror -> cache -> official URL (:mod:`cptpp.data_catalog`), sha256-checked."""
    check_choice("task", task, tuple(TASKS))
    return find_data("code", f"{TASKS[task].folder}/{file}", root=root, verify=verify)


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _aligned(paths: Sequence[Path]) -> list[list[str]]:
    """Lines of line-aligned files; a file shorter than the first is an error at its first missing line."""
    texts = [_lines(p) for p in paths]
    for path, lines in zip(paths[1:], texts[1:]):
        if len(lines) != len(texts[0]):
            short, long_ = (path, paths[0]) if len(lines) < len(texts[0]) else (paths[0], path)
            n = min(len(lines), len(texts[0]))
            raise MalformedLineError(long_, n + 1, (texts[0] if long_ == paths[0] else lines)[n],
                                     f"files line-aligned with {short}",
                                     f"{short} ends after line {n}")
    return texts


def _tab_text(path: Path, lines: list[str]) -> list[tuple[str, str]]:
    out = []
    for i, line in enumerate(lines, 1):
        parts = line.split("\t", 1)
        if len(parts) != 2:
            raise MalformedLineError(path, i, line, "'<id><TAB><text>'", "no tab")
        out.append((parts[0], parts[1].strip()))
    return out


def unescape_docstring_corpus(text: str) -> str:
    """code-docstring-corpus escapes: ' DCNL ' = newline, leading 'DCSP ' = one indent level, other DCSP = space."""
    lines = []
    for line in text.split(" DCNL "):
        depth = 0
        while line.startswith("DCSP "):
            line, depth = line[5:], depth + 1
        lines.append("    " * depth + line.replace("DCSP ", " ").replace("DCSP", " "))
    return "\n".join(lines)


def _docstring_target(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    first = unescape_docstring_corpus(text).strip().split("\n")[0]
    return first.strip()


def load_pairs(task: str, split: str, root: str | Path | None = None, verify: bool = True) -> list[CodePair]:
    """The ``split`` (train/valid/test) of ``task`` as ``CodePair``s, file order. A line that does not fit the
    format raises :class:`~cptpp.download.MalformedLineError` naming ``file:line``."""
    check_choice("split", split, ("train", "valid", "test"))
    check_choice("task", task, tuple(TASKS))
    if split == "train" and not TASKS[task].has_train:
        raise ConfigError(f"the mirror has no train split for {task!r}; use load_splits (protocol valid-as-train)")

    def files(*names: str) -> list[Path]:
        return [data_file(task, n, root, verify) for n in names]

    if task in ("translation", "repair"):
        ext = ("java-cs.txt.java", "java-cs.txt.cs") if task == "translation" else ("buggy-fixed.buggy",
                                                                                    "buggy-fixed.fixed")
        src, tgt = _aligned(files(*(f"{split}.{e}" for e in ext)))
        return [CodePair(s.strip(), t.strip()) for s, t in zip(src, tgt)]
    if task == "assert":
        (path,) = files(f"{split}.jsonl")
        pairs = []
        for i, line in enumerate(_lines(path), 1):
            try:
                rec = json.loads(line)
                pairs.append(CodePair(rec["input"], rec["assertion"]))
            except json.JSONDecodeError as e:
                raise MalformedLineError(path, i, line, "one JSON record per line", e.msg) from None
            except (KeyError, TypeError):
                raise MalformedLineError(path, i, line, "a JSON object with 'input' and 'assertion'",
                                         "missing key") from None
        return pairs
    if task == "summarization":
        paths = files(f"{split}.token.code", f"{split}.token.nl")
        code, nl = (_tab_text(p, lines) for p, lines in zip(paths, _aligned(paths)))
        for i, (c, n) in enumerate(zip(code, nl), 1):
            if c[0] != n[0]:
                raise MalformedLineError(paths[1], i, f"{n[0]}\t{n[1]}", f"id {c[0]} as on line {i} of {paths[0]}",
                                         "the ids differ")
        return [CodePair(c[1], n[1]) for c, n in zip(code, nl)]
    decl, body, desc = _aligned(files(*(f"data_ps.{k}.{split}" for k in ("declarations", "bodies", "descriptions"))))
    return [CodePair(unescape_docstring_corpus(d) + "\n" + unescape_docstring_corpus(b), _docstring_target(s))
            for d, b, s in zip(decl, body, desc)]


def load_splits(task: str, root: str | Path | None = None, seed: int = 0,
                valid_fraction: float = 0.1, verify: bool = True) -> tuple[dict[str, list[CodePair]], str]:
    """``({"train", "valid", "test"}, protocol)``; see the module docstring for ``valid-as-train``."""
    spec = TASKS[task] if task in TASKS else check_choice("task", task, tuple(TASKS))
    if spec.has_train:
        return {s: load_pairs(task, s, root, verify) for s in ("train", "valid", "test")}, PROTOCOLS[True]
    pool = load_pairs(task, "valid", root, verify)
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    n_valid = max(1, int(round(valid_fraction * len(pool))))
    splits = {"train": [pool[i] for i in order[n_valid:]], "valid": [pool[i] for i in order[:n_valid]],
              "test": load_pairs(task, "test", root, verify)}
    return splits, PROTOCOLS[False]


# --------------------------------------------------------------------------- encoding

@dataclass
class Encoded:
    """One example's token ids; ``prompt`` is what generation starts from."""

    prompt: list[int]
    target: list[int]
    n_source: int              # prompt[source_start:source_start + n_source] are the source tokens
    reference: str
    source: str = ""
    graph: Any = None
    source_start: int = 0      # > 0 when an instruction template precedes the source


SOURCE_SLOT = "\x00SOURCE\x00"  # stands for the source while the chat template is rendered


def chat_prompt_parts(tokenizer, instruction: str) -> tuple[list[int], list[int]]:
    """Token ids of the chat-template prompt before and after the source: ``user: instruction + "\\n\\n" +
    source``, then the assistant turn's opening (``add_generation_prompt``)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("instruction=True needs a chat model: this tokenizer has no chat_template")
    text = tokenizer.apply_chat_template([{"role": "user", "content": f"{instruction}\n\n{SOURCE_SLOT}"}],
                                         tokenize=False, add_generation_prompt=True)
    before, after = text.split(SOURCE_SLOT)
    return _ids(tokenizer, before), _ids(tokenizer, after)


def answer_line(text: str, code: bool = True) -> str:
    """One line from a chat model's answer: the first fenced code block's lines (to its closing fence or the
    end of the text) or, without a fence, the text's lines, stripped and joined by one space; ``code=False``
    (a text target): the first non-empty line of that."""
    if "```" in text:
        body = text.split("```", 1)[1]
        body = body.split("\n", 1)[1] if "\n" in body else ""  # drop the fence's language tag
        text = body.split("```", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not code:
        return lines[0] if lines else ""
    return " ".join(lines)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_pairs(pairs: Sequence[CodePair], tokenizer, cfg: CodeTaskConfig, encoder_decoder: bool,
                 limit: int = 0, seed: int = 0) -> list[Encoded]:
    """Tokenize, drop (or truncate) over-long pairs, then keep a seeded sample of ``limit`` (0 = all)."""
    eos = tokenizer.eos_token_id
    separator = TASKS[cfg.task].separator if cfg.separator is None else cfg.separator
    sep = [] if encoder_decoder else _ids(tokenizer, separator)
    before: list[int] = []
    if cfg.instruction:
        if encoder_decoder:
            raise ConfigError("instruction=True prompts a decoder-only chat model; this is an encoder-decoder")
        before, sep = chat_prompt_parts(tokenizer, TASKS[cfg.task].instruction)
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    out: list[Encoded] = []
    for i in order:
        src, tgt = _ids(tokenizer, pairs[i].source), _ids(tokenizer, pairs[i].target)
        if cfg.drop_long and (len(src) > cfg.max_source_tokens or len(tgt) > cfg.max_target_tokens):
            continue
        src, tgt = src[:cfg.max_source_tokens], tgt[:cfg.max_target_tokens]
        prompt = before + src + ([eos] if encoder_decoder else sep)
        out.append(Encoded(prompt, tgt + [eos], len(src), pairs[i].target, pairs[i].source, None, len(before)))
        if limit and len(out) == limit:
            break
    return out


def attach_graphs(examples: Sequence[Encoded], language: str, labels, max_nodes: int = 50,
                  undirected: bool = True) -> None:
    """Build each example's CPG once (``transducer.code_graph``), registering its node labels in ``labels``."""
    from .transducer import code_graph

    for e in examples:
        e.graph = code_graph(e.source, language, labels, max_nodes, undirected)


def collate(examples: Sequence[Encoded], pad_id: int, encoder_decoder: bool, train: bool,
            graph_batch=None) -> dict[str, Any]:
    """Training batches are right-padded; decoder-only generation prompts are left-padded."""
    batch: dict[str, Any] = {}
    if encoder_decoder:
        batch["input_ids"] = pad([e.prompt for e in examples], pad_id)
        batch["fuse_mask"] = pad([[1] * len(e.prompt) for e in examples], 0).bool()
        if train:
            batch["labels"] = pad([e.target for e in examples], -100)
            batch["decoder_attention_mask"] = batch["labels"] != -100
    elif train:
        batch["input_ids"] = pad([e.prompt + e.target for e in examples], pad_id)
        batch["labels"] = pad([[-100] * len(e.prompt) + e.target for e in examples], -100)
        batch["fuse_mask"] = pad([[0] * e.source_start + [1] * e.n_source for e in examples], 0)
        batch["fuse_mask"] = torch.nn.functional.pad(
            batch["fuse_mask"], (0, batch["input_ids"].shape[1] - batch["fuse_mask"].shape[1])).bool()
    else:
        batch["input_ids"] = pad([e.prompt for e in examples], pad_id, left=True)
        batch["fuse_mask"] = pad([[0] * e.source_start + [1] * e.n_source
                                  + [0] * (len(e.prompt) - e.source_start - e.n_source) for e in examples],
                                 0, left=True).bool()
    lengths = [len(e.prompt) + (len(e.target) if train and not encoder_decoder else 0) for e in examples]
    batch["attention_mask"] = pad([[1] * n for n in lengths], 0, left=not train and not encoder_decoder)
    if graph_batch is not None:
        batch["graph"] = graph_batch
    return batch


def token_accuracy(logits: torch.Tensor, labels: torch.Tensor, encoder_decoder: bool) -> tuple[int, int]:
    """(correct, total) argmax predictions of the label tokens under teacher forcing."""
    if not encoder_decoder:  # a causal LM predicts position t+1 at t
        # prompt tuning prepends virtual-token positions to the logits: keep the last L
        logits, labels = logits[:, -labels.shape[1]:-1], labels[:, 1:]
    mask = labels != -100
    return int((logits.argmax(-1)[mask] == labels[mask]).sum()), int(mask.sum())


class CodeGenTask:
    """A code-to-text/code generation task for ``cptpp.train.fit``.

    ``lm`` is a ``TransducerLM`` or ``BaselineLM``; ``data`` maps split -> ``Encoded`` list (with
    ``graph`` set when ``label_table`` is given, i.e. for a Transducer). Validation: teacher-forced
    ``token_acc`` and ``loss`` (plus generation metrics when ``valid_generate``); test: greedy
    generation -> ``bleu``, ``sbleu``, ``em``, ``chrf`` (and ``codebleu`` with its parts for code
    targets) and ``token_acc``.
    """

    def __init__(self, lm, tokenizer, data: dict[str, list[Encoded]], cfg: CodeTaskConfig,
                 label_table: torch.Tensor | None = None, device: torch.device | str = "cpu"):
        for split in ("train", "valid", "test"):
            if not data.get(split):
                raise ConfigError(f"task {cfg.task!r}: the {split} split is empty (limits too tight?)")
        self.lm, self.tok, self.data, self.cfg = lm, tokenizer, data, cfg
        self.model = lm.module
        self.device = torch.device(device)
        self.label_table = label_table
        self.pad_id = pad_token_id(tokenizer)
        self.single_line = TASKS[cfg.task].single_line
        self.predictions: dict[str, list[str]] = {}
        self.metric = "token_acc"  # teacher-forced validation, cheap enough for every epoch
        # a chat answer comes in a markdown code block over several indented lines: room for the fence and layout
        self.max_new_tokens = cfg.max_target_tokens + 1 if not cfg.instruction else 2 * cfg.max_target_tokens + 8

    def _batch(self, examples: Sequence[Encoded], train: bool) -> dict[str, Any]:
        graphs = None
        if self.label_table is not None:
            from .transducer import batch_graphs

            graphs = batch_graphs([e.graph for e in examples], self.label_table)
        batch = collate(examples, self.pad_id, self.lm.is_encoder_decoder, train, graphs)
        return {k: v.to(self.device) for k, v in batch.items()}

    def batches(self, epoch: int, generator: torch.Generator):
        train = self.data["train"]
        order = torch.randperm(len(train), generator=generator).tolist()
        size = self.cfg.batch_size
        return [self._batch([train[i] for i in order[s:s + size]], True) for s in range(0, len(order), size)]

    def loss(self, batch: dict) -> torch.Tensor:
        return self.lm(batch).loss

    def _teacher_forced(self, examples: Sequence[Encoded]) -> dict[str, float]:
        correct = total = 0
        loss_sum = 0.0
        for s in range(0, len(examples), self.cfg.eval_batch_size):
            batch = self._batch(examples[s:s + self.cfg.eval_batch_size], True)
            out = self.lm(batch)
            c, t = token_accuracy(out.logits, batch["labels"], self.lm.is_encoder_decoder)
            correct, total = correct + c, total + t
            loss_sum += float(out.loss) * t
        return {"token_acc": 100.0 * correct / max(total, 1), "loss": loss_sum / max(total, 1)}

    def decode(self, ids: torch.Tensor) -> str:
        text = self.tok.decode(ids, skip_special_tokens=True)
        if self.cfg.instruction:
            return answer_line(text, code=TASKS[self.cfg.task].target_language is not None)
        if self.single_line:
            text = text.strip("\n").split("\n")[0]
        return text.strip()

    def generate(self, examples: Sequence[Encoded]) -> list[str]:
        out = []
        for s in range(0, len(examples), self.cfg.eval_batch_size):
            batch = self._batch(examples[s:s + self.cfg.eval_batch_size], False)
            ids = self.lm.generate(batch, max_new_tokens=self.max_new_tokens,
                                   eos_token_id=self.tok.eos_token_id, pad_token_id=self.pad_id)
            out.extend(self.decode(row) for row in ids)
        return out

    def evaluate(self, split: str) -> dict[str, float]:
        check_choice("split", split, ("valid", "test"))
        examples = self.data[split]
        metrics = self._teacher_forced(examples)
        if split == "test" or self.cfg.valid_generate:
            hyps = self.generate(examples)
            self.predictions[split] = hyps
            metrics.update(generation_metrics(hyps, [e.reference for e in examples],
                                              TASKS[self.cfg.task].target_language))
        return metrics
