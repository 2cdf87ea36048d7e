"""The linear probe (frozen backbone, a linear head on pooled features computed once), decoder verbalizer scoring
at the scored rows only, the tsheg restoration of TNCC titles, and the helpers of the multi-seed tables."""
import numpy as np
import pytest
import torch

from cptpp.config import ConfigError
from cptpp.peft.classification import ClassificationTask, Example, ProbeTask, probe_task
from cptpp.peft.pipelines.seeds import best_constant, clearly_above, format_mean_std, mean_std, protocol_over_seeds
from cptpp.peft.prompt import PromptClassifier, SoftPrompt
from cptpp.peft.tncc import restore_tsheg, syllables, tokenizer_coverage, with_tsheg, Title
from cptpp.train import TrainConfig, fit

transformers = pytest.importorskip("transformers")
from tiny_models import tiny_bert, tiny_gpt2, tiny_llama  # noqa: E402

IDS = torch.tensor([[5, 9, 14, 2, 8], [4, 6, 21, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
LABEL_IDS = [12, 13, 19]


def tiny_gemma3(softcap: float | None):
    cfg = transformers.Gemma3TextConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                        max_position_embeddings=64, final_logit_softcapping=softcap)
    torch.manual_seed(0)
    return transformers.Gemma3ForCausalLM(cfg).eval()


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2, lambda: tiny_gemma3(None), lambda: tiny_gemma3(3.0)],
                         ids=["llama", "gpt2", "gemma3", "gemma3-softcap"])
def test_decoder_verbalizer_logits_equal_the_full_lm_logits(make):
    """Scoring only the label rows at the last real token is the full LM's logits there (soft-capped too)."""
    lm = make()
    model = PromptClassifier(lm, 3, SoftPrompt(2, 16, torch.randn(2, 16)), label_token_ids=LABEL_IDS).eval()
    with torch.no_grad():
        got = model(IDS, MASK)
        embeds, mask, _ = model.embed(IDS, attention_mask=MASK)
        full = lm(inputs_embeds=embeds, attention_mask=mask).logits  # [B, P+L, V]
    last = mask.sum(1) - 1
    want = full[torch.arange(2), last][:, LABEL_IDS]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if make is not tiny_llama and getattr(lm.config, "final_logit_softcapping", None):
        assert want.abs().max() < 3.0  # the cap was applied by the reference, so it was by us


def examples_of(ids_per_class: list[int], n: int, seed: int) -> tuple[list[list[int]], list[Example]]:
    """n sequences; class c repeats token ``ids_per_class[c]`` between random filler tokens."""
    gen = torch.Generator().manual_seed(seed)
    seqs, exs = [], []
    for i in range(n):
        c = i % len(ids_per_class)
        length = int(torch.randint(4, 9, (1,), generator=gen))
        filler = torch.randint(20, 40, (length,), generator=gen).tolist()
        seqs.append([ids_per_class[c] if j % 2 else t for j, t in enumerate(filler)] + [ids_per_class[c]])
        exs.append(Example("", "", c, str(i)))
    return seqs, exs


def probe_of(backbone, seed=0) -> tuple[PromptClassifier, ClassificationTask]:
    torch.manual_seed(seed)
    model = PromptClassifier(backbone, 2, head="linear")
    ids, examples = {}, {}
    for split, n, s in (("train", 32, 1), ("valid", 16, 2), ("test", 16, 3)):
        ids[split], examples[split] = examples_of([5, 9], n, s)
    return model, ClassificationTask(model, ids, examples, pad_id=0, batch_size=8)


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama], ids=["encoder", "decoder"])
def test_probe_trains_only_the_head_and_learns_a_separable_feature(make):
    model, plain = probe_of(make())
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {"head.weight", "head.bias"}
    task = probe_task(plain)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    chance = task.evaluate("valid")["accuracy"]
    res = fit(task, TrainConfig(epochs=20, lr=5e-2, metric="accuracy", progress=False, patience=0, seed=0))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"head.weight", "head.bias"}
    assert res["valid"]["accuracy"] == 1.0 and res["test"]["accuracy"] == 1.0 and chance < 1.0


def test_probe_task_scores_what_the_model_scores():
    """Cached, standardized features give the model's own predictions once the standardization is folded."""
    model, plain = probe_of(tiny_llama())
    task = probe_task(plain)
    fit(task, TrainConfig(epochs=3, lr=5e-2, metric="accuracy", progress=False, patience=0, seed=0))
    with torch.no_grad():
        cached = task._logits("test", slice(None))
        task.fold_standardization()
        model.eval()
        direct = torch.cat([model(ids, mask) for ids, mask, _ in plain.iter_split("test", 5)])
    torch.testing.assert_close(direct, cached, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(task.predict("test"), plain.predict("test"))


def test_probe_task_refuses_a_model_that_trains_more_than_its_head():
    model, plain = probe_of(tiny_bert())
    model.backbone.embeddings.word_embeddings.weight.requires_grad_(True)
    with pytest.raises(ConfigError, match="only model.head"):
        ProbeTask(model, plain.ids, plain.examples, pad_id=0)


def test_token_probe_trains_only_the_head_and_matches_token_task():
    from test_topro import bert_config, tiny_tokenizer, word_tagged_sentences

    from cptpp.peft.tagging_data import TaggingSplits
    from cptpp.peft.token_classification import TokenClassifier, TokenProbeTask, TokenTask

    tok = tiny_tokenizer()
    sents = word_tagged_sentences(40)
    splits = TaggingSplits("ner", sents[:24], sents[24:32], sents[32:], zero_shot={"de": sents[32:]})
    torch.manual_seed(0)
    model = TokenClassifier(transformers.BertModel(bert_config()), 7, train_backbone=False).eval()
    with pytest.raises(ConfigError, match="only model.head"):
        TokenProbeTask(TokenClassifier(transformers.BertModel(bert_config()), 7, train_backbone=True), tok, splits)
    task = TokenProbeTask(model, tok, splits, batch_size=4, eval_batch_size=5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = fit(task, TrainConfig(epochs=30, lr=5e-2, metric="accuracy", progress=False, patience=0, seed=0))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"head.weight", "head.bias"}
    assert res["valid"]["accuracy"] >= 0.9
    # the cached features give what the plain task computes with the backbone on every call
    assert task.evaluate("de") == TokenTask(model, tok, splits).evaluate("de")


# ---------------------------------------------------------------- tsheg


def test_restore_tsheg_only_between_syllables():
    assert restore_tsheg("བྲག ཡེར པ") == "བྲག\u0f0bཡེར\u0f0bཔ"
    # the head mark ༄༅ and a number keep their spaces; a run of spaces is one boundary
    assert restore_tsheg("༄༅ ལྭ  རིང") == "༄༅ ལྭ\u0f0bརིང"
    assert restore_tsheg("2016 ལོའི ཚོགས") == "2016 ལོའི\u0f0bཚོགས"
    assert syllables("བྲག ཡེར པ") == syllables(restore_tsheg("བྲག ཡེར པ")) == ["བྲག", "ཡེར", "པ"]
    data = {"train": [Title("བྲག ཡེར པ", 3)]}
    assert with_tsheg(data, "keep") is data
    assert with_tsheg(data, "restore")["train"] == [Title("བྲག\u0f0bཡེར\u0f0bཔ", 3)]
    with pytest.raises(ConfigError, match="restore, keep"):
        with_tsheg(data, "drop")


def test_tokens_per_syllable_counts_either_delimiter():
    from test_tncc import byte_tokenizer

    tok = byte_tokenizer()
    spaced = ["བྲག ཡེར པ"]  # 3 syllables: 3+3+1 letters (3 bytes each) + 2 spaces
    cov = tokenizer_coverage(tok, spaced)
    assert cov["tokens_per_syllable"] == pytest.approx((7 * 3 + 2) / 3)
    cov = tokenizer_coverage(tok, [restore_tsheg(spaced[0])])  # a tsheg is 3 bytes
    assert cov["tokens_per_syllable"] == pytest.approx((7 * 3 + 2 * 3) / 3)


# ---------------------------------------------------------------- multi-seed tables


def test_mean_std_and_formatting():
    assert mean_std([0.5]) == (0.5, 0.0)
    m, s = mean_std([0.6, 0.7, 0.8])
    assert m == pytest.approx(0.7) and s == pytest.approx(0.1)
    assert format_mean_std([0.6, 0.7, 0.8]) == "70.0 ± 10.0" and format_mean_std([0.5]) == "50.0"
    assert format_mean_std([]) == "—"
    assert clearly_above([0.6, 0.7, 0.8], 0.49) and not clearly_above([0.6, 0.7, 0.8], 0.51)
    assert not clearly_above([0.9], 0.1)  # one seed says nothing about spread
    assert protocol_over_seeds("train 90/10 (seed 2); test subsampled to 8 (seed 2)") == (
        "train 90/10 (seeded per run); test subsampled to 8 (seeded per run)")


def test_best_constant_is_the_majority_for_accuracy_and_the_best_for_any_metric():
    from cptpp.peft.superglue import task_metrics

    gold = [0, 1, 1, 2, 1, 0]
    acc = lambda p, g: float((p == g).mean())  # noqa: E731
    assert best_constant(gold, acc) == (pytest.approx(0.5), 1)
    # CB's score = (accuracy + macro-F1 over 3 classes) / 2; answering 1: acc 1/2, F1 of class 1 = 2*3/(6+3)
    score, c = best_constant(gold, lambda p, g: task_metrics("CB", p, g)["score"], range(3))
    assert c == 1 and score == pytest.approx((0.5 + (2 * 3 / 9) / 3) / 2)
