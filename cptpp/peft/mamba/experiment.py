"""Fine-tuning a Mamba LM on the commonsense multiple-choice sets with a MambaPEFT config (or fully).

Used by ``cptpp mamba-search`` and ``benchmarks/mamba_commonsense.py``. The base is a local checkpoint
(``--model PATH``): a transformers Mamba with its tokenizer, or a byte-level Mamba written by
``cptpp mamba-pretrain``. Without one it is a tiny randomly initialized Mamba over UTF-8 bytes, briefly
trained as an LM on the fine-tuning half's instructions; its accuracies are NOT comparable to the paper's.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import MambaConfig, MambaForCausalLM

from cptpp.peft.mamba.tuners import ADDED_NAMES, MambaPeftConfig, apply_mamba_peft, use_cptpp_scan
from cptpp.peft.multiple_choice import (
    MCExample,
    accuracy,
    best_choices,
    choice_nll,
    choice_scores,
    context_text,
    load_commonsense,
    split_examples,
    training_example,
)
from cptpp.peft.tokenizers import ByteTokenizer
from cptpp.train import TrainConfig, fit
from cptpp.train.batching import pad, pad_token_id
from cptpp.train.params import count_parameters


@dataclass
class Base:
    """A base LM, its tokenizer, the pad id, and a line saying what it is (printed with every result)."""

    model: MambaForCausalLM
    tokenizer: Any
    pad_id: int
    description: str


def tiny_mamba_config(vocab_size: int = ByteTokenizer.vocab_size, hidden: int = 32, layers: int = 2,
                      state: int = 8) -> MambaConfig:
    return MambaConfig(vocab_size=vocab_size, hidden_size=hidden, state_size=state, num_hidden_layers=layers,
                       expand=2, conv_kernel=4, time_step_rank=4, pad_token_id=ByteTokenizer.pad_token_id,
                       bos_token_id=ByteTokenizer.pad_token_id, eos_token_id=ByteTokenizer.pad_token_id)


def load_base(model_path: str | None, seed: int = 0, device: str = "cpu") -> Base:
    """A local transformers Mamba checkpoint (with its tokenizer), a byte-level one from ``cptpp mamba-pretrain``
    (recognized by its marker file; tokenized with ``ByteTokenizer``), or a tiny random byte-level Mamba."""
    if model_path:
        from transformers import AutoTokenizer

        from cptpp.models import resolve_model
        from cptpp.peft.mamba.pretrain import byte_lm_info, describe

        model_path = str(resolve_model(model_path).path)  # a folder, or a registry name's prepared folder
        info = byte_lm_info(model_path)
        if info is not None:
            model = MambaForCausalLM.from_pretrained(model_path).to(device)
            return Base(model, ByteTokenizer(), ByteTokenizer.pad_token_id, describe(info, model_path))
        tok = AutoTokenizer.from_pretrained(model_path)
        model = MambaForCausalLM.from_pretrained(model_path).to(device)
        return Base(model, tok, pad_token_id(tok), f"pre-trained checkpoint {model_path}")
    torch.manual_seed(seed)
    model = MambaForCausalLM(tiny_mamba_config()).to(device)
    return Base(model, ByteTokenizer(), ByteTokenizer.pad_token_id,
                "tiny random byte-level Mamba (hidden 32, 2 layers), briefly LM-trained here: "
                "NOT comparable to the paper's Mamba-1.4B numbers")


def load_splits(tasks: Sequence[str], seed: int, limit: int | None = None,
                paths: dict[str, str] | None = None) -> dict[str, list[MCExample]]:
    """Seeded half/half split of each task, merged over tasks (see ``split_examples``)."""
    out: dict[str, list[MCExample]] = {"train": [], "valid": [], "test": []}
    for t in tasks:
        for k, v in split_examples(load_commonsense(t, (paths or {}).get(t)), seed, limit=limit).items():
            out[k] += v
    return out


def _batches(rows: list[tuple[list[int], list[int]]], batch_size: int, pad_id: int, gen: torch.Generator):
    order = torch.randperm(len(rows), generator=gen).tolist()
    out = []
    for s in range(0, len(order), batch_size):
        chunk = [rows[i] for i in order[s:s + batch_size]]
        out.append((pad([r[0] for r in chunk], pad_id), pad([r[1] for r in chunk], -100)))
    return out


class MultipleChoiceTask:
    """``cptpp.train`` task: LM loss on the gold answer label; evaluation = LM-likelihood accuracy."""

    metric = "accuracy"

    def __init__(self, model, tokenizer, splits: dict[str, list[MCExample]], *, pad_id: int, batch_size: int = 16,
                 max_len: int = 128, eval_batch_size: int = 64, mode: str = "label"):
        self.model, self.tok, self.splits, self.pad_id = model, tokenizer, splits, pad_id
        self.batch_size, self.max_len, self.eval_batch_size, self.mode = batch_size, max_len, eval_batch_size, mode
        self.rows = [training_example(tokenizer, ex, max_len) for ex in splits["train"]]
        self.device = next(model.parameters()).device

    def batches(self, epoch: int, generator: torch.Generator):
        return _batches(self.rows, self.batch_size, self.pad_id, generator)

    def loss(self, batch) -> torch.Tensor:
        ids, labels = (t.to(self.device) for t in batch)
        return self.model(ids, labels=labels, use_cache=False).loss

    def evaluate(self, split: str) -> dict[str, float]:
        ex = self.splits[split]
        scores = choice_scores(self.model, self.tok, ex, mode=self.mode, batch_size=self.eval_batch_size,
                               max_len=self.max_len, pad_id=self.pad_id)
        return accuracy(ex, best_choices(scores)) | {"choice_nll": choice_nll(ex, scores)}


class TextLMTask:
    """Plain next-token training on texts; ``neg_loss`` on held-out texts is the selection metric."""

    metric = "neg_loss"

    def __init__(self, model, tokenizer, train: list[str], valid: list[str], *, pad_id: int, batch_size: int = 16,
                 max_len: int = 128):
        self.model, self.pad_id, self.batch_size = model, pad_id, batch_size

        def rows(texts):
            ids = [tokenizer.encode(t, add_special_tokens=False)[-max_len:] for t in texts]
            return [(i, i) for i in ids]

        self.train_rows, self.valid_rows = rows(train), rows(valid)
        self.device = next(model.parameters()).device

    def batches(self, epoch, generator):
        return _batches(self.train_rows, self.batch_size, self.pad_id, generator)

    def loss(self, batch):
        ids, labels = (t.to(self.device) for t in batch)
        return self.model(ids, labels=labels, use_cache=False).loss

    def evaluate(self, split):
        gen = torch.Generator().manual_seed(0)
        losses = [float(self.loss(b)) for b in _batches(self.valid_rows, self.batch_size, self.pad_id, gen)]
        return {"neg_loss": -sum(losses) / max(len(losses), 1)}


def pretrain_tiny(base: Base, splits: dict[str, list[MCExample]], *, epochs: int = 2, lr: float = 3e-3,
                  max_len: int = 128, seed: int = 0) -> dict[str, Any]:
    """Brief LM training of the tiny base on the fine-tuning half's prompts (no answers, no test texts)."""
    use_cptpp_scan(base.model)
    texts = [context_text(ex) for ex in splits["train"]]
    n_valid = max(1, len(texts) // 10)
    task = TextLMTask(base.model, base.tokenizer, texts[n_valid:], texts[:n_valid], pad_id=base.pad_id,
                      max_len=max_len)
    return fit(task, TrainConfig(epochs=epochs, lr=lr, metric="neg_loss", seed=seed, progress=False, patience=0))


def finetune(base: Base, splits: dict[str, list[MCExample]], peft: MambaPeftConfig | None, train: TrainConfig,
             *, batch_size: int = 16, max_len: int = 128, mode: str = "label") -> dict[str, Any]:
    """Fine-tune a copy of ``base.model`` (fully when ``peft`` is None); returns fit's results plus parameter counts."""
    model = copy.deepcopy(base.model)
    if peft is None:
        use_cptpp_scan(model).requires_grad_(True)
    else:
        apply_mamba_peft(model, peft)
    count = count_parameters(model, added=ADDED_NAMES)
    task = MultipleChoiceTask(model, base.tokenizer, splits, pad_id=base.pad_id, batch_size=batch_size,
                              max_len=max_len, mode=mode)
    results = fit(task, train)
    return results | {"trainable_params": count.trainable, "base_params": count.base,
                      "trainable_percent": count.percent}
