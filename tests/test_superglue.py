import json

import numpy as np
import pytest

from cptpp.download import ChecksumError, MalformedLineError
import torch

from cptpp.config import ConfigError
from cptpp.peft.classification import ClassificationTask, encode, f1_binary, f1_macro, verbalizer_ids
from cptpp.peft.superglue import (LABELS, VERBALIZERS, build_task, exact_match, load_task, read_jsonl, split_indices,
                                  task_metrics, to_examples)
from tests.conftest import mirror_dir



def test_f1_and_exact_match_match_hand_computed_values():
    gold = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    # class 0: tp 1, pred 2, gold 2 -> 0.5 ; class 1: tp 2, pred 3, gold 2 -> 0.8 ; class 2: tp 1, pred 1, gold 2 -> 2/3
    assert f1_macro(pred, gold, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert f1_binary(pred, gold, positive=1) == pytest.approx(0.8)
    # questions a: both right; b: one wrong -> EM 1/2
    assert exact_match(np.array([1, 0, 1, 1]), np.array([1, 0, 1, 0]), ["a", "a", "b", "b"]) == 0.5
    cb = task_metrics("CB", pred, gold)
    assert cb["accuracy"] == pytest.approx(4 / 6) and cb["score"] == pytest.approx((4 / 6 + cb["f1"]) / 2)
    m = task_metrics("MultiRC", np.array([1, 0, 1, 1]), np.array([1, 0, 1, 0]), ["a", "a", "b", "b"])
    assert m["f1a"] == pytest.approx(0.8) and m["em"] == 0.5 and m["score"] == pytest.approx(0.65)


def test_records_become_pairs_with_label_indices():
    rte = to_examples("RTE", [{"premise": "P.", "hypothesis": "H.", "label": "not_entailment", "idx": 3}])
    assert rte[0].text_a == "P." and '"H."' in rte[0].text_b and rte[0].label == 1 and rte[0].group == "3"
    cb = to_examples("CB", [{"premise": "P", "hypothesis": "H", "label": "neutral", "idx": 0}])
    assert cb[0].label == 2 and VERBALIZERS["CB"][cb[0].label] == "maybe"
    wic = to_examples("WiC", [{"word": "bank", "sentence1": "s1", "sentence2": "s2", "label": True, "idx": 0}])
    assert wic[0].label == 1 and "bank" in wic[0].text_b and "s1" in wic[0].text_a and "s2" in wic[0].text_a
    wsc = to_examples("WSC", [{"text": "T", "target": {"span1_text": "A", "span2_text": "it"}, "label": False, "idx": 0}])
    assert wsc[0].label == 0 and '"it"' in wsc[0].text_b
    copa = to_examples("COPA", [{"premise": "P", "choice1": "c1", "choice2": "c2", "question": "effect",
                                 "label": 1, "idx": 0}])
    assert copa[0].label == 1 and "effect" in copa[0].text_b
    boolq = to_examples("BoolQ", [{"passage": "X", "question": "q", "label": False, "idx": 0}])
    assert boolq[0].label == 0
    with pytest.raises(ConfigError, match="not one of"):
        to_examples("RTE", [{"premise": "P", "hypothesis": "H", "label": "maybe"}])
    with pytest.raises(ConfigError, match="no label"):
        to_examples("RTE", [{"premise": "P", "hypothesis": "H", "idx": 9}])


def test_multirc_flattens_answers_grouped_by_question():
    rec = {"idx": 7, "passage": {"text": "A<br>B <b>C</b>", "questions": [
        {"idx": 0, "question": "q0", "answers": [{"text": "a", "label": 1}, {"text": "b", "label": 0}]},
        {"idx": 1, "question": "q1", "answers": [{"text": "c", "label": 0}]}]}}
    ex = to_examples("MultiRC", [rec])
    assert [e.label for e in ex] == [1, 0, 0]
    assert [e.group for e in ex] == ["7-0", "7-0", "7-1"]
    assert ex[0].text_a == "A B C"


def test_read_jsonl_names_file_and_line_on_bad_input(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(MalformedLineError, match=r"x\.jsonl:2: malformed line '\{\"a\": ': Expecting value"
                                                 r".*; expected one JSON object per line"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(MalformedLineError, match=r"x\.jsonl:3: .*a JSON list"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n')
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        read_jsonl(path, expected_sha256="0" * 64)


def test_split_is_seeded_disjoint_and_complete():
    tr, va = split_indices(50, 0.1, seed=3)
    tr2, va2 = split_indices(50, 0.1, seed=3)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)
    assert len(va) == 5 and set(tr) | set(va) == set(range(50)) and not set(tr) & set(va)
    assert not np.array_equal(va, split_indices(50, 0.1, seed=4)[1])


def _write(root, rel, records):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_load_task_protocol_on_a_fake_root(tmp_path):
    recs = [{"premise": f"p{i}", "hypothesis": "h", "label": LABELS["RTE"][i % 2], "idx": i} for i in range(40)]
    _write(tmp_path, "superglue/RTE/train.jsonl", recs)
    _write(tmp_path, "superglue/RTE/val.jsonl", recs[:7])
    s = load_task("RTE", tmp_path, valid_fraction=0.25, seed=1, max_train=20, verify=False)
    assert (len(s.train), len(s.valid), len(s.test)) == (20, 10, 7)
    assert not {e.text_a for e in s.train} & {e.text_a for e in s.valid}
    assert "official validation as test" in s.protocol and "subsampled to 20" in s.protocol
    with pytest.raises(ChecksumError, match="sha256"):
        load_task("RTE", tmp_path)                                    # fake files are not the published ones
    with pytest.raises(FileNotFoundError, match="few_shot"):
        load_task("BoolQ", tmp_path, verify=False)


@pytest.mark.skipif(mirror_dir("text", "superglue/RTE") is None or mirror_dir("text", "fewglue/BoolQ") is None,
                    reason="$CPTPP_DATA_MIRROR lacks text/superglue/RTE or text/fewglue/BoolQ")
def test_real_mirror_sizes_and_protocol():
    rte = load_task("RTE")  # found the way the library finds it: mirror -> cache -> download
    assert (len(rte.train), len(rte.valid), len(rte.test)) == (2241, 249, 277)
    assert sum(e.label == 0 for e in rte.test) == 146                  # entailment count in SOURCE.txt
    boolq = load_task("BoolQ", few_shot=True)
    assert (len(boolq.train), len(boolq.valid), len(boolq.test)) == (32, 32, 3270)
    assert not {e.text_b for e in boolq.train} & {e.text_b for e in boolq.test}


class _ToyTokenizer:
    """Whitespace tokenizer: word -> stable id; enough for the LM encoding path."""

    eos_token_id = 1
    pad_token_id = 0

    def __init__(self):
        self.vocab = {}

    def encode(self, text, add_special_tokens=False):
        return [self.vocab.setdefault(w, len(self.vocab) + 2) for w in text.split()]


def test_lm_encoding_truncates_the_context_not_the_question():
    tok = _ToyTokenizer()
    ex = to_examples("RTE", [{"premise": " ".join(f"w{i}" for i in range(50)), "hypothesis": "H", "label": "entailment"}])
    ids = encode(ex, tok, "decoder", max_length=12)[0]
    tail = tok.encode("\n" + ex[0].text_b + "\nAnswer:")
    assert len(ids) == 12 and ids[-len(tail):] == tail
    ids = encode(ex, tok, "encoder-decoder", max_length=12)[0]
    assert ids[-1] == tok.eos_token_id and len(ids) == 12
    assert verbalizer_ids(tok, ["yes", "no"], "encoder-decoder") == [tok.vocab["yes"], tok.vocab["no"]]
    with pytest.raises(ConfigError, match="share a first token"):
        verbalizer_ids(tok, ["yes", "yes"], "decoder")


def test_task_evaluation_uses_the_right_labels():
    class FirstTokenParity(torch.nn.Module):                      # predicts class = first id % 2
        def forward(self, input_ids, attention_mask):
            return torch.nn.functional.one_hot(input_ids[:, 0] % 2, 2).float()

    ex = to_examples("RTE", [{"premise": "p", "hypothesis": "h", "label": LABELS["RTE"][i % 2]} for i in range(4)])
    seqs = [[2], [3], [5], [4]]                                       # predictions 0, 1, 1, 0 ; gold 0, 1, 0, 1
    task = ClassificationTask(FirstTokenParity(), {"test": seqs, "train": seqs}, {"test": ex, "train": ex},
                              pad_id=0, batch_size=3, eval_batch_size=3)
    assert task.evaluate("test") == {"accuracy": 0.5}
    batches = task.batches(1, torch.Generator().manual_seed(0))
    assert sorted(len(b[2]) for b in batches) == [1, 3]


def test_build_task_scores_with_the_superglue_metrics_of_its_task():
    from cptpp.peft.superglue import TaskSplits

    ex = to_examples("CB", [{"premise": f"p{i}", "hypothesis": "h", "label": LABELS["CB"][i % 3]} for i in range(6)])

    class AlwaysZero(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return torch.tensor([[1.0, 0.0, 0.0]]).expand(len(input_ids), -1)

    task = build_task("CB", TaskSplits("CB", ex, ex, ex, "toy"), AlwaysZero(), _ToyTokenizer(), "decoder", 16)
    got = task.evaluate("test")
    # gold 0,1,2,0,1,2, all predicted 0: accuracy 1/3; F1 of class 0 = 2*2/(6+2) = 0.5, others 0
    assert got["accuracy"] == pytest.approx(1 / 3) and got["f1"] == pytest.approx(0.5 / 3)
    assert got["score"] == pytest.approx((1 / 3 + 0.5 / 3) / 2)
