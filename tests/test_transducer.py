"""Transducer Tuning: GVE + ABFL on tiny random T5 / Llama backbones (nothing is downloaded)."""
import copy
import re
import zlib

import pytest
import torch

pytest.importorskip("torch_geometric")
pytest.importorskip("tree_sitter_java")
from tokenizers import Regex, Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, T5Config,  # noqa: E402
                          T5ForConditionalGeneration)

from cptpp.code.tasks import CodeGenTask, CodePair, CodeTaskConfig, attach_graphs, collate, encode_pairs  # noqa: E402
from cptpp.code.transducer import (AsReleasedFusion, LabelEmbeddings, Transducer, TransducerConfig,  # noqa: E402
                                   TransducerLM, batch_graphs, code_graph, expected_parameters)
from cptpp.config import ConfigError  # noqa: E402
from cptpp.train.params import count_parameters  # noqa: E402

LABEL_DIM = 16
SOURCES = [
    "int add(int a, int b) { return a + b; }",
    "void f() { int x = 1; if (x > 0) { x = x - 1; } g(x); while (x < 3) { x++; } }",
    "int g() { return 1; }",
]
TARGETS = ["int Add(int a, int b) { return a + b; }", "void F() { int x = 1; }", "int G() { return 1; }"]
SPLIT = r"\w+|[^\w\s]|\n| "


def tiny_tokenizer():
    words = set()
    for s in SOURCES + TARGETS + ["\n// ->\n"]:
        words.update(re.findall(SPLIT, s))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_backbone(arch: str, vocab: int):
    torch.manual_seed(0)
    if arch == "llama":
        cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, eos_token_id=1, bos_token_id=1)
        return LlamaForCausalLM(cfg).eval()
    cfg = T5Config(vocab_size=vocab, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0)
    return T5ForConditionalGeneration(cfg).eval()


def hashed_encoder(calls=None):
    """A deterministic stand-in for the sentence encoder: a random vector seeded by the label text."""
    def encode(texts):
        if calls is not None:
            calls.extend(texts)
        return torch.stack([torch.randn(LABEL_DIM, generator=torch.Generator().manual_seed(zlib.crc32(t.encode())))
                            for t in texts])
    return encode


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def make_batch(lm, tok, labels, train=True, sources=SOURCES, targets=TARGETS):
    cfg = CodeTaskConfig(max_source_tokens=80, max_target_tokens=40)
    examples = encode_pairs([CodePair(s, t) for s, t in zip(sources, targets)], tok, cfg, lm.is_encoder_decoder)
    examples.sort(key=lambda e: sources.index(e.source))
    attach_graphs(examples, "java", labels)
    return examples, collate(examples, 0, lm.is_encoder_decoder, train, batch_graphs([e.graph for e in examples],
                                                                                     labels.table()))


def set_gate(lm, value=0.5):
    with torch.no_grad():
        lm.module.fusion.gate.fill_(value)


@pytest.mark.parametrize("arch", ["llama", "t5"])
@pytest.mark.parametrize("fusion", ["cross-attention", "as-released"])
def test_only_transducer_trains_and_count_matches_formula(arch, fusion, tok):
    backbone = tiny_backbone(arch, len(tok))
    cfg = TransducerConfig(fusion=fusion, label_dim=LABEL_DIM)
    lm = TransducerLM(backbone, cfg)
    assert not any(p.requires_grad for p in backbone.parameters())
    assert count_parameters(lm.module).trainable == expected_parameters(cfg, 16)["total"]
    # trainable = exactly the Transducer's parameters, nothing of the backbone
    assert {id(p) for p in lm.module.parameters()}.isdisjoint({id(p) for p in backbone.parameters()})


def test_formula_at_paper_scale():
    """d_model 768 (CodeT5+ 220M), 1024-d labels: the as-released layout is 30,784 (paper: 30,728)."""
    cfg = TransducerConfig(fusion="as-released", label_dim=1024)
    assert count_parameters(Transducer(768, cfg)).trainable == expected_parameters(cfg, 768)["total"] == 30_784
    # GVE part by hand: RMSNorm 1024 + Linear(1024,8) 8200 + GATv2(8,8) 160 + Linear(8,128) 1152
    assert expected_parameters(cfg, 768)["gve"] == 1024 + 8200 + 160 + 1152


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_corrected_fusion_leaves_backbone_unchanged_at_init(arch, tok):
    labels = LabelEmbeddings(hashed_encoder())
    backbone = tiny_backbone(arch, len(tok))
    lm = TransducerLM(backbone, TransducerConfig(label_dim=LABEL_DIM))
    _, batch = make_batch(lm, tok, labels)
    kw = {k: batch[k] for k in ("labels", "decoder_attention_mask") if k in batch}
    plain = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)
    fused = lm(batch)
    torch.testing.assert_close(fused.logits, plain.logits, rtol=0, atol=0)
    # ...and it is not the identity once the gate opens (the graph then steers the embeddings)
    set_gate(lm)
    assert (lm(batch).logits - plain.logits).abs().max() > 1e-4


def test_as_released_attention_is_uniform_and_ignores_the_graph(tok):
    labels = LabelEmbeddings(hashed_encoder())
    lm = TransducerLM(tiny_backbone("llama", len(tok)), TransducerConfig(fusion="as-released", label_dim=LABEL_DIM))
    _, batch = make_batch(lm, tok, labels)
    fusion: AsReleasedFusion = lm.module.fusion
    emb = lm.backbone.get_input_embeddings()(batch["input_ids"])
    mask = batch["fuse_mask"] & batch["attention_mask"].bool()
    _, _, graph_vec = lm.module.graph_states(batch["graph"])
    weights, _ = fusion.attention(emb, mask, graph_vec)
    expected = mask.unsqueeze(1).float() / mask.sum(1).view(-1, 1, 1)
    torch.testing.assert_close(weights, expected.expand_as(weights))
    # another example's graph gives the same fused embeddings: the graph cannot reach the output
    shuffled = batch_graphs([e.graph for e in make_batch(lm, tok, labels)[0]][::-1], labels.table())
    torch.testing.assert_close(lm.module(emb, mask, shuffled), lm.module(emb, mask, batch["graph"]))
    # so the GVE gets (numerically) no gradient
    lm(batch).loss.backward()
    gve_grad = max(p.grad.abs().max() for p in lm.module.gve.parameters() if p.grad is not None)
    assert gve_grad < 1e-6


@pytest.mark.parametrize("arch", ["llama", "t5"])
def test_gradients_reach_gve(arch, tok):
    labels = LabelEmbeddings(hashed_encoder())
    lm = TransducerLM(tiny_backbone(arch, len(tok)), TransducerConfig(label_dim=LABEL_DIM))
    _, batch = make_batch(lm, tok, labels)
    lm(batch).loss.backward()
    # at init only the gate has a gradient (everything else is multiplied by gate = 0) ...
    assert lm.module.fusion.gate.grad.abs().max() > 0
    opt = torch.optim.AdamW(lm.module.parameters(), lr=1e-2)
    opt.step()
    opt.zero_grad()
    # ... after one step the gradient flows through the fusion into every GVE layer
    lm(batch).loss.backward()
    for name, p in lm.module.gve.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name
    assert all(p.grad is None for p in lm.backbone.parameters())


@pytest.mark.parametrize("fusion", ["cross-attention", "as-released"])
def test_batched_graphs_match_one_by_one(fusion, tok):
    labels = LabelEmbeddings(hashed_encoder())
    lm = TransducerLM(tiny_backbone("llama", len(tok)), TransducerConfig(fusion=fusion, label_dim=LABEL_DIM))
    if fusion == "cross-attention":
        set_gate(lm)
    examples, batch = make_batch(lm, tok, labels)
    sizes = [e.graph.num_nodes for e in examples]
    assert len(set(sizes)) == len(sizes)  # graphs of different sizes
    table = labels.table()
    together = lm(batch).logits
    for i, e in enumerate(examples):
        alone = collate([e], 0, False, True, batch_graphs([e.graph], table))
        n = alone["input_ids"].shape[1]
        torch.testing.assert_close(together[i, :n], lm(alone).logits[0], rtol=1e-5, atol=1e-5)


def test_batched_generation_matches_one_by_one(tok):
    """Left-padded batched greedy decoding from fused embeddings = each prompt alone."""
    labels = LabelEmbeddings(hashed_encoder())
    lm = TransducerLM(tiny_backbone("llama", len(tok)), TransducerConfig(label_dim=LABEL_DIM))
    set_gate(lm, 2.0)
    examples, batch = make_batch(lm, tok, labels, train=False)
    together = lm.generate(batch, max_new_tokens=5, pad_token_id=0, eos_token_id=None)
    table = labels.table()
    for i, e in enumerate(examples):
        alone = lm.generate(collate([e], 0, False, False, batch_graphs([e.graph], table)), max_new_tokens=5,
                            pad_token_id=0, eos_token_id=None)
        assert together[i].tolist() == alone[0].tolist()


def test_code_graph_undirected_and_label_rows():
    labels = LabelEmbeddings(hashed_encoder())
    g = code_graph(SOURCES[0], "java", labels, max_nodes=50)
    edges = set(map(tuple, g.edge_index.t().tolist()))
    assert all((b, a) in edges for a, b in edges)
    assert g.label_ids.shape == (g.num_nodes,) and int(g.label_ids.max()) < len(labels.index)
    small = code_graph(SOURCES[1], "java", labels, max_nodes=10)
    assert small.num_nodes == 10


def _old_code_graph(source, language, labels, max_nodes, undirected):
    """What code_graph built before it used to_pyg_data + to_undirected: a hand-made symmetric edge set."""
    from torch_geometric.data import Data

    from graph_tools.cpg import build_cpg

    g = build_cpg(source, language, granularity="method", max_nodes=max_nodes, normalize_labels=True)
    edges = torch.from_numpy(g.edge_index.astype("int64")).reshape(2, -1)
    if undirected and edges.numel():
        edges = torch.unique(torch.cat([edges, edges.flip(0)], 1), dim=1)
    return Data(label_ids=labels.ids([str(x) for x in g.node_label]), edge_index=edges, num_nodes=g.num_nodes)


@pytest.mark.parametrize("undirected", [True, False])
def test_code_graph_batch_equals_the_hand_built_one(undirected):
    labels = LabelEmbeddings(hashed_encoder())
    programs = [(s, "java", 50) for s in SOURCES] + [(SOURCES[1], "java", 10), ("int h() { }", "java", 50),
                                                      ("def f(a):\n    b = a + 1\n    return b\n", "python", 50)]
    new = batch_graphs([code_graph(s, lang, labels, n, undirected) for s, lang, n in programs], labels.table())
    old = batch_graphs([_old_code_graph(s, lang, labels, n, undirected) for s, lang, n in programs], labels.table())
    assert new.num_graphs == old.num_graphs == len(programs)
    for key in ("edge_index", "label_ids", "x", "batch", "ptr"):
        assert torch.equal(new[key], old[key]), key
    assert new.edge_index.shape[1] > 0


def test_label_embeddings_encode_each_label_once_and_cache_on_disk(tmp_path):
    calls = []
    path = tmp_path / "labels.pt"
    labels = LabelEmbeddings(hashed_encoder(calls), path)
    ids = labels.ids(["a", "b", "a"])
    assert ids.tolist() == [0, 1, 0]
    table = labels.table()
    labels.ids(["b", "c"])
    table2 = labels.table()
    assert calls == ["a", "b", "c"]
    torch.testing.assert_close(table2[:2], table)
    again = LabelEmbeddings(hashed_encoder(calls2 := []), path)
    again.ids(["c", "a"])
    torch.testing.assert_close(again.table(), table2[[2, 0]])
    assert calls2 == []


def test_hf_text_encoder_pools_over_real_tokens_only(tmp_path):
    from transformers import BertConfig, BertModel

    from cptpp.code.transducer import hf_text_encoder

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "get": 4, "value": 5, "x": 6}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(tmp_path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16)).save_pretrained(tmp_path)
    encode = hf_text_encoder(tmp_path)
    both = encode(["x", "get value x x"])
    torch.testing.assert_close(both[0], encode(["x"])[0], rtol=1e-5, atol=1e-6)  # padding does not leak in
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(2))


def test_fit_trains_only_the_transducer(tok):
    from cptpp.train import TrainConfig, fit

    labels = LabelEmbeddings(hashed_encoder())
    backbone = tiny_backbone("llama", len(tok))
    before = copy.deepcopy(backbone.state_dict())
    lm = TransducerLM(backbone, TransducerConfig(label_dim=LABEL_DIM))
    cfg = CodeTaskConfig(max_source_tokens=80, max_target_tokens=40, batch_size=2, separator="\n// ->\n")
    pairs = [CodePair(s, t) for s, t in zip(SOURCES, TARGETS)]
    data = {s: encode_pairs(pairs, tok, cfg, False) for s in ("train", "valid", "test")}
    for examples in data.values():
        attach_graphs(examples, "java", labels)
    task = CodeGenTask(lm, tok, data, cfg, labels.table())
    gate0 = lm.module.fusion.gate.detach().clone()
    res = fit(task, TrainConfig(epochs=2, lr=1e-2, optimizer="adamw", metric="token_acc", progress=False))
    assert {"bleu", "em", "sbleu", "token_acc"} <= set(res["test"])
    assert not torch.equal(lm.module.fusion.gate, gate0)
    for k, v in backbone.state_dict().items():
        assert torch.equal(v, before[k]), k


# --------------------------------------------------------------------------- graph ablation (cptpp.code.tune)

def test_shuffle_ablation_gives_every_example_another_examples_graph(tok):
    from cptpp.code.tune import ablate_graphs

    labels = LabelEmbeddings(hashed_encoder())
    cfg = CodeTaskConfig(max_source_tokens=80, max_target_tokens=40)
    pairs = [CodePair(s, t) for s, t in zip(SOURCES, TARGETS)]
    data = {s: encode_pairs(pairs, tok, cfg, False) for s in ("train", "test")}
    for examples in data.values():
        attach_graphs(examples, "java", labels)
    own = {s: [e.graph for e in v] for s, v in data.items()}
    table = labels.table()
    assert ablate_graphs(data, table, "shuffle", seed=3) is table
    for split, examples in data.items():
        now = [e.graph for e in examples]
        assert all(g is not o for g, o in zip(now, own[split]))  # a derangement: nobody keeps its own graph
        assert sorted(map(id, now)) == sorted(map(id, own[split]))  # the same graphs, moved
    assert torch.equal(ablate_graphs(data, table, "zeros"), torch.zeros_like(table))
    assert ablate_graphs(data, table, "none") is table
    with pytest.raises(ConfigError, match="shuffle"):
        ablate_graphs(data, table, "random")


def test_zeroed_node_vectors_make_the_fused_input_independent_of_the_graph(tok):
    from cptpp.code.tune import ablate_graphs

    labels = LabelEmbeddings(hashed_encoder())
    lm = TransducerLM(tiny_backbone("llama", len(tok)), TransducerConfig(label_dim=LABEL_DIM))
    set_gate(lm)
    examples, batch = make_batch(lm, tok, labels)
    table = labels.table()
    swapped = [examples[1].graph, examples[2].graph, examples[0].graph]
    embeds = {}
    for name, t in (("real", table), ("zeros", ablate_graphs({}, table, "zeros"))):
        for order, graphs in (("own", [e.graph for e in examples]), ("swapped", swapped)):
            batch["graph"] = batch_graphs(graphs, t)
            with torch.no_grad():
                embeds[name, order] = lm.embeds(batch)
    assert (embeds["real", "own"] - embeds["real", "swapped"]).abs().max() > 1e-3  # the graph matters...
    # ...zeroed, it does not (up to the rounding of a mean over a different number of equal node states)
    torch.testing.assert_close(embeds["zeros", "own"], embeds["zeros", "swapped"], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- zero-shot chat prompt

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


def test_instruction_prompt_wraps_the_source_and_fuses_only_the_source(tok):
    from cptpp.code.tasks import SOURCE_SLOT, TASKS, chat_prompt_parts

    chat = copy.deepcopy(tok)
    chat.chat_template = CHAT_TEMPLATE
    cfg = CodeTaskConfig(max_source_tokens=80, max_target_tokens=40, instruction=True)
    examples = encode_pairs([CodePair(s, t) for s, t in zip(SOURCES, TARGETS)], chat, cfg, False)
    before, after = chat_prompt_parts(chat, TASKS["translation"].instruction)
    assert before and after and SOURCE_SLOT not in chat.decode(before + after)
    for e in examples:
        src = chat(e.source, add_special_tokens=False)["input_ids"]
        assert e.source_start == len(before) and e.n_source == len(src)
        assert e.prompt == before + src + after
    examples.sort(key=lambda e: len(e.prompt))
    for train in (True, False):
        batch = collate(examples, 0, False, train)
        for row, e in enumerate(examples):
            mask = batch["fuse_mask"][row]
            positions = mask.nonzero().flatten().tolist()
            offset = 0 if train else batch["input_ids"].shape[1] - len(e.prompt)  # generation pads on the left
            assert positions == list(range(offset + e.source_start, offset + e.source_start + e.n_source))
            assert batch["input_ids"][row, positions].tolist() == e.prompt[e.source_start:e.source_start + e.n_source]


def test_instruction_needs_a_chat_template_and_no_separator(tok):
    cfg = CodeTaskConfig(instruction=True)
    with pytest.raises(ConfigError, match="chat_template"):
        encode_pairs([CodePair(SOURCES[0], TARGETS[0])], tok, cfg, False)
    with pytest.raises(ConfigError, match="separator"):
        CodeTaskConfig(instruction=True, separator="\n")


@pytest.mark.parametrize("text, code, expected", [
    ("```csharp\npublic int F()\n{\n    return 1;\n}\n```\nThis method returns 1.", True, "public int F() { return 1; }"),
    ("```java\nassertTrue(x);", True, "assertTrue(x);"),  # cut off before the closing fence
    ("  int G() { return 1; }\n", True, "int G() { return 1; }"),  # no fence: the text
    ("Returns the sum.\nIt adds a and b.", False, "Returns the sum."),
    ("", True, ""),
])
def test_answer_line_reads_a_chat_answer_as_one_line(text, code, expected):
    from cptpp.code.tasks import answer_line

    assert answer_line(text, code) == expected
