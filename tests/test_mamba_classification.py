"""Byte-level token / sentence classification with a tiny random Mamba: alignment, isolation, learning, the table."""
import importlib.util
import json
import os
import random
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
from transformers import MambaForCausalLM  # noqa: E402

from cptpp.config import ConfigError  # noqa: E402
from cptpp.peft.mamba.classification import (  # noqa: E402
    TaskData,
    build_task,
    classifier,
    constant_baseline,
    finetune_classifier,
)
from cptpp.peft.mamba.experiment import tiny_mamba_config  # noqa: E402
from cptpp.peft.mamba.search import SINGLE_METHODS  # noqa: E402
from cptpp.peft.tagging_data import TAGS, TaggedSentence, TaggingSplits  # noqa: E402
from cptpp.peft.token_classification import encode_words_bytes, word_last_bytes  # noqa: E402
from cptpp.train import TrainConfig, fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    return MambaForCausalLM(tiny_mamba_config(hidden=32, layers=2, state=8))


def test_word_last_bytes_hand_worked_with_multibyte_characters():
    # Z ü(2) r i c h | sp | i s | sp | s c h ö(2) n | sp | 😀(4)
    # 0 1-2  3 4 5 6 |  7 | 8 9 | 10 | 11..16        | 17 | 18..21
    ids, last = word_last_bytes(["Zürich", "is", "schön", "😀"])
    assert ids == list("Zürich is schön 😀".encode("utf-8")) and len(ids) == 22
    assert last == [6, 9, 16, 21]
    assert bytes(ids[5:7]) == b"ch" and ids[16] == ord("n") and bytes(ids[18:22]) == "😀".encode()
    sent = TaggedSentence(("Zürich", "is", "schön", "😀"), ("PROPN", "AUX", "ADJ", "SYM"))
    idx = {t: i for i, t in enumerate(TAGS["pos"])}
    [(ids_all, pos_all, labels_all)] = encode_words_bytes([sent], idx)
    assert pos_all == last and labels_all == [idx["PROPN"], idx["AUX"], idx["ADJ"], idx["SYM"]]
    # cut at 16 bytes: "schön" ends at byte 16 and the emoji later: both leave the loss and read position 0
    [(ids_cut, pos_cut, labels_cut)] = encode_words_bytes([sent], idx, max_length=16)
    assert ids_cut == ids[:16] and pos_cut == [6, 9, 0, 0] and labels_cut == [idx["PROPN"], idx["AUX"], -100, -100]


def test_word_logits_do_not_depend_on_later_bytes_and_pooling_ignores_padding():
    """A word is read at its last byte by a causal model: what follows cannot change its logits."""
    model = classifier(tiny_lm(), 5, None).eval()
    a, last_a = word_last_bytes(["Zürich", "is", "big"])
    b, last_b = word_last_bytes(["Zürich", "was", "small", "too"])
    pad = 256
    ids = torch.tensor([a + [pad] * (len(b) - len(a)), b])
    mask = torch.tensor([[1] * len(a) + [0] * (len(b) - len(a)), [1] * len(b)])
    with torch.no_grad():
        words = model(ids, mask, torch.tensor([last_a, last_b[:3]]))
        assert words.shape == (2, 3, 5)
        torch.testing.assert_close(words[0, 0], words[1, 0])  # "Zürich" sees only itself in both
        assert (words[0, 1] - words[1, 1]).abs().max() > 1e-4  # "is" vs "was": not a vacuous comparison
        pooled = model(ids, mask)
        alone = model(torch.tensor([a]), torch.ones(1, len(a), dtype=torch.long))
    torch.testing.assert_close(pooled[0], alone[0], rtol=1e-5, atol=1e-6)


def _rule_sentences(n, seed):
    """Synthetic tagging rule read at a word's last byte: NOUN when the word *starts* with an upper-case
    letter (so the state must carry the first byte to the last), VERB otherwise; about 70% VERB."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words, tags = [], []
        for _ in range(rng.randint(3, 7)):
            w = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 4)))
            upper = rng.random() < 0.3
            words.append(w.capitalize() if upper else w)
            tags.append("NOUN" if upper else "VERB")
        out.append(TaggedSentence(tuple(words), tuple(tags)))
    return out


def _rule_data(n_train=160):
    splits = TaggingSplits("pos", _rule_sentences(n_train, 0), _rule_sentences(40, 1), _rule_sentences(40, 2))
    return TaskData("pos", splits, TAGS["pos"], "synthetic rule")


def test_tiny_model_learns_a_byte_tagging_rule_above_the_constant_baseline():
    data = _rule_data()
    const = constant_baseline(data)
    assert const["constant"] == "VERB" and 0.6 < const["test"]["accuracy"] < 0.85
    res = finetune_classifier(tiny_lm(), data, None, TrainConfig(epochs=6, lr=1e-2, seed=0, patience=0,
                                                                  progress=False), max_len=64)
    assert res["test"]["accuracy"] > const["test"]["accuracy"] + 0.15, res["test"]


def _trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("key,cfg", [(k, c) for k, _, c, _ in SINGLE_METHODS] + [("full", None)],
                         ids=[k for k, *_ in SINGLE_METHODS] + ["full"])
def test_only_the_intended_parameters_train(key, cfg):
    """Per method: the trainable set is the adapters (+ RMSNorm gains for partial:norm) and the head, and a few
    optimizer steps change exactly those tensors (the frozen base stays bit-identical)."""
    lm = tiny_lm()
    model = classifier(lm, len(TAGS["pos"]), cfg, seed=0)
    names = _trainable_names(model)
    assert {"head.weight", "head.bias"} <= names
    if cfg is None:
        assert names == {n for n, _ in model.named_parameters()}
    else:
        norm = "norm" in cfg.partial_targets
        for n in names - {"head.weight", "head.bias"}:
            assert "mamba_peft" in n or (norm and n.endswith("norm.weight") or norm and n.endswith("norm_f.weight")), n
        assert any("mamba_peft" in n for n in names)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = _rule_data(16)
    task = build_task(data, model, max_len=32, batch_size=8)
    fit(task, TrainConfig(epochs=1, lr=1e-2, seed=0, patience=0, progress=False, restore_best=False))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= names and "head.weight" in changed
    assert changed & (names - {"head.weight", "head.bias"}) or cfg is None
    # the base model passed in is never modified
    assert all(torch.equal(p, q) for p, q in zip(lm.parameters(), tiny_lm().parameters()))


def test_constant_baseline_for_ner_scores_zero_entity_f1():
    s = [TaggedSentence(("Ann", "lives", "here"), ("B-PER", "O", "O"))]
    data = TaskData("ner", TaggingSplits("ner", s, s, s), TAGS["ner"], "")
    res = constant_baseline(data)
    assert res["constant"] == "O" and res["test"]["f1"] == 0.0 and res["test"]["accuracy"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- benchmarks/mamba_table.py

@pytest.fixture
def table():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("mamba_table", ROOT / "benchmarks" / "mamba_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(key, valid, test, std=0.01):
    """A summarized row over two seeds at ``test`` ± ``std``."""
    values = [test - std / 2 ** 0.5, test + std / 2 ** 0.5]  # sample std of these two: std
    return {"key": key, "method": key, "valid": (valid, std), "test": (test, std), "test_values": values}


def test_claims_verdicts(table):
    singles = [k for k, *_ in SINGLE_METHODS]
    rows = [_row("constant", 0.2, 0.2, 0.0), _row("random_init", 0.5, 0.5), _row("full", 0.8, 0.8)]
    scores = dict(zip(singles, [0.85, 0.6, 0.6, 0.6, 0.6, 0.6, 0.82, 0.6, 0.7]))  # in_proj 1st, scan 2nd
    rows += [_row(k, v, v) for k, v in scores.items()] + [_row("hybrid", 0.9, 0.9)]
    v = table.claims(rows)
    assert v["full FT clearly above random_init"].startswith("yes")
    assert v["full FT clearly above constant"].startswith("yes")
    assert v["PEFT matches or beats full FT"].startswith("yes")
    assert v["LoRA in_proj and Additional-scan among the best single methods"].startswith("yes")
    assert v["searched hybrid beats the best single method"].startswith("yes")
    rows[2] = _row("full", 0.51, 0.51)  # within noise of the floor
    rows[-1] = _row("hybrid", 0.9, 0.84)  # best single (lora_in_proj_x, 0.85) is better on test
    scores["additional_scan"] = 0.55
    rows[3:-1] = [_row(k, v, v) for k, v in scores.items()]
    v = table.claims(rows)
    assert v["full FT clearly above random_init"].startswith("NO")
    assert v["LoRA in_proj and Additional-scan among the best single methods"].startswith("no")
    assert v["searched hybrid beats the best single method"].startswith("no")


@pytest.mark.skipif(not os.path.isdir(os.path.join(os.environ.get("CPTPP_DATA_MIRROR", "/nonexistent"), "text",
                                                   "udpos")), reason="CPTPP_DATA_MIRROR/text/udpos not available")
def test_table_resumes_without_redoing_finished_runs(table, tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    argv = ["--tasks", "pos", "--seeds", "0,1", "--max-train", "6", "--max-eval", "4", "--epochs", "1",
            "--trials", "1", "--runs", str(runs), "--out", str(out), "--in-process"]
    assert table.main(argv) == 0
    files = sorted(runs.glob("pos/*/seed*.json"))
    assert len(files) == 2 * len(table.row_keys())
    res = json.loads((out / "mamba_table.json").read_text())
    rows = {r["key"]: r for r in res["tables"]["pos"]}
    assert rows["full"]["trainable_params"] > rows["lora_in_proj_x"]["trainable_params"] > 0
    assert rows["constant"]["trainable_params"] == 0 and len(rows["affix"]["seeds"]) == 2
    assert "± " in (out / "mamba_table.md").read_text()
    with pytest.raises(ConfigError, match="--resume"):
        table.main(argv)
    with pytest.raises(ConfigError, match="epochs"):
        table.main([a if a != "1" else "2" for a in argv] + ["--resume"])
    stamps = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    assert table.main(argv + ["--resume"]) == 0
    assert files[0].exists()
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items() if f != files[0])
