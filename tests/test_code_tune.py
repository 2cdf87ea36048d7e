"""`cptpp code-tune` end to end on a tiny random backbone saved to disk and a tiny translation data folder."""
import json

import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("tree_sitter_java")
pytest.importorskip("peft")

from cptpp.cli import main
from cptpp.code.transducer import TransducerConfig, expected_parameters
from tests.test_transducer import SOURCES, TARGETS, tiny_backbone, tiny_tokenizer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny Llama and T5 (with their tokenizer), a tiny BERT label encoder, and translation files."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("code_tune")
    tok = tiny_tokenizer()
    for arch in ("llama", "t5"):
        tiny_backbone(arch, len(tok)).save_pretrained(root / arch)
        tok.save_pretrained(root / arch)
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "int": 4, "return": 5, "add": 6}
    wordlevel = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    wordlevel.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=wordlevel, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(
        root / "encoder")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(root / "encoder")
    data = root / "data" / "codexglue_java_cs_translation"
    data.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (data / f"{split}.java-cs.txt.java").write_text("".join(s + "\n" for s in SOURCES))
        (data / f"{split}.java-cs.txt.cs").write_text("".join(t + "\n" for t in TARGETS))
    return root


def _run(files, tmp_path, *extra):
    return main(["code-tune", "--task", "translation", "--data-root", str(files / "data"),
                 "--out", str(tmp_path / "run"), "--epochs", "2", "--batch-size", "2", "--lr", "0.01",
                 "--device", "cpu", *extra])


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_code_tune_transducer_end_to_end(arch, files, tmp_path, monkeypatch):
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "home"))
    rc = _run(files, tmp_path, "--method", "transducer", "--model", str(files / arch),
              "--label-encoder", str(files / "encoder"), "--fusion", "as-released")
    assert rc == 0
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert {"bleu", "sbleu", "em", "chrf", "codebleu", "codebleu_ngram", "token_acc"} <= set(results["test"])
    assert results["epochs_run"] == 2
    config = json.loads((run / "config.json").read_text())
    assert config["method"] == "transducer" and config["fusion"] == "as-released"
    assert config["pairs"] == {"train": 3, "valid": 3, "test": 3}
    cfg = TransducerConfig(fusion="as-released", label_dim=8)
    assert config["trainable_parameters"] == expected_parameters(cfg, 16)["total"]
    assert len((run / "test_predictions.txt").read_text().split("\n")) == 3 + 1
    assert (tmp_path / "home" / "code" / "label_vectors_encoder.pt").is_file()  # label vectors cached


def test_code_tune_graph_ablation_is_recorded_and_transducer_only(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "home"))
    rc = _run(files, tmp_path, "--method", "transducer", "--model", str(files / "llama"),
              "--label-encoder", str(files / "encoder"), "--graph-ablation", "zeros", "--epochs", "1")
    assert rc == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["graph_ablation"] == "zeros" and config["fusion"] == "cross-attention"
    capsys.readouterr()
    assert main(["code-tune", "--task", "translation", "--method", "lora", "--model", str(files / "llama"),
                 "--graph-ablation", "shuffle", "--out", str(tmp_path / "other")]) == 2
    assert "--graph-ablation: only for --method transducer" in capsys.readouterr().err


def test_code_tune_ia3_baseline(files, tmp_path, capsys):
    assert _run(files, tmp_path, "--method", "ia3", "--model", str(files / "llama")) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["trainable_parameters"] == 2 * (8 + 8 + 32)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["method"] == "ia3" and "chrf" in printed["test"]


def test_code_tune_bad_input_says_what_is_valid(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _run(files, tmp_path, "--method", "adapter", "--model", str(files / "llama"))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'adapter'" in err and "'ia3'" in err and "'transducer'" in err
    with pytest.raises(SystemExit):
        main(["code-tune", "--task", "sql", "--method", "lora", "--model", "x"])
    assert "'translation', 'assert'" in capsys.readouterr().err
    assert _run(files, tmp_path, "--method", "lora", "--model", str(files / "llama"), "--fusion", "as-released") == 2
    assert "--fusion: only for --method transducer" in capsys.readouterr().err
    assert _run(files, tmp_path, "--method", "lora", "--model", str(tmp_path / "nothing")) == 2
    assert "not a local Hugging Face model folder" in capsys.readouterr().err
