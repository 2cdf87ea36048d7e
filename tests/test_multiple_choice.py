"""Commonsense loaders (LLM-Adapters format) and LM-likelihood multiple-choice scoring."""
import json

import numpy as np
import pytest
import torch

from cptpp.config import ConfigError
from cptpp.download import MalformedLineError
from cptpp.peft.multiple_choice import (
    COMMONSENSE,
    MCExample,
    accuracy,
    choice_nll,
    choice_scores,
    context_text,
    continuations,
    load_commonsense,
    parse_record,
    predict,
    split_examples,
    training_example,
)
from cptpp.peft.tokenizers import ByteTokenizer
from tests.conftest import mirror_dir

PIQA = {"instruction": "Please choose the correct solution to the question: How to open a jar?\n\n"
                       "Solution1: twist the lid\n\nSolution2: hit it with a fork\n\nAnswer format: solution1/solution2",
        "input": "", "output": "the correct answer is solution1", "answer": "solution1"}
SIQA = {"instruction": "Please choose the correct answer to the question: Why?\n\nAnswer1: fun Answer2: money "
                       "Answer3: to rest\n\nAnswer format: answer1/answer2/answer3", "answer": "answer3"}
BOOLQ = {"instruction": "Please answer the following question with true or false, question: is sky blue?\n\n"
                        "Answer format: true/false", "answer": "true"}


def test_parse_records_of_each_format():
    ex = parse_record("piqa", PIQA, "x")
    assert ex.labels == ("solution1", "solution2") and ex.options == ("twist the lid", "hit it with a fork")
    assert ex.answer == 0
    ex = parse_record("siqa", SIQA, "x")
    assert ex.options == ("fun", "money", "to rest") and ex.answer == 2
    ex = parse_record("boolq", BOOLQ, "x")
    assert ex.labels == ex.options == ("true", "false") and ex.answer == 0


def test_bad_records_name_file_and_line(tmp_path):
    bad = dict(PIQA, answer="solution3")
    path = tmp_path / "test.json"
    path.write_text("[\n" + json.dumps(PIQA) + ",\n" + json.dumps(bad) + "\n]\n")  # record 1 on line 3
    with pytest.raises(MalformedLineError, match=r"test\.json:3: malformed line .*record 1: answer 'solution3' "
                                                 r"is not one of.*; expected an LLM-Adapters record") as e:
        load_commonsense("piqa", path)
    assert (e.value.path, e.value.lineno) == (str(path), 3)
    path.write_text('[\n  {"question": "?"}]')
    with pytest.raises(MalformedLineError, match=r"test\.json:2: .*record 0: expected a record with 'instruction'"):
        load_commonsense("piqa", path)
    path.write_text("[\n" + json.dumps(PIQA) + ",\n" + '{"instruction": }' + "\n]\n")  # JSON syntax error, line 3
    with pytest.raises(MalformedLineError, match=r"test\.json:3: malformed line '\{\"instruction\": \}': invalid JSON"):
        load_commonsense("piqa", path)
    path.write_text(json.dumps([PIQA]) + "\n]")
    with pytest.raises(MalformedLineError, match=r"test\.json:2: .*trailing data"):
        load_commonsense("piqa", path)
    path.write_text(json.dumps([PIQA, PIQA], indent=1))
    assert [e.answer for e in load_commonsense("piqa", path)] == [0, 0]


def test_unknown_task_lists_valid_names():
    with pytest.raises(ConfigError, match="choose one of: boolq, piqa"):
        load_commonsense("hellaswag")


@pytest.mark.parametrize("name,count", [("boolq", 3270), ("piqa", 1838), ("siqa", 1954), ("winogrande", 1267),
                                        ("arc-e", 2376), ("arc-c", 1172), ("obqa", 500)])
def test_mirror_sets_parse_completely(name, count):
    if mirror_dir("text", f"commonsense-llm-adapters/{COMMONSENSE[name]}") is None:
        pytest.skip("$CPTPP_DATA_MIRROR lacks this commonsense set")
    ex = load_commonsense(name)
    assert len(ex) == count
    assert all(0 <= e.answer < len(e.labels) == len(e.options) for e in ex)
    assert all(all(o for o in e.options) for e in ex)


def _examples(n=40):
    return [MCExample("t" if i % 2 else "u", f"q{i}", ("a1", "a2"), ("x", "y"), i % 2) for i in range(n)]


def test_split_is_seeded_disjoint_half_and_half():
    ex = _examples(40)
    s = split_examples(ex, seed=3)
    assert s == split_examples(ex, seed=3) and s != split_examples(ex, seed=4)
    ids = {k: {e.instruction for e in v} for k, v in s.items()}
    assert len(ids["test"]) == 20 and len(ids["train"]) + len(ids["valid"]) == 20
    assert not (ids["train"] & ids["valid"]) and not (ids["test"] & (ids["train"] | ids["valid"]))


class CountingLM(torch.nn.Module):
    """A causal 'LM' whose next-token log-probs depend only on the current token: logits = table[token]."""

    def __init__(self, vocab=257, seed=0):
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed)))

    def forward(self, ids, use_cache=False):
        return type("Out", (), {"logits": self.table[ids]})


def brute_force_score(lm, tok, context, cont, normalize):
    ids = tok.encode(context) + tok.encode(cont)
    logp = torch.log_softmax(lm.table.detach(), dim=-1)
    n = len(tok.encode(cont))
    total = sum(float(logp[ids[t - 1], ids[t]]) for t in range(len(ids) - n, len(ids)))
    return total / n if normalize else total


@pytest.mark.parametrize("mode", ["label", "text"])
def test_predict_matches_brute_force_likelihood(mode):
    tok, lm = ByteTokenizer(), CountingLM()
    ex = [parse_record("piqa", PIQA, "x"), parse_record("siqa", SIQA, "x"), parse_record("boolq", BOOLQ, "x")]
    want_scores = [[brute_force_score(lm, tok, context_text(e), c, mode == "text") for c in continuations(e, mode)]
                   for e in ex]
    # batch_size=2 splits an example's choices across batches and pads rows of different lengths
    scores = choice_scores(lm, tok, ex, mode=mode, batch_size=2, max_len=10_000, pad_id=256)
    for got_s, want_s in zip(scores, want_scores, strict=True):
        np.testing.assert_allclose(got_s, want_s, rtol=1e-5, atol=1e-5)
    got = predict(lm, tok, ex, mode=mode, batch_size=2, max_len=10_000, pad_id=256)
    assert got.tolist() == [int(np.argmax(s)) for s in want_scores]
    # -log softmax over the choices at the gold index, by hand
    want_nll = np.mean([-(s[e.answer] - np.log(np.sum(np.exp(s)))) for e, s in zip(ex, want_scores)])
    assert choice_nll(ex, scores) == pytest.approx(want_nll, rel=1e-5)


def test_choice_nll_of_an_indifferent_model_is_log_choices():
    ex = [parse_record("piqa", PIQA, "x"), parse_record("boolq", BOOLQ, "x")]
    flat = [np.zeros(len(e.labels)) for e in ex]
    assert choice_nll(ex, flat) == pytest.approx(np.mean([np.log(len(e.labels)) for e in ex]))


def test_training_example_labels_only_the_gold_answer():
    tok = ByteTokenizer()
    ex = parse_record("piqa", PIQA, "x")
    ids, labels = training_example(tok, ex, max_len=64)
    assert len(ids) == 64  # left-truncated
    answer = tok.encode(" solution1")
    assert ids[-len(answer):] == answer and labels[-len(answer):] == answer
    assert set(labels[:-len(answer)]) == {-100}


def test_accuracy_reports_per_task():
    ex = _examples(4)  # tasks u, t, u, t ; answers 0, 1, 0, 1
    acc = accuracy(ex, np.array([0, 0, 0, 1]))
    assert acc["accuracy"] == 0.75 and acc["accuracy/u"] == 1.0 and acc["accuracy/t"] == 0.5
    assert acc["task_mean"] == 0.75


def test_mamba_search_writes_best_trial(tmp_path):
    optuna = pytest.importorskip("optuna")  # noqa: F841
    from cptpp.peft.mamba.search import hybrid_search

    seen = []

    def run(cfg, lr):
        seen.append(cfg)
        score = 0.5 + 0.1 * ("dt_proj" in cfg.lora_targets) + 0.01 * cfg.scan_states
        return {"valid": {"accuracy": score}, "test": {"accuracy": score - 0.05}, "trainable_params": 10,
                "trainable_percent": 1.0}

    best = hybrid_search(run, n_trials=6, out=tmp_path, seed=0)
    scores = [0.5 + 0.1 * ("dt_proj" in c.lora_targets) + 0.01 * c.scan_states for c in seen]
    assert best["valid"]["accuracy"] == max(scores)
    assert json.loads((tmp_path / "best.json").read_text())["config"] == best["config"]
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(seen) and all("test" not in json.loads(line) for line in lines)


def test_mamba_search_resumes_a_killed_search(tmp_path):
    pytest.importorskip("optuna")
    from cptpp.config import ConfigError
    from cptpp.peft.mamba.search import hybrid_search

    def score(cfg):
        return 0.5 + 0.1 * ("dt_proj" in cfg.lora_targets) + 0.01 * cfg.scan_states + 0.001 * cfg.affix_tokens

    calls = []

    def run(cfg, lr):
        calls.append(cfg)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed inside the third trial
        return {"valid": {"accuracy": score(cfg)}, "test": {"accuracy": score(cfg) - 0.05},
                "trainable_params": 10, "trainable_percent": 1.0}

    with pytest.raises(KeyboardInterrupt):
        hybrid_search(run, n_trials=5, out=tmp_path, seed=0)
    first = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert len(first) == 2
    with pytest.raises(ConfigError, match=r"already holds a search \(.*study.db\); pass --resume"):
        hybrid_search(run, n_trials=5, out=tmp_path, seed=0)
    best = hybrid_search(run, n_trials=5, out=tmp_path, seed=0, resume=True)
    records = [json.loads(line) for line in (tmp_path / "trials.jsonl").read_text().splitlines()]
    assert records[:2] == first and len(records) == best["completed"] == 5  # the killed trial is run anew
    assert len(calls) == 3 + 3  # not the two finished trials again
    assert best["valid"]["accuracy"] == max(r["valid"]["accuracy"] for r in records)
    assert best["test"]["accuracy"] == pytest.approx(best["valid"]["accuracy"] - 0.05)
    with pytest.raises(ConfigError, match="no search to continue"):
        hybrid_search(run, n_trials=5, out=tmp_path / "new", seed=0, resume=True)
