"""Byte-level Mamba pre-training: chunked scan == reference scan, corpus composition, save/load, resume."""
import json
import os
import re

import pytest
import torch

pytest.importorskip("transformers")

from cptpp.config import ConfigError  # noqa: E402
from cptpp.peft.mamba.corpus import (  # noqa: E402
    Corpus,
    build_corpus,
    corpus_documents,
    detokenize,
    heldout_windows,
    random_windows,
)
from cptpp.peft.mamba.experiment import load_base  # noqa: E402
from cptpp.peft.mamba.pretrain import MARKER, lr_at, pretrain  # noqa: E402
from cptpp.peft.mamba.pretrain_config import PretrainConfig  # noqa: E402
from cptpp.peft.mamba.scan import selective_scan, selective_scan_chunked  # noqa: E402
from cptpp.peft.tokenizers import ByteTokenizer  # noqa: E402


# ---------------------------------------------------------------- chunked scan
def scan_inputs(batch=2, L=37, d=5, n=3, seed=0, dtype=torch.float64, h0=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, d, generator=g, dtype=dtype)
    dt = torch.rand(batch, L, d, generator=g, dtype=dtype) * 0.9 + 0.05
    A = -torch.rand(d, n, generator=g, dtype=dtype) * 3
    B, C = torch.randn(batch, L, n, generator=g, dtype=dtype), torch.randn(batch, L, n, generator=g, dtype=dtype)
    D = torch.randn(d, generator=g, dtype=dtype)
    start = torch.randn(batch, d, n, generator=g, dtype=dtype) if h0 else None
    return [t if t is None else t.requires_grad_() for t in (x, dt, A, B, C, D, start)]


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])  # 37 is divisible by none of them; 64 > L
@pytest.mark.parametrize("h0", [False, True])
def test_chunked_scan_equals_reference_outputs_and_gradients(chunk, h0):
    ref_in, new_in = scan_inputs(h0=h0), scan_inputs(h0=h0)
    y_ref, h_ref = selective_scan(*ref_in)
    y_new, h_new = selective_scan_chunked(*new_in, chunk=chunk)
    torch.testing.assert_close(y_new, y_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(h_new, h_ref, rtol=0, atol=1e-12)
    # Random weights on both outputs, so the gradient through the final state is checked too.
    g = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(y_ref.shape, generator=g, dtype=y_ref.dtype), torch.randn(h_ref.shape, generator=g,
                                                                                   dtype=h_ref.dtype)
    ((y_ref * wy).sum() + (h_ref * wh).sum()).backward()
    ((y_new * wy).sum() + (h_new * wh).sum()).backward()
    names = ["x", "dt", "A", "B", "C", "D", "h0"]
    for name, a, b in zip(names, ref_in, new_in):
        if a is None:
            continue
        assert a.grad is not None and a.grad.abs().sum() > 0, name
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-10, msg=name)


def test_chunked_scan_passes_gradcheck():
    ins = scan_inputs(batch=1, L=7, d=2, n=2, seed=3)
    assert torch.autograd.gradcheck(lambda *a: selective_scan_chunked(*a, chunk=3), ins)


def test_chunked_scan_keeps_input_dtype_and_computes_in_float32():
    x, dt, A, B, C, D, _ = [t if t is None else t.detach() for t in scan_inputs(dtype=torch.float32, h0=False)]
    y, h = selective_scan_chunked(x.half(), dt.half(), A, B.half(), C.half(), D, chunk=4)
    assert y.dtype == torch.float16 and h.dtype == torch.float32
    y_ref, _ = selective_scan(x.half(), dt.half(), A, B.half(), C.half(), D)
    torch.testing.assert_close(y, y_ref)


# ---------------------------------------------------------------- corpus
def test_detokenize_rejoins_treebank_tokens():
    assert detokenize("Hello , world ( really ) : it 's 5 % off !".split()) == "Hello, world (really): it's 5% off!"
    assert detokenize(["I", "do", "n't", "know", "."]) == "I don't know."


def _write_fake_mirror(root):
    def jsonl(rel, recs):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("".join(json.dumps(r) + "\n" for r in recs))

    for split in ("train", "val"):
        jsonl(f"superglue/MultiRC/{split}.jsonl", [{"idx": 0, "passage": {
            "text": f"Passage of MultiRC {split}.", "questions": [{"question": f"Why {split}?", "answers": []}]}}])
        jsonl(f"superglue/RTE/{split}.jsonl", [{"premise": f"RTE premise {split}.", "hypothesis": "Hyp."}])
        jsonl(f"superglue/CB/{split}.jsonl", [{"premise": f"CB premise {split}.", "hypothesis": "Hyp."}])
        jsonl(f"superglue/WiC/{split}.jsonl", [{"sentence1": f"WiC one {split}.", "sentence2": "WiC two."}])
        jsonl(f"superglue/COPA/{split}.jsonl", [{"premise": f"COPA {split}.", "choice1": "A.", "choice2": "B."}])
        # WSC repeats a text once per candidate pair: the duplicate must go.
        jsonl(f"superglue/WSC/{split}.jsonl", [{"text": f"WSC text {split}."}, {"text": f"WSC text {split}."}])
    jsonl("superglue/BoolQ/val.jsonl", [{"passage": "SECRET BOOLQ PASSAGE", "question": "q", "label": True}])
    for rel in ("udpos/train-en.tsv", "udpos/dev-en.tsv", "udpos/test-en.tsv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("It\tPRON\n's\tAUX\nfine\tADJ\n.\tPUNCT\n\nOk\tINTJ\n\n")
    for rel in ("wikiann-panx/train-en.tsv", "wikiann-panx/dev-en.tsv"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"Paris\tB-LOC\n,\tO\n{rel[13:18]}\tO\n\n")
    (root / "tncc-title").mkdir()
    for name in ("train", "validation", "test"):
        (root / "tncc-title" / f"{name}.txt").write_text(f"Arts\tTIBETAN {name} title\nArts\tsecond {name}\n")


def test_corpus_uses_the_listed_sources_only_and_holds_out_whole_documents(tmp_path):
    _write_fake_mirror(tmp_path)
    corpus = build_corpus(seed=0, heldout_fraction=0.25, root=tmp_path, verify=False)
    train = bytes(corpus.train.tolist()).decode()
    held = bytes(corpus.heldout.tolist()).decode()
    text = train + "\n\n" + held
    assert "BOOLQ" not in text
    assert text.count("WSC text train.") == 1
    assert "It's fine." in text and "Paris, train" in text and "Why val?" in text
    assert "TIBETAN train title\nsecond train" in text
    # the evaluation sets of the Mamba table (PAN-X dev, TNCC validation/test) are not pre-training text
    assert "Paris, dev-e" not in text and "TIBETAN validation" not in text and "TIBETAN test" not in text
    docs_train, docs_held = set(train.split("\n\n")), set(held.split("\n\n"))
    assert docs_train and docs_held and not docs_train & docs_held
    # 12 SuperGLUE documents (one WSC duplicate per split dropped: 14 - 2) + UD-POS + PAN-X + TNCC train
    assert corpus.documents == 15 and corpus.heldout_documents == 4
    assert set(corpus.source_bytes) - {s for s in corpus.source_bytes if s.startswith("superglue")} == \
        {"udpos/train-en.tsv", "wikiann-panx/train-en.tsv", "tncc-title/train.txt"}
    assert not any("BoolQ" in src for src in corpus.source_bytes)
    assert {src.split("/")[1] for src in corpus.source_bytes if src.startswith("superglue")} == \
        {"MultiRC", "RTE", "WiC", "CB", "COPA", "WSC"}
    again = build_corpus(seed=0, heldout_fraction=0.25, root=tmp_path, verify=False)
    assert torch.equal(again.train, corpus.train) and torch.equal(again.heldout, corpus.heldout)


def test_windows():
    stream = torch.arange(50, dtype=torch.uint8)
    w = random_windows(stream, 6, 8, torch.Generator().manual_seed(0))
    assert w.shape == (6, 8) and w.dtype == torch.long
    assert torch.equal(w[:, 1:] - w[:, :-1], torch.ones(6, 7, dtype=torch.long))  # contiguous spans
    assert torch.equal(heldout_windows(stream, 8)[:, 0], torch.arange(0, 48, 8))
    assert torch.equal(heldout_windows(stream, 8, limit=2)[:, 0], torch.tensor([0, 40]))


def _word_ngrams(text, k):
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}


@pytest.mark.skipif(not os.path.isdir(os.path.join(os.environ.get("CPTPP_DATA_MIRROR", "/nonexistent"),
                                                   "text", "commonsense-llm-adapters")),
                    reason="CPTPP_DATA_MIRROR/text (SuperGLUE, tagging, commonsense sets) not available")
def test_mirror_corpus_shares_no_text_with_the_commonsense_sets():
    from cptpp.peft.multiple_choice import COMMONSENSE, load_commonsense
    from cptpp.peft.superglue import load_records

    docs = [text for _, text in corpus_documents()]
    data = "\n".join(docs)
    assert len(data.encode()) > 3_000_000
    for rec in load_records("superglue/BoolQ/val.jsonl")[:50]:  # == the commonsense BoolQ passages
        assert rec["passage"] not in data
    questions = [ex.instruction for task in COMMONSENSE for ex in load_commonsense(task)]
    for k, allowed in ((12, 0), (8, 4)):  # 8 words: 4 documents share a stock phrase ("save you a lot of time")
        eval_grams = set().union(*(_word_ngrams(q, k) for q in questions))
        assert sum(bool(_word_ngrams(doc, k) & eval_grams) for doc in docs) <= allowed, k


# ---------------------------------------------------------------- pre-training
TEXT = ("The cat sat on the mat. A dog ran in the park. Birds sing in the morning; the sun is warm.\n" * 12)


def tiny_corpus():
    data = torch.frombuffer(bytearray(TEXT.encode()), dtype=torch.uint8)
    return Corpus(train=data[:900].clone(), heldout=data[900:].clone(), documents=2, heldout_documents=1,
                  source_bytes={"synthetic": data.numel()})


def tiny_cfg(**kw):
    base = dict(hidden=16, layers=2, state=4, max_len=32, batch_size=4, steps=4, minutes=0, eval_every=2,
                eval_windows=2, warmup_steps=1, cooldown=0.0, lr=3e-3)
    return PretrainConfig(**(base | kw))


def test_lr_schedule_warms_up_holds_and_cools_down():
    cfg = PretrainConfig(lr=1.0, warmup_steps=4, cooldown=0.5, steps=100, minutes=0)
    assert [lr_at(cfg, s, 0.0) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_at(cfg, 10, 0.5) == 1.0 and lr_at(cfg, 10, 0.75) == pytest.approx(0.5)
    assert lr_at(cfg, 10, 0.99) == pytest.approx(0.02)


def test_pretrain_saves_a_folder_that_load_base_reproduces(tmp_path):
    model, info = pretrain(tiny_cfg(), tmp_path, progress=False, corpus=tiny_corpus())
    assert info["steps"] == 4 and info["bytes_seen"] == 4 * 4 * 32
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["heldout_loss"] < 5.55  # below the uniform 257-way guess, log(257) = 5.55
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and log[-1]["final"]
    base = load_base(str(tmp_path))
    assert isinstance(base.tokenizer, ByteTokenizer) and base.pad_id == ByteTokenizer.pad_token_id
    assert f"{info['parameters']:,} params" in base.description and "held-out loss" in base.description
    ids = torch.tensor([list(b"The dog sat in the sun.")])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(base.model(ids).logits, model(ids).logits, rtol=1e-5, atol=1e-5)


def test_resume_continues_to_the_same_model_as_an_uninterrupted_run(tmp_path):
    straight, _ = pretrain(tiny_cfg(steps=4), tmp_path / "a", progress=False, corpus=tiny_corpus())
    pretrain(tiny_cfg(steps=2), tmp_path / "b", progress=False, corpus=tiny_corpus())
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(tiny_cfg(steps=4), tmp_path / "b", progress=False, corpus=tiny_corpus())
    with pytest.raises(ConfigError, match="hidden"):
        pretrain(tiny_cfg(steps=4, hidden=8), tmp_path / "b", resume=True, progress=False, corpus=tiny_corpus())
    resumed, info = pretrain(tiny_cfg(steps=4), tmp_path / "b", resume=True, progress=False, corpus=tiny_corpus())
    assert info["steps"] == 4 and info["bytes_seen"] == 4 * 4 * 32
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=k)
    assert [json.loads(line)["step"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()] == [2, 4]


def test_load_base_names_an_unfinished_run(tmp_path):
    (tmp_path / "pretrain_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not finished"):
        load_base(str(tmp_path))
    assert not (tmp_path / MARKER).exists()


def test_config_errors():
    with pytest.raises(ConfigError, match="unbounded"):
        PretrainConfig(minutes=0, steps=0)
    with pytest.raises(ConfigError, match="cooldown"):
        PretrainConfig(cooldown=1.5)
