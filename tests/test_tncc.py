import numpy as np
import pytest
import torch

from cptpp.config import ConfigError
from cptpp.download import MalformedLineError
from cptpp.peft.adapters import AdapterConfig
from cptpp.peft.peftt import PeftSpec, build_classifier
from cptpp.peft.tncc import (LABELS, Title, build_tncc_task, load_tncc, read_tncc, stratified_subsample,
                             tncc_metrics, tokenizer_coverage)
from cptpp.train import TrainConfig, fit
from tests.conftest import mirror_dir

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
TIBETAN = ["བྲག ཡེར པ", "༄༅ ལྭ རིང གི རིགས", "ཞིས ཅིན ཕིང གི གཏམ བཤད"]


def byte_tokenizer():
    """Byte-level BPE without merges: every UTF-8 byte is a token, so any script is readable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<unk>": 1, **{ch: i + 2 for i, ch in enumerate(sorted(alphabet))}}
    tok = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def english_wordpiece():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "the", "news", "question", ":"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]")


def test_read_tncc_and_errors(tmp_path):
    p = tmp_path / "train.txt"
    p.write_text("Tourism\tབྲག ཡེར པ\nCustoms\t༄༅ ལྭ རིང གི རིགས", encoding="utf-8")  # no final newline
    assert read_tncc(p) == [Title("བྲག ཡེར པ", LABELS.index("Tourism")), Title("༄༅ ལྭ རིང གི རིགས", 1)]
    p.write_text("Tourism\tབྲག\nSports\tཡེར\n", encoding="utf-8")
    with pytest.raises(MalformedLineError, match=r"train\.txt:2: malformed line .*unknown label 'Sports'"
                                                 r".*expected a label in Arts, Customs"):
        read_tncc(p)
    p.write_text("Tourism\tབྲག\nTourism བྲག\n", encoding="utf-8")
    with pytest.raises(MalformedLineError, match=r"train\.txt:2: malformed line 'Tourism བྲག': no tab; "
                                                 r"expected '<Label><TAB><title>'") as e:
        read_tncc(p)
    assert (e.value.path, e.value.lineno) == (str(p), 2)


def test_stratified_subsample_keeps_class_proportions():
    titles = [Title(str(i), 0) for i in range(80)] + [Title(str(i), 1) for i in range(20)] + [Title("x", 2)]
    sub = stratified_subsample(titles, 20, seed=0)
    counts = np.bincount([t.label for t in sub], minlength=3)
    assert counts.tolist() == [16, 4, 1]
    assert sub == stratified_subsample(titles, 20, seed=0) and sub != stratified_subsample(titles, 20, seed=1)


def test_metrics_hand_computed():
    gold = np.array([0, 0, 1, 2])
    pred = np.array([0, 1, 1, 2])
    m = tncc_metrics(pred, gold)
    # class F1: 0 -> 2/3, 1 -> 2/3, 2 -> 1, classes 3..11 absent -> 0
    assert m["accuracy"] == 0.75 and m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 12)


def test_coverage_byte_level_reads_tibetan_english_wordpiece_does_not():
    byte = tokenizer_coverage(byte_tokenizer(), TIBETAN)
    assert byte["unk_fraction"] == 0 and byte["collided_fraction"] == 0 and byte["word_collided_fraction"] == 0
    assert byte["tokens_per_text"] == pytest.approx(np.mean([len(t.encode("utf-8")) for t in TIBETAN]))
    wp = tokenizer_coverage(english_wordpiece(), TIBETAN)
    assert wp["unk_fraction"] == 1.0 and wp["collided_fraction"] > 0 and wp["word_collided_fraction"] > 0.5


def test_tncc_task_trains_prompt_plus_adapter_and_reports_macro_f1():
    tok = byte_tokenizer()
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=128, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = build_classifier(transformers.BertModel(cfg), PeftSpec(
        "prompt+adapter", len(LABELS), adapter=AdapterConfig(reduction_factor=4, activation="gelu")))
    splits = {s: [Title(t, i % 12) for i, t in enumerate(TIBETAN * 4)] for s in ("train", "valid", "test")}
    task = build_tncc_task(splits, model, tok, "encoder", max_length=24, batch_size=4)
    assert all(len(ids) <= 24 for ids in task.ids["train"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = fit(task, TrainConfig(epochs=2, lr=1e-2, metric="macro_f1", progress=False))
    assert set(res["test"]) == {"accuracy", "macro_f1"}
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.skipif(mirror_dir("text", "tncc-title") is None, reason="$CPTPP_DATA_MIRROR lacks text/tncc-title")
def test_real_split_sizes_and_labels():
    data = load_tncc()  # found the way the library finds it: mirror -> cache -> download
    assert {k: len(v) for k, v in data.items()} == {"train": 7422, "valid": 927, "test": 927}
    assert np.bincount([t.label for t in data["test"]], minlength=12)[LABELS.index("Politics")] == 225
