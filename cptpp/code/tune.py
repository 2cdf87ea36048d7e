"""One method on one code task: load the backbone, encode the data, build the adapted LM.

`cptpp code-tune` and benchmarks/transducer_table.py both go through these functions and then
`cptpp.train.fit`. Importing this module does not import torch (the CLI lists ``METHODS``).
"""
from __future__ import annotations

from pathlib import Path

from cptpp.config import check_choice

METHODS = ("transducer", "lora", "prompt", "prefix", "ia3", "full")
# what a Transducer sees of the code: its own graph, another example's (a derangement within the split), or
# all-zero node-label vectors (every node then gets the same state: no information from the code at all)
GRAPH_ABLATIONS = ("none", "shuffle", "zeros")


def load_backbone(path: str | Path):
    """``(model, tokenizer)`` from a local HF folder or a model registry name (:func:`cptpp.models.resolve_model`,
    prepared on first use): T5-family -> seq2seq LM, anything else -> causal LM.

    The tokenizer gets ``pad = eos`` when it has no pad token (decoder-only models).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from cptpp.models import resolve_model

    path = resolve_model(str(path)).path
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"--model {path}: not a local Hugging Face model folder (no config.json there)")
    config = AutoConfig.from_pretrained(path)
    cls = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    model = cls.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return model, tok


def build_lm(method: str, backbone, fusion: str = "cross-attention", label_dim: int = 384, max_nodes: int = 50):
    """A ``TransducerLM`` (``method="transducer"``) or ``BaselineLM`` (peft methods, ``full``, ``frozen``)."""
    from .baselines import BASELINES, BaselineConfig, BaselineLM
    from .transducer import TransducerConfig, TransducerLM

    check_choice("method", method, METHODS + tuple(m for m in BASELINES if m not in METHODS))
    if method == "transducer":
        return TransducerLM(backbone, TransducerConfig(fusion=fusion, label_dim=label_dim, max_nodes=max_nodes))
    return BaselineLM(backbone, BaselineConfig(method=method))


def encode_task(cfg, tokenizer, encoder_decoder: bool, root: str | Path | None = None):
    """``(data, protocol, available)``: each split encoded and subsampled per ``cfg`` (a ``CodeTaskConfig``).

    ``available`` gives each split's size in the mirror before the length filter and sampling.
    """
    from .tasks import encode_pairs, load_splits

    # a folder the user names holds their own copy: read it as it is, without the published checksums
    splits, protocol = load_splits(cfg.task, root, seed=cfg.seed, verify=root is None)
    limits = {"train": cfg.train_size, "valid": cfg.valid_size, "test": cfg.test_size}
    data = {s: encode_pairs(splits[s], tokenizer, cfg, encoder_decoder, limits[s], cfg.seed) for s in splits}
    return data, protocol, {s: len(splits[s]) for s in splits}


def label_embeddings(label_encoder: str | Path | None = None):
    """``(LabelEmbeddings, label_dim)`` for a local sentence encoder (default: MiniLM from its package).

    Vectors are cached by label text in ``$CPTPP_DATA_HOME/code/label_vectors_<encoder>.pt``.
    """
    from cptpp.download import data_home

    from .transducer import LabelEmbeddings, hf_text_encoder

    if label_encoder is not None and not Path(label_encoder).is_dir():
        raise FileNotFoundError(f"--label-encoder {label_encoder}: no such folder")
    encode = hf_text_encoder(label_encoder)
    name = "minilm" if label_encoder is None else Path(label_encoder).resolve().name
    labels = LabelEmbeddings(encode, data_home() / "code" / f"label_vectors_{name}.pt")
    return labels, int(encode(["x"]).shape[-1])


def attach_all_graphs(data: dict, task: str, labels, max_nodes: int = 50):
    """Build every example's CPG (registering node labels) and return the label table ``[num_labels, dim]``."""
    from .task_specs import TASKS
    from .tasks import attach_graphs

    for examples in data.values():
        attach_graphs(examples, TASKS[task].language, labels, max_nodes)
    return labels.table()



def ablate_graphs(data: dict, table, mode: str = "none", seed: int = 0):
    """Corrupt what a Transducer sees of the code, to test whether the graph contributes; returns the label table.

    ``"shuffle"``: within each split, example ``order[i]`` gets the graph of ``order[i + 1]`` (``order`` a seeded
    shuffle; one cycle, so no example keeps its own graph when the split has two or more) -- graph statistics
    stay, the match with the source is gone. ``"zeros"``: the table ``[num_labels, dim]`` becomes zeros, so
    every node of every graph gets the same state. ``"none"``: nothing changes.
    """
    import random

    import torch

    check_choice("graph_ablation", mode, GRAPH_ABLATIONS)
    if mode == "zeros":
        return torch.zeros_like(table)
    if mode == "shuffle":
        rng = random.Random(seed)
        for examples in data.values():
            order = list(range(len(examples)))
            rng.shuffle(order)
            graphs = [examples[i].graph for i in order]
            for k, i in enumerate(order):
                examples[i].graph = graphs[(k + 1) % len(order)]
    return table
