"""Code tasks: metrics against hand-computed values, mirror loaders, batching layout, peft baselines."""
import math
from collections import Counter

import pytest
import torch

from cptpp.code.metrics import code_tokens, corpus_bleu, exact_match, sentence_bleu
from cptpp.code.tasks import (CodeGenTask, CodePair, CodeTaskConfig, collate, encode_pairs, load_pairs, load_splits,
                              token_accuracy, unescape_docstring_corpus)
from cptpp.download import ChecksumError, MalformedLineError
from tests.conftest import mirror_dir


# ----------------------------------------------------------------------------- metrics

def test_code_tokens_split_symbols_and_keep_literals():
    assert code_tokens('a.b("x y", 1.5f);') == ["a", ".", "b", "(", '"x y"', ",", "1.5f", ")", ";"]


def test_corpus_bleu_hand_computed():
    # hyp: a b c d e f (6 tokens), ref: a b c d x f y (7 tokens)
    # p1 = 5/6, p2 = 3/5 (ab bc cd), p3 = 2/4 (abc bcd), p4 = 1/3 (abcd); BP = exp(1 - 7/6)
    expected = 100 * math.exp(1 - 7 / 6) * math.exp((math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4)
                                                     + math.log(1 / 3)) / 4)
    assert corpus_bleu(["a b c d e f"], ["a b c d x f y"]) == pytest.approx(expected)
    assert corpus_bleu(["int x = 1 ;"], ["int x=1;"]) == pytest.approx(100.0)
    assert corpus_bleu(["a b"], ["c d e f"]) == 0.0


def test_corpus_bleu_sums_counts_over_sentences():
    # two sentences: matches and totals are summed before the precisions are taken
    hyps, refs = ["a b c d", "e f g h"], ["a b c d", "e f x h"]
    p = [7 / 8, 4 / 6, 2 / 4, 1 / 2]
    assert corpus_bleu(hyps, refs) == pytest.approx(100 * math.exp(sum(map(math.log, p)) / 4))


def test_sentence_bleu_add_one_smoothing():
    # hyp a b c, ref a b d: p1 = 2/3, p2 = (1+1)/(2+1), p3 = (0+1)/(1+1), p4 = (0+1)/(0+1); BP = 1
    expected = 100 * math.exp((math.log(2 / 3) + math.log(2 / 3) + math.log(1 / 2) + math.log(1)) / 4)
    assert sentence_bleu("a b c", "a b d") == pytest.approx(expected)
    assert sentence_bleu("", "a") == 0.0


def test_exact_match_ignores_whitespace():
    assert exact_match(["x = 1;", "y"], ["x=1 ;", "z"]) == 50.0


# ----------------------------------------------------------------------------- mirror

def _need_mirror(*tasks):
    from cptpp.code.task_specs import TASKS

    if any(mirror_dir("code", TASKS[t].folder) is None for t in tasks):
        pytest.skip(f"$CPTPP_DATA_MIRROR lacks the code datasets of {', '.join(tasks)}")


def test_loaders_read_the_documented_split_sizes():
    _need_mirror("translation", "assert", "summarization", "docstring")
    # no root: files are found the way the library finds them (mirror -> cache -> download), sha256-checked
    assert [len(load_pairs("translation", s)) for s in ("train", "valid", "test")] == [10295, 499, 1000]
    assert [len(load_pairs("assert", s)) for s in ("train", "valid", "test")] == [4547, 617, 365]
    assert [len(load_pairs("summarization", s)) for s in ("valid", "test")] == [8714, 8714]
    assert [len(load_pairs("docstring", s)) for s in ("valid", "test")] == [2000, 2000]
    pair = load_pairs("assert", "test")[0]
    assert pair.target.startswith("assert")
    assert '"<AssertPlaceHolder>" ;' in pair.source


def test_valid_as_train_protocol_never_invents_a_train_split():
    _need_mirror("repair", "translation")
    with pytest.raises(ValueError, match="no train split"):
        load_pairs("repair", "train")
    splits, protocol = load_splits("repair", seed=3)
    assert protocol == "valid-as-train"
    valid_file = load_pairs("repair", "valid")
    assert len(valid_file) == 5835 and len(splits["valid"]) == 584
    # train + valid is exactly the mirror's valid file, each pair used once
    assert Counter(splits["train"]) + Counter(splits["valid"]) == Counter(valid_file)
    assert splits["test"] == load_pairs("repair", "test")
    again, _ = load_splits("repair", seed=3)
    assert again["valid"] == splits["valid"]
    _, official = load_splits("translation")
    assert official == "official-splits"


def _fake(root, folder, files):
    for name, text in files.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_text(text, encoding="utf-8")
    return root / folder


def test_malformed_lines_name_file_and_line(tmp_path):
    d = _fake(tmp_path, "atlas_style_assert_generation",
              {"valid.jsonl": '{"input": "a", "assertion": "b"}\n{"input": "a"}\n'})
    with pytest.raises(MalformedLineError, match=r"valid\.jsonl:2: malformed line .*missing key; "
                                                 r"expected a JSON object with 'input' and 'assertion'") as e:
        load_pairs("assert", "valid", tmp_path, verify=False)
    assert (e.value.path, e.value.lineno) == (str(d / "valid.jsonl"), 2)
    (d / "valid.jsonl").write_text('{"input": "a", "assertion": "b"}\n{"input": \n')
    with pytest.raises(MalformedLineError, match=r"valid\.jsonl:2: .*expected one JSON record per line"):
        load_pairs("assert", "valid", tmp_path, verify=False)
    d = _fake(tmp_path, "tlcodesum_java_summarization", {"test.token.code": "1\tint f ( )\n2 int g ( )\n",
                                                         "test.token.nl": "1\tf\n2\tg\n"})
    with pytest.raises(MalformedLineError, match=r"test\.token\.code:2: malformed line '2 int g \( \)': no tab"):
        load_pairs("summarization", "test", tmp_path, verify=False)
    (d / "test.token.code").write_text("1\tint f ( )\n3\tint g ( )\n")
    with pytest.raises(MalformedLineError, match=r"test\.token\.nl:2: .*the ids differ; expected id 3"):
        load_pairs("summarization", "test", tmp_path, verify=False)
    d = _fake(tmp_path, "codexglue_java_cs_translation", {"test.java-cs.txt.java": "a\nb\nc\n",
                                                          "test.java-cs.txt.cs": "A\nB\n"})
    with pytest.raises(MalformedLineError,
                       match=r"test\.java-cs\.txt\.java:3: malformed line 'c': .*ends after line 2"):
        load_pairs("translation", "test", tmp_path, verify=False)
    # the checksum is checked by default: these files are not the published ones
    with pytest.raises(ChecksumError, match=r"test\.java-cs\.txt\.java"):
        load_pairs("translation", "test", tmp_path)


def test_docstring_unescape():
    assert unescape_docstring_corpus("def f(x): DCNL DCSP return x") == "def f(x):\n    return x"
    assert unescape_docstring_corpus("if a: DCNL DCSP DCSP b('DCSP c')") == "if a:\n        b(' c')"


# ----------------------------------------------------------------------------- batching

class _Tok:
    """Whitespace tokenizer over a fixed vocabulary (enough for layout tests)."""

    eos_token_id, pad_token_id = 1, 0

    def __init__(self):
        self.vocab = {}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.setdefault(w, len(self.vocab) + 2) for w in text.split()]}


def test_decoder_only_layout_masks_prompt_and_fuses_source_only():
    tok = _Tok()
    cfg = CodeTaskConfig(separator=" => ", max_source_tokens=10, max_target_tokens=10)
    ex = encode_pairs([CodePair("a b c", "x y"), CodePair("d", "z")], tok, cfg, encoder_decoder=False)
    ex.sort(key=lambda e: -e.n_source)
    train = collate(ex, 0, encoder_decoder=False, train=True)
    sep, eos = tok.vocab["=>"], 1
    a, b, c, x, y = (tok.vocab[w] for w in "a b c x y".split())
    assert train["input_ids"][0].tolist() == [a, b, c, sep, x, y, eos]
    assert train["labels"][0].tolist() == [-100, -100, -100, -100, x, y, eos]
    assert train["fuse_mask"][0].tolist() == [True, True, True, False, False, False, False]
    assert train["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0]
    gen = collate(ex, 0, encoder_decoder=False, train=False)
    assert gen["input_ids"][1].tolist() == [0, 0, tok.vocab["d"], sep]          # left-padded prompt
    assert gen["attention_mask"][1].tolist() == [0, 0, 1, 1]
    assert gen["fuse_mask"][1].tolist() == [False, False, True, False]


def test_drop_long_and_limit():
    tok = _Tok()
    cfg = CodeTaskConfig(max_source_tokens=2, max_target_tokens=2)
    pairs = [CodePair("a b c", "x"), CodePair("a", "x y z")] + [CodePair(f"s{i}", "t") for i in range(5)]
    kept = encode_pairs(pairs, tok, cfg, encoder_decoder=True, limit=3, seed=1)
    assert len(kept) == 3 and all(e.source.startswith("s") for e in kept)
    assert kept == encode_pairs(pairs, tok, cfg, encoder_decoder=True, limit=3, seed=1)


def test_token_accuracy_shifts_for_causal_lm():
    labels = torch.tensor([[-100, 5, 6]])
    logits = torch.zeros(1, 3, 8)
    logits[0, 0, 5] = 1  # position 0 predicts token 1 (=5): right
    logits[0, 1, 7] = 1  # position 1 predicts token 2 (=6): wrong
    assert token_accuracy(logits, labels, encoder_decoder=False) == (1, 2)
    logits_ed = torch.zeros(1, 3, 8)
    logits_ed[0, 1, 5] = 1
    assert token_accuracy(logits_ed, labels, encoder_decoder=True) == (1, 2)


# ----------------------------------------------------------------------------- baselines

@pytest.fixture(scope="module")
def tiny():
    pytest.importorskip("peft")
    from tests.test_transducer import tiny_backbone, tiny_tokenizer

    tok = tiny_tokenizer()
    return tok, tiny_backbone


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_baseline_trainable_counts(arch, tiny):
    from cptpp.code.baselines import BaselineConfig, BaselineLM

    tok, make = tiny
    d = 16
    counts = {m: sum(p.numel() for p in BaselineLM(make(arch, len(tok)), BaselineConfig(
        method=m, prompt_tokens=5, prefix_tokens=3)).module.parameters() if p.requires_grad)
        for m in ("lora", "prompt", "prefix", "ia3", "full", "frozen")}
    full = sum(p.numel() for p in make(arch, len(tok)).parameters())
    if arch == "llama":   # 2 layers; q: 16->16, v: 16->8 (one kv head of 8); kv width 8
        lora = 2 * 8 * ((16 + 16) + (16 + 8))
        prefix = 3 * 2 * 2 * 8
        ia3 = 2 * (8 + 8 + 32)        # k_proj, v_proj outputs (8 each) + down_proj input (intermediate 32)
    else:                 # q, v (16 -> 16) in encoder self, decoder self and decoder cross attention
        lora = 3 * 2 * 8 * (16 + 16)
        prefix = 3 * 1 * 2 * d
        ia3 = 3 * (16 + 16) + 2 * 32  # k, v of the three attentions + wo input (d_ff 32) in both stacks
    assert counts == {"lora": lora, "prompt": 5 * d, "prefix": prefix, "ia3": ia3, "full": full, "frozen": 0}


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_ia3_trains_only_its_scaling_vectors(arch, tiny):
    from cptpp.code.baselines import BaselineConfig, BaselineLM

    tok, make = tiny
    lm = BaselineLM(make(arch, len(tok)), BaselineConfig(method="ia3"))
    trainable = {n: p for n, p in lm.module.named_parameters() if p.requires_grad}
    assert trainable and all(".ia3_l." in n for n in trainable)
    targets = {"llama": ("k_proj", "v_proj", "down_proj"), "t5": ("k", "v", "wo")}[arch]
    assert {n.split(".ia3_l.")[0].rsplit(".", 1)[1] for n in trainable} == set(targets)
    assert all(torch.equal(p, torch.ones_like(p)) for p in trainable.values())  # starts as the identity


@pytest.mark.parametrize("method", ["lora", "prompt", "prefix", "ia3"])
def test_baselines_train_through_fit(method, tiny):
    from cptpp.code.baselines import BaselineConfig, BaselineLM
    from cptpp.train import TrainConfig, fit
    from tests.test_transducer import SOURCES, TARGETS

    tok, make = tiny
    backbone = make("llama", len(tok))
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    lm = BaselineLM(backbone, BaselineConfig(method=method, prompt_tokens=4, prefix_tokens=2))
    cfg = CodeTaskConfig(max_source_tokens=80, max_target_tokens=40, batch_size=2, separator="\n// ->\n")
    pairs = [CodePair(s, t) for s, t in zip(SOURCES, TARGETS)]
    data = {s: encode_pairs(pairs, tok, cfg, False) for s in ("train", "valid", "test")}
    task = CodeGenTask(lm, tok, data, cfg)
    trained = {n: p.detach().clone() for n, p in lm.module.named_parameters() if p.requires_grad}
    res = fit(task, TrainConfig(epochs=1, lr=1e-2, optimizer="adamw", metric="token_acc", progress=False))
    assert len(task.predictions["test"]) == 3 and {"bleu", "chrf"} <= set(res["test"])
    changed = [n for n, p in lm.module.named_parameters() if p.requires_grad and not torch.equal(p, trained[n])]
    assert changed
    base = lm.module.get_base_model().state_dict()
    for k, v in frozen.items():   # backbone weights themselves are untouched (LoRA adds separate A/B)
        key = k if k in base else k.replace(".weight", ".base_layer.weight")
        assert torch.equal(base[key], v), k
