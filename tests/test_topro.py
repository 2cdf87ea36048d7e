import pytest
import torch

from cptpp.config import ConfigError
from cptpp.peft.prompt import SoftPrompt
from cptpp.peft.tagging_data import TaggedSentence, TaggingSplits
from cptpp.peft.token_classification import TokenClassifier, TokenTask, encode_words, pair_layout
from cptpp.peft.topro import (ToProConfig, ToProTagger, ToProTask, ToProTemplate, collate_units, decode_tags,
                              decoder_prefix_for, pack_units)
from cptpp.train.params import count_parameters
from cptpp.train import TrainConfig, fit

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "un", "##believ", "##able",
         "paris", "berlin", "is", "a", "kind", "of", ":", ".", "named", "entity", "part", "-", "speech",
         "location", "organisation", "person", "place", "body", "name", "other", "x", "<extra_id_0>"]


def tiny_tokenizer(mask: bool = True):
    """A BERT-style WordPiece tokenizer over WORDS ("unbelievable" -> un ##believ ##able)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    kw = {"mask_token": "[MASK]"} if mask else {"additional_special_tokens": ["<extra_id_0>"]}
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", **kw)


def bert_config():
    return transformers.BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=128, hidden_dropout_prob=0.0,
                                   attention_probs_dropout_prob=0.0)


SENT = TaggedSentence(("Paris", "unbelievable", "cat", "sat"), ("B-LOC", "O", "B-PER", "I-PER"))
SENT2 = TaggedSentence(("the", "dog"), ("O", "B-ORG"))


def test_one_mask_per_word_and_the_word_whole_in_its_prompt():
    tok = tiny_tokenizer()
    tpl = ToProTemplate(tok, ToProConfig(task="ner"))
    units = tpl.sentence_units(SENT.words, 0, SENT.tags)
    assert len(units) == 4
    pieces = {"Paris": [12], "unbelievable": [9, 10, 11], "cat": [6], "sat": [8]}
    sentence_ids = [2, 12, 9, 10, 11, 6, 8, 3]
    for j, u in enumerate(units):
        assert u.input_ids.count(tok.mask_token_id) == 1 and u.input_ids[u.mask_pos] == tok.mask_token_id
        assert u.input_ids[:8] == sentence_ids and u.input_ids[-1] == 3
        # "The named entity of <word> is a kind of: [MASK]."
        prompt = u.input_ids[8:-1]
        assert prompt[:4] == [5, 20, 21, 17] and prompt[4:4 + len(pieces[SENT.words[j]])] == pieces[SENT.words[j]]
        assert u.token_type_ids == [0] * 8 + [1] * (len(u.input_ids) - 8)
        assert (u.sentence, u.word, u.label) == (0, j, tpl.tag_index[SENT.tags[j]])
    # a sentence too long for max_length is cut, but the word's own prompt survives
    short = ToProTemplate(tok, ToProConfig(task="ner", max_length=18))
    u = short.sentence_units(SENT.words)[1]
    assert len(u.input_ids) == 18 and u.input_ids[u.mask_pos] == tok.mask_token_id
    assert u.input_ids[:3] == [2, 12, 3] and u.input_ids[7:10] == [9, 10, 11]  # sentence cut to 1 token


def test_pair_layout_matches_the_tokenizer():
    tok = tiny_tokenizer()
    lay = pair_layout(tok)
    assert (lay.prefix, lay.middle, lay.suffix) == ((2,), (3,), (3,))
    ids, _ = lay.join([6, 8], [7])
    assert ids == tok("cat sat", "dog")["input_ids"]


def test_pack_units_keeps_sentences_together_and_respects_budget():
    tpl = ToProTemplate(tiny_tokenizer(), ToProConfig(task="ner"))
    groups = tpl.encode([SENT, SENT2, SENT])
    length = max(len(u.input_ids) for g in groups for u in g)
    batches = pack_units(groups, max_tokens=length * 6)
    flat = [(u.sentence, u.word) for b in batches for u in b]
    assert sorted(flat) == sorted((u.sentence, u.word) for g in groups for u in g)
    assert all(len(b) * max(len(u.input_ids) for u in b) <= length * 6 for b in batches)
    assert {u.sentence for u in batches[0]} == {0, 1}  # 4 + 2 copies fit one pass
    tiny = pack_units(groups, max_tokens=length * 3)  # a 4-word sentence must be split
    assert all(len(b) <= 3 for b in tiny) and len([u for b in tiny for u in b]) == 10


def test_decode_maps_every_copy_back_to_its_word_in_any_batch_order():
    tpl = ToProTemplate(tiny_tokenizer(), ToProConfig(task="ner"))
    groups = tpl.encode([SENT, SENT2])
    batches = [collate_units(b, 0) for b in pack_units(groups[::-1], max_tokens=40)][::-1]
    results = [(b, torch.nn.functional.one_hot(b.labels, 7).float()) for b in batches]
    assert decode_tags(results, [4, 2], tpl.cfg.tags) == [list(SENT.tags), list(SENT2.tags)]
    with pytest.raises(ConfigError, match="got no prediction"):
        decode_tags(results[:1], [4, 2], tpl.cfg.tags)


class WordOracle(torch.nn.Module):
    """Reads the word's first sub-token in the prompt (right after "the named entity of") and answers
    a fixed tag for it: predict() must return that tag at that word's place."""

    def __init__(self, answer: dict[int, int], prompt_start: int):
        super().__init__()
        self.answer, self.start = answer, prompt_start
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        first = batch.input_ids[torch.arange(len(batch.mask_pos)), batch.mask_pos - self.offset(batch)]
        return torch.nn.functional.one_hot(torch.tensor([self.answer[int(t)] for t in first]), 7).float() + self.w

    def offset(self, batch):  # mask_pos - (word start) = len(word pieces) + len(" is a kind of :")
        out = []
        for ids, m in zip(batch.input_ids.tolist(), batch.mask_pos.tolist()):
            seps = [i for i, t in enumerate(ids) if t == 3]
            out.append(m - (seps[0] + 1 + self.start))
        return torch.tensor(out)


def test_predict_end_to_end_for_multi_subword_words():
    tok = tiny_tokenizer()
    cfg = ToProConfig(task="ner", max_tokens_per_batch=50)
    tpl = ToProTemplate(tok, cfg)
    idx = tpl.tag_index
    # "unbelievable" (3 pieces) -> B-ORG; its neighbours get different tags
    answer = {12: idx["B-LOC"], 9: idx["B-ORG"], 6: idx["I-ORG"], 8: idx["O"], 5: idx["B-PER"], 7: idx["I-LOC"]}
    splits = TaggingSplits("ner", [SENT], [SENT, SENT2], [SENT2])
    task = ToProTask(WordOracle(answer, 4), tpl, splits)
    pred = task.predict([SENT, SENT2])
    assert pred == [["B-LOC", "B-ORG", "I-ORG", "O"], ["B-PER", "I-LOC"]]


def test_verbalizer_equals_mlm_logits_at_label_words():
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    mlm = transformers.BertForMaskedLM(bert_config()).eval()
    tpl = ToProTemplate(tok, ToProConfig(task="ner"))
    tagger = ToProTagger(mlm, tpl.label_ids).eval()
    batch = collate_units([u for g in tpl.encode([SENT, SENT2]) for u in g], 0)
    with torch.no_grad():
        full = mlm(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                   token_type_ids=batch.token_type_ids).logits
        want = full[torch.arange(6), batch.mask_pos][:, tpl.label_ids]
        got = tagger(batch)
    assert got.shape == (6, 7)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # an encoder without an MLM head: output rows start as the label words' input embeddings
    enc = transformers.BertModel(bert_config())
    tagger = ToProTagger(enc, tpl.label_ids)
    torch.testing.assert_close(tagger.head.label_embeddings, enc.get_input_embeddings().weight[tpl.label_ids])
    assert count_parameters(tagger).trainable == sum(p.numel() for p in enc.parameters()) + sum(
        p.numel() for p in tagger.head.parameters())


def test_seq2seq_variant_scores_the_generated_label_word():
    tok = tiny_tokenizer(mask=False)
    cfg = transformers.T5Config(vocab_size=len(WORDS), d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                                dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    t5 = transformers.T5ForConditionalGeneration(cfg).eval()
    tpl = ToProTemplate(tok, ToProConfig(task="ner"))
    sentinel = WORDS.index("<extra_id_0>")
    assert tpl.mask_id == sentinel
    prefix = decoder_prefix_for(t5, tok)
    assert prefix == [0, sentinel]
    tagger = ToProTagger(t5, tpl.label_ids, prefix).eval()
    batch = collate_units(tpl.encode([SENT])[0], 0)
    with torch.no_grad():
        got = tagger(batch)
        dec = torch.tensor([prefix] * 4)
        want = t5(input_ids=batch.input_ids, attention_mask=batch.attention_mask, decoder_input_ids=dec).logits
    torch.testing.assert_close(got, want[:, -1, tpl.label_ids])


WORD_TAGS = {"paris": "B-LOC", "berlin": "B-LOC", "cat": "B-PER", "dog": "B-ORG", "the": "O", "sat": "O"}


def word_tagged_sentences(n: int, length: int | None = None) -> list[TaggedSentence]:
    """``n`` seeded random sentences over WORD_TAGS, whose tags follow from their words: ``length``
    words each, or 2-5 at random."""
    gen = torch.Generator().manual_seed(0)
    vocab = list(WORD_TAGS)
    sents = []
    for _ in range(n):
        k = length or int(torch.randint(2, 6, (1,), generator=gen))
        ws = [vocab[i] for i in torch.randint(len(vocab), (k,), generator=gen)]
        sents.append(TaggedSentence(tuple(ws), tuple(WORD_TAGS[w] for w in ws)))
    return sents


def test_topro_training_learns_word_determined_tags():
    tok = tiny_tokenizer()
    sents = word_tagged_sentences(24, length=4)
    splits = TaggingSplits("ner", sents[:16], sents[16:], sents[16:])
    torch.manual_seed(0)
    tpl = ToProTemplate(tok, ToProConfig(task="ner", train_words_per_sentence=3, max_tokens_per_batch=200))
    task = ToProTask(ToProTagger(transformers.BertModel(bert_config()), tpl.label_ids), tpl, splits)
    before = task.evaluate("valid")["accuracy"]
    res = fit(task, TrainConfig(epochs=10, lr=1e-2, metric="accuracy", progress=False, patience=0, seed=2020))
    assert res["valid"]["accuracy"] >= 0.9 > before


def test_token_classifier_first_subword_alignment_and_prompt_tuning():
    tok = tiny_tokenizer()
    items = encode_words(tok, [SENT], {t: i for i, t in enumerate(ToProConfig("ner").tags)}, 64)
    ids, first, _ = items[0]
    assert ids == [2, 12, 9, 10, 11, 6, 8, 3] and first == [1, 2, 5, 6]
    cut = encode_words(tok, [SENT], {t: i for i, t in enumerate(ToProConfig("ner").tags)}, 5)[0]
    assert cut[0] == [2, 12, 3] and cut[1] == [1, 0, 0, 0]  # words past the budget fall back to position 0
    torch.manual_seed(0)
    enc = transformers.BertModel(bert_config())
    prompt = SoftPrompt(3, 16, torch.randn(3, 16))
    model = TokenClassifier(enc, 7, prompt=prompt, train_backbone=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"prompt.weight", "head.weight", "head.bias"}
    splits = TaggingSplits("ner", [SENT, SENT2], [SENT2], [SENT2])
    task = TokenTask(model, tok, splits, batch_size=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = fit(task, TrainConfig(epochs=1, lr=1e-2, metric="f1", progress=False))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable and set(res["test"]) == {"accuracy", "precision", "recall", "f1"}


def test_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"\{mask\} exactly once"):
        ToProConfig(template="{word} is")
    with pytest.raises(ConfigError, match="missing"):
        ToProConfig(task="ner", label_words={"O": "other"})
    with pytest.raises(ConfigError, match="task='chunk'"):
        ToProConfig(task="chunk")
    bad = {t: "other" for t in ToProConfig("ner").tags}
    with pytest.raises(ConfigError, match="share a first token"):
        ToProTemplate(tiny_tokenizer(), ToProConfig(task="ner", label_words=bad))
