"""ToPro: token-level prompt decomposition for sequence labelling (Ma et al., 2024), and its baselines.

A sentence ``w_1 .. w_n`` becomes ``n`` prompted copies, one per word::

    <sentence> [SEP] The named entity of <w_i> is a kind of: [MASK].

and the tag of ``w_i`` is read off the (masked-LM or seq2seq) logits at ``[MASK]``, restricted to one label
word per tag (the verbalizer, e.g. ``B-LOC -> location``). Training is cross-entropy over the label words;
the whole backbone is fine-tuned (the paper's setting), on English, and evaluated zero-shot elsewhere.

Pieces (each usable alone):

- :class:`ToProConfig`: template, verbalizer, lengths, batching.
- :class:`ToProTemplate`: builds the prompted copies for any Hugging Face tokenizer. Words are tokenized
  one by one (word -> subword alignment), so a multi-subword word appears whole in its prompt and its tag
  comes from that copy's single mask position.
- :func:`pack_units`: groups prompted copies into batches under a token budget; copies of one sentence
  are consecutive, so a sentence's words share one forward pass whenever the budget allows.
- :class:`VerbalizerHead` / :class:`ToProTagger`: restricted label-word logits. For an encoder without a
  shipped MLM head (e.g. all-MiniLM-L6-v2, a sentence encoder) the head is a fresh transform plus output
  rows copied from the (tied) input embeddings of the label words; for a ``...ForMaskedLM`` model it copies
  the MLM head, so its logits equal the full MLM logits at the label-word ids. Encoder-decoder models
  (mT5-style) generate the label word: the first generated token after the decoder prefix is scored.
- Baselines on the same data and loop: :class:`TokenClassifier` (vanilla fine-tuning: a linear head on
  each word's first subword) and the same with a frozen backbone and a soft prompt (prompt tuning).
- :class:`ToProTask` / :class:`TokenTask`: ``cptpp.train.fit`` tasks with per-language evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cptpp.config import ConfigError, check_choice, check_range
from cptpp.peft.prompt import SoftPrompt, prepend_prompt
from cptpp.peft.tagging_data import TAGS, TASKS, TaggedSentence, TaggingSplits, tagging_metrics

TEMPLATES = {
    "ner": "The named entity of {word} is a kind of: {mask}.",
    "pos": "The part-of-speech of {word} is a kind of: {mask}.",
}
# one label word per tag; each must start with a distinct sub-token of the tokenizer in use
LABEL_WORDS = {
    "ner": {"B-LOC": "location", "B-ORG": "organisation", "B-PER": "person", "I-LOC": "place",
            "I-ORG": "body", "I-PER": "name", "O": "other"},
    "pos": {"ADJ": "modification", "ADP": "position", "ADV": "adverb", "AUX": "auxiliary",
            "CCONJ": "conjunction", "DET": "determiner", "INTJ": "exclamation", "NOUN": "thing",
            "NUM": "number", "PART": "particle", "PRON": "pronoun", "PROPN": "name", "PUNCT": "punctuation",
            "SCONJ": "subordinate", "SYM": "symbol", "VERB": "verb", "X": "other"},
}
ARCHITECTURES = ("encoder", "encoder-decoder")


@dataclass
class ToProConfig:
    """``template`` holds ``{word}`` and ``{mask}`` once each and is appended to the sentence as the second
    segment; ``label_words`` maps every tag of ``task`` to a word (defaults: :data:`LABEL_WORDS`).

    ``max_tokens_per_batch`` bounds ``copies x padded length`` of one forward pass;
    ``train_words_per_sentence`` samples that many words' copies per sentence per epoch (None = all words,
    the paper's setting; a cap trades epochs for sentences on small compute budgets).
    """

    task: str = "ner"
    template: str | None = None
    label_words: dict[str, str] | None = None
    max_length: int = 128
    max_word_tokens: int = 8
    max_tokens_per_batch: int = 4096
    train_words_per_sentence: int | None = None

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        if self.template is None:
            self.template = TEMPLATES[self.task]
        for key in ("{word}", "{mask}"):
            if self.template.count(key) != 1:
                raise ConfigError(f"template must contain {key} exactly once, got {self.template!r}")
        if self.template.index("{word}") > self.template.index("{mask}"):
            raise ConfigError("template must put {word} before {mask}")
        if self.label_words is None:
            self.label_words = dict(LABEL_WORDS[self.task])
        missing = sorted(set(TAGS[self.task]) - set(self.label_words))
        extra = sorted(set(self.label_words) - set(TAGS[self.task]))
        if missing or extra:
            raise ConfigError(f"label_words must map exactly the {self.task} tags {', '.join(TAGS[self.task])}; "
                              f"missing {missing}, unknown {extra}")
        check_range("max_length", self.max_length, 8)
        check_range("max_word_tokens", self.max_word_tokens, 1)
        check_range("max_tokens_per_batch", self.max_tokens_per_batch, 1)
        if self.train_words_per_sentence is not None:
            check_range("train_words_per_sentence", self.train_words_per_sentence, 1)

    @property
    def tags(self) -> tuple[str, ...]:
        return TAGS[self.task]


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


def label_token_ids(tokenizer, label_words: dict[str, str], tags: Sequence[str]) -> list[int]:
    """First sub-token id of each tag's label word, in ``tags`` order; they must be distinct."""
    ids = []
    for tag in tags:
        toks = tokenizer(label_words[tag], add_special_tokens=False)["input_ids"]
        if not toks:
            raise ConfigError(f"label word {label_words[tag]!r} of tag {tag} tokenizes to nothing")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        dup = [tags[i] for i, t in enumerate(ids) if ids.count(t) > 1]
        raise ConfigError(f"label words of tags {dup} share a first sub-token; choose distinct words")
    return ids


def mask_token_id(tokenizer) -> int:
    """The MLM mask token, or the first T5 sentinel ``<extra_id_0>`` for span-corruption seq2seq models."""
    if tokenizer.mask_token_id is not None:
        return tokenizer.mask_token_id
    sentinel = tokenizer.convert_tokens_to_ids("<extra_id_0>")
    if sentinel is None or sentinel == tokenizer.unk_token_id:
        raise ConfigError("tokenizer has neither a mask token nor a <extra_id_0> sentinel for the template")
    return sentinel


@dataclass
class Unit:
    """One prompted copy: ``input_ids``/``token_type_ids`` ``[L]``, the mask position, which word it tags
    (``sentence``, ``word``) and the gold tag index (-1 when unknown)."""

    input_ids: list[int]
    token_type_ids: list[int]
    mask_pos: int
    sentence: int
    word: int
    label: int = -1


class ToProTemplate:
    """Turns sentences into prompted copies for one tokenizer and :class:`ToProConfig`."""

    def __init__(self, tokenizer, cfg: ToProConfig):
        self.tokenizer, self.cfg = tokenizer, cfg
        self.layout = pair_layout(tokenizer)
        self.mask_id = mask_token_id(tokenizer)
        pre, rest = cfg.template.split("{word}")
        mid, post = rest.split("{mask}")
        self.pre, self.mid, self.post = (word_pieces(tokenizer, [s])[0] if s.strip() else [] for s in (pre, mid, post))
        self.label_ids = label_token_ids(tokenizer, cfg.label_words, cfg.tags)
        self.tag_index = {t: i for i, t in enumerate(cfg.tags)}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def prompt(self, pieces: Sequence[int]) -> list[int]:
        """Template ids for one word's sub-tokens (cut to ``max_word_tokens``); holds one mask id."""
        return [*self.pre, *pieces[: self.cfg.max_word_tokens], *self.mid, self.mask_id, *self.post]

    def sentence_units(self, words: Sequence[str], sentence: int = 0,
                       tags: Sequence[str] | None = None) -> list[Unit]:
        """One :class:`Unit` per word. The sentence segment is cut from its end when sentence + prompt
        exceed ``max_length``; every word still gets its copy (its own sub-tokens are in the prompt)."""
        pieces = word_pieces(self.tokenizer, words)
        flat = [t for p in pieces for t in p]
        units = []
        for j, p in enumerate(pieces):
            prompt = self.prompt(p)
            room = max(0, self.cfg.max_length - self.layout.num_special - len(prompt))
            ids, types = self.layout.join(flat[:room], prompt)
            # the prompt comes after the sentence, so the last mask id is the prompt's
            pos = len(ids) - 1 - ids[::-1].index(self.mask_id)
            label = self.tag_index[tags[j]] if tags is not None else -1
            units.append(Unit(ids, types, pos, sentence, j, label))
        return units

    def encode(self, sentences: Sequence[TaggedSentence] | Sequence[Sequence[str]],
               labelled: bool = True) -> list[list[Unit]]:
        """Units per sentence (``TaggedSentence`` s carry gold tags; plain word lists do not)."""
        out = []
        for i, s in enumerate(sentences):
            words = s.words if isinstance(s, TaggedSentence) else list(s)
            tags = s.tags if labelled and isinstance(s, TaggedSentence) else None
            out.append(self.sentence_units(words, i, tags))
        return out


# ---------------------------------------------------------------- batching


def pack_units(groups: Sequence[Sequence[Unit]], max_tokens: int) -> list[list[Unit]]:
    """Fill batches in order with whole sentences while ``len(batch) * longest <= max_tokens``; a
    sentence alone over the budget is split across batches. Returns lists of units."""
    batches: list[list[Unit]] = []
    cur: list[Unit] = []
    longest = 0
    for group in groups:
        g_long = max((len(u.input_ids) for u in group), default=0)
        if cur and (len(cur) + len(group)) * max(longest, g_long) > max_tokens:
            batches.append(cur)
            cur, longest = [], 0
        for u in group:
            new_long = max(longest, len(u.input_ids))
            if cur and (len(cur) + 1) * new_long > max_tokens:
                batches.append(cur)
                cur, new_long = [], len(u.input_ids)
            cur.append(u)
            longest = new_long
    if cur:
        batches.append(cur)
    return batches


@dataclass
class UnitBatch:
    """Padded tensors of a list of units: ids/types/attention ``[B, L]``; mask_pos, labels ``[B]``."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    attention_mask: torch.Tensor
    mask_pos: torch.Tensor
    labels: torch.Tensor
    sentence: list[int]
    word: list[int]

    def to(self, device) -> "UnitBatch":
        return UnitBatch(self.input_ids.to(device), self.token_type_ids.to(device), self.attention_mask.to(device),
                         self.mask_pos.to(device), self.labels.to(device), self.sentence, self.word)


def collate_units(units: Sequence[Unit], pad_id: int) -> UnitBatch:
    length = max(len(u.input_ids) for u in units)
    ids = torch.full((len(units), length), pad_id, dtype=torch.long)
    types = torch.zeros((len(units), length), dtype=torch.long)
    mask = torch.zeros((len(units), length), dtype=torch.long)
    for i, u in enumerate(units):
        n = len(u.input_ids)
        ids[i, :n] = torch.tensor(u.input_ids)
        types[i, :n] = torch.tensor(u.token_type_ids)
        mask[i, :n] = 1
    return UnitBatch(ids, types, mask, torch.tensor([u.mask_pos for u in units]),
                     torch.tensor([u.label for u in units]), [u.sentence for u in units], [u.word for u in units])


def decode_tags(batches_logits: Sequence[tuple[UnitBatch, torch.Tensor]], word_counts: Sequence[int],
                tags: Sequence[str]) -> list[list[str]]:
    """Per-word tags from ``(batch, logits [B, C])`` pairs in any order: each unit's argmax goes to its
    ``(sentence, word)`` slot. A slot no unit filled is an error (it would silently be scored wrong)."""
    out: list[list[str | None]] = [[None] * n for n in word_counts]
    for batch, logits in batches_logits:
        for s, w, k in zip(batch.sentence, batch.word, logits.argmax(-1).tolist()):
            out[s][w] = tags[k]
    for i, row in enumerate(out):
        if any(t is None for t in row):
            raise ConfigError(f"sentence {i}: words {[j for j, t in enumerate(row) if t is None]} got no prediction")
    return out  # type: ignore[return-value]


# ---------------------------------------------------------------- models


def detect_architecture(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return "encoder-decoder" if cfg is not None and getattr(cfg, "is_encoder_decoder", False) else "encoder"


def _mlm_transform(model: nn.Module) -> tuple[nn.Linear, nn.Module, nn.Module] | None:
    """(dense, activation, layer_norm) of a shipped MLM head: BERT-style ``cls.predictions.transform``
    or RoBERTa/XLM-R-style ``lm_head``; None when the model has no MLM head."""
    cls = getattr(model, "cls", None)
    if cls is not None and hasattr(cls, "predictions"):
        t = cls.predictions.transform
        return t.dense, t.transform_act_fn, t.LayerNorm
    head = getattr(model, "lm_head", None)
    if head is not None and hasattr(head, "dense") and hasattr(head, "layer_norm"):
        return head.dense, nn.GELU(), head.layer_norm
    return None


class VerbalizerHead(nn.Module):
    """Label-word logits at mask states: ``LayerNorm(act(W h + b)) @ E[label_ids]^T + bias[label_ids]``.

    h: ``[N, H]`` -> ``[N, C]``. This is exactly a masked-LM head's output restricted to the label-word
    columns, computed without the ``[N, V]`` product.
    """

    def __init__(self, hidden: int, label_rows: torch.Tensor, layer_norm_eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act: nn.Module = nn.GELU()
        self.norm = nn.LayerNorm(hidden, eps=layer_norm_eps)
        self.label_embeddings = nn.Parameter(label_rows.detach().clone().float())
        self.bias = nn.Parameter(torch.zeros(label_rows.shape[0]))

    @classmethod
    def for_model(cls, model: nn.Module, label_ids: Sequence[int]) -> "VerbalizerHead":
        """Copy the model's MLM head when it ships one; else a fresh transform over tied input-embedding rows."""
        ids = torch.as_tensor(list(label_ids))
        out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        transform = _mlm_transform(model)
        rows = (out_emb.weight if out_emb is not None else model.get_input_embeddings().weight)[ids]
        eps = getattr(getattr(model, "config", None), "layer_norm_eps", 1e-12)
        head = cls(rows.shape[1], rows, eps)
        if transform is not None and out_emb is not None:
            dense, act, norm = transform
            head.dense.load_state_dict(dense.state_dict())
            head.norm.load_state_dict(norm.state_dict())
            head.act = act
            bias = getattr(out_emb, "bias", None)
            if bias is not None:
                head.bias.data.copy_(bias.detach()[ids])
        return head

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(hidden))) @ self.label_embeddings.T + self.bias


class ToProTagger(nn.Module):
    """Backbone + verbalizer: ``forward(batch) -> [B, C]`` label-word logits at each copy's mask.

    encoder: the base encoder's state at ``mask_pos`` through :class:`VerbalizerHead`;
    encoder-decoder: LM logits of the first generated token after ``decoder_prefix``, restricted to the
    label ids (the label word is generated).
    """

    def __init__(self, backbone: nn.Module, label_ids: Sequence[int], decoder_prefix: Sequence[int] = (),
                 architecture: str | None = None, train_backbone: bool = True):
        super().__init__()
        self.architecture = architecture or detect_architecture(backbone)
        check_choice("architecture", self.architecture, ARCHITECTURES)
        self.backbone = backbone
        for p in backbone.parameters():
            p.requires_grad_(train_backbone)
        self.register_buffer("label_ids", torch.as_tensor(list(label_ids), dtype=torch.long), persistent=False)
        if self.architecture == "encoder":
            self.head = VerbalizerHead.for_model(backbone, label_ids)
            # a shipped MLM head was copied into self.head; its original is never used, so it must not
            # count (or train) as a parameter
            encoder_params = {id(p) for p in backbone.base_model.parameters()}
            for p in backbone.parameters():
                if id(p) not in encoder_params:
                    p.requires_grad_(False)
        else:
            if not decoder_prefix:
                raise ConfigError("an encoder-decoder ToPro model needs decoder_prefix (start id [+ sentinel])")
            self.head = None
        self.register_buffer("decoder_prefix", torch.as_tensor(list(decoder_prefix), dtype=torch.long),
                             persistent=False)

    def forward(self, batch: UnitBatch) -> torch.Tensor:
        if self.architecture == "encoder":
            encoder = self.backbone.base_model
            kwargs: dict[str, Any] = {"attention_mask": batch.attention_mask}
            if getattr(encoder.config, "type_vocab_size", 0) > 1:
                kwargs["token_type_ids"] = batch.token_type_ids
            hidden = encoder(input_ids=batch.input_ids, **kwargs).last_hidden_state
            at_mask = hidden[torch.arange(hidden.shape[0], device=hidden.device), batch.mask_pos]
            return self.head(at_mask)
        dec = self.decoder_prefix.unsqueeze(0).expand(batch.input_ids.shape[0], -1)
        logits = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               decoder_input_ids=dec).logits
        return logits[:, -1, self.label_ids]


def decoder_prefix_for(backbone: nn.Module, tokenizer) -> list[int]:
    """Decoder start id, then the sentinel when the template's mask is a T5 sentinel (T5 targets read
    ``<extra_id_0> label``)."""
    start = backbone.config.decoder_start_token_id
    if start is None:
        raise ConfigError("encoder-decoder backbone has no decoder_start_token_id")
    return [start] if tokenizer.mask_token_id is not None else [start, mask_token_id(tokenizer)]


# ---------------------------------------------------------------- baselines


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
        n_prompt = 0
        if self.prompt is None:
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        else:
            embeds = self.backbone.get_input_embeddings()(input_ids)
            embeds, mask = prepend_prompt(self.prompt.values(), embeds, attention_mask)
            hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
            n_prompt = self.prompt.num_tokens
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        return self.head(hidden[rows, first + n_prompt])


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


def collate_words(items: Sequence[tuple[list[int], list[int], list[int]]], pad_id: int) -> WordBatch:
    length = max(len(i[0]) for i in items)
    width = max(len(i[1]) for i in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.long)
    first = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    for b, (i, f, lab) in enumerate(items):
        ids[b, : len(i)] = torch.tensor(i)
        mask[b, : len(i)] = 1
        first[b, : len(f)] = torch.tensor(f)
        labels[b, : len(lab)] = torch.tensor(lab)
    return WordBatch(ids, mask, first, labels, [len(f) for _, f, _ in items])


# ---------------------------------------------------------------- fit() tasks


class _TaggingTask:
    """Shared evaluation: ``evaluate("valid" | "test" | "<lang>")`` -> :func:`tagging_metrics`."""

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


class ToProTask(_TaggingTask):
    """``cptpp.train.fit`` task for :class:`ToProTagger`: one epoch = every training sentence once, with
    all (or ``train_words_per_sentence`` sampled) word copies, packed by the token budget."""

    def __init__(self, model: ToProTagger, template: ToProTemplate, splits: TaggingSplits,
                 device: torch.device | str = "cpu"):
        super().__init__(splits, device)
        self.model, self.template, self.cfg = model, template, template.cfg
        self.train_units = template.encode(splits.train)

    def batches(self, epoch: int, generator: torch.Generator) -> list[UnitBatch]:
        order = torch.randperm(len(self.train_units), generator=generator).tolist()
        groups = []
        k = self.cfg.train_words_per_sentence
        for i in order:
            units = self.train_units[i]
            if k is not None and len(units) > k:
                keep = torch.randperm(len(units), generator=generator)[:k].sort().values.tolist()
                units = [units[j] for j in keep]
            groups.append(units)
        return [collate_units(b, self.template.pad_id) for b in pack_units(groups, self.cfg.max_tokens_per_batch)]

    def loss(self, batch: UnitBatch) -> torch.Tensor:
        batch = batch.to(self.device)
        return F.cross_entropy(self.model(batch), batch.labels)

    def predict(self, sentences: Sequence[TaggedSentence]) -> list[list[str]]:
        groups = self.template.encode(sentences, labelled=False)
        # similar lengths together -> less padding; decode_tags puts every copy back in its slot
        groups = sorted(groups, key=lambda g: max((len(u.input_ids) for u in g), default=0))
        results = []
        for units in pack_units(groups, self.cfg.max_tokens_per_batch):
            batch = collate_units(units, self.template.pad_id)
            results.append((batch, self.model(batch.to(self.device)).cpu()))
        return decode_tags(results, [len(s.words) for s in sentences], self.cfg.tags)


class TokenTask(_TaggingTask):
    """``cptpp.train.fit`` task for :class:`TokenClassifier` (vanilla fine-tuning or prompt tuning)."""

    def __init__(self, model: TokenClassifier, tokenizer, splits: TaggingSplits, max_length: int = 256,
                 batch_size: int = 16, eval_batch_size: int = 64, device: torch.device | str = "cpu"):
        super().__init__(splits, device)
        check_range("batch_size", batch_size, 1)
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length
        self.tags = TAGS[splits.task]
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_items = encode_words(tokenizer, splits.train, self.tag_index, max_length)

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
        items = encode_words(self.tokenizer, sentences, self.tag_index, self.max_length)
        out = []
        for k in range(0, len(items), self.eval_batch_size):
            b = collate_words(items[k: k + self.eval_batch_size], self.pad_id)
            pred = self._logits(b).argmax(-1).cpu()
            out.extend([[self.tags[t] for t in pred[i, :n].tolist()] for i, n in enumerate(b.n_words)])
        return out


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

