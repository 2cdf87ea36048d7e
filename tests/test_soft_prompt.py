import pytest
import torch

from cptpp.config import ConfigError
from cptpp.peft.architecture import detect_architecture
from cptpp.peft.prompt import PromptClassifier, SoftPrompt, SoftPromptConfig, prepend_prompt, vocab_init
from cptpp.train.params import count_parameters

transformers = pytest.importorskip("transformers")
from tiny_models import tiny_bert, tiny_gpt2, tiny_llama, tiny_t5  # noqa: E402


def prompt_of_tokens(model, token_ids):
    """A soft prompt equal to the embeddings of real tokens: it must act exactly like those tokens."""
    emb = model.get_input_embeddings().weight.detach()
    return SoftPrompt(len(token_ids), emb.shape[1], emb[token_ids])


PROMPT_IDS = [7, 3, 11]
IDS = torch.tensor([[5, 9, 14, 2, 8], [4, 6, 21, 0, 0]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
LABEL_IDS = [12, 13, 19]


def test_prepend_prompt_shapes_values_and_mask():
    prompt = torch.randn(3, 4)
    embeds = torch.randn(2, 5, 4)
    out, mask = prepend_prompt(prompt, embeds, MASK)
    assert out.shape == (2, 8, 4) and mask.shape == (2, 8)
    assert torch.equal(out[1, :3], prompt) and torch.equal(out[:, 3:], embeds)
    assert torch.equal(mask[:, :3], torch.ones(2, 3, dtype=MASK.dtype)) and torch.equal(mask[:, 3:], MASK)
    per_example = torch.randn(2, 3, 4)
    out, _ = prepend_prompt(per_example, embeds)
    assert torch.equal(out[:, :3], per_example)
    with pytest.raises(ConfigError, match="hidden size"):
        prepend_prompt(torch.randn(3, 5), embeds)


def test_encoder_prompt_equals_prepending_real_tokens():
    bert = tiny_bert()
    model = PromptClassifier(bert, 3, prompt_of_tokens(bert, PROMPT_IDS))
    logits = model(IDS, MASK)
    full_ids = torch.cat([torch.tensor([PROMPT_IDS] * 2), IDS], 1)
    full_mask = torch.cat([torch.ones(2, 3, dtype=torch.long), MASK], 1)
    hidden = bert(input_ids=full_ids, attention_mask=full_mask).last_hidden_state[:, 3:]
    m = MASK.unsqueeze(-1).float()
    ref = model.head((hidden * m).sum(1) / m.sum(1))
    assert torch.allclose(logits, ref, atol=1e-5)


def test_decoder_prompt_equals_prepending_real_tokens_and_ignores_padding():
    llama = tiny_llama()
    model = PromptClassifier(llama, 3, prompt_of_tokens(llama, PROMPT_IDS), label_token_ids=LABEL_IDS)
    assert model.architecture == "decoder"
    logits = model(IDS, MASK)
    for row, length in ((0, 5), (1, 3)):
        ids = torch.tensor([PROMPT_IDS + IDS[row, :length].tolist()])
        ref = llama(input_ids=ids).logits[0, -1, LABEL_IDS]
        assert torch.allclose(logits[row], ref, atol=1e-5)


def test_encoder_decoder_prompt_equals_prepending_real_tokens():
    t5 = tiny_t5()
    model = PromptClassifier(t5, 3, prompt_of_tokens(t5, PROMPT_IDS), label_token_ids=LABEL_IDS)
    assert model.architecture == "encoder-decoder"
    full_ids = torch.cat([torch.tensor([PROMPT_IDS] * 2), IDS], 1)
    full_mask = torch.cat([torch.ones(2, 3, dtype=torch.long), MASK], 1)
    ref = t5(input_ids=full_ids, attention_mask=full_mask, decoder_input_ids=torch.zeros(2, 1, dtype=torch.long))
    assert torch.allclose(model(IDS, MASK), ref.logits[:, 0, LABEL_IDS], atol=1e-5)


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama, tiny_t5])
def test_prompt_tuning_trains_only_the_prompt_and_head(make):
    backbone = make()
    arch = detect_architecture(backbone)
    prompt = SoftPrompt.from_config(SoftPromptConfig(num_tokens=4), backbone.get_input_embeddings().weight)
    model = PromptClassifier(backbone, 3, prompt, None if arch == "encoder" else LABEL_IDS)
    torch.nn.functional.cross_entropy(model(IDS, MASK), torch.tensor([0, 2])).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {"prompt.weight"} | ({"head.weight", "head.bias"} if arch == "encoder" else set())
    assert trainable == expected
    assert prompt.weight.grad is not None and prompt.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())


def test_full_finetuning_mode_trains_the_backbone():
    bert = tiny_bert()
    model = PromptClassifier(bert, 2, prompt=None, train_backbone=True)
    assert count_parameters(model).trainable == sum(p.numel() for p in model.parameters())


def test_vocab_init_copies_distinct_candidate_rows_and_random_init_is_bounded():
    emb = torch.randn(30, 8)
    cand = torch.arange(10, 20)
    init = vocab_init(emb, 5, torch.Generator().manual_seed(0), cand)
    rows = [int((emb == r).all(1).nonzero()) for r in init]
    assert len(set(rows)) == 5 and all(10 <= i < 20 for i in rows)
    p = SoftPrompt.from_config(SoftPromptConfig(num_tokens=6, init="random", random_range=0.25), emb)
    assert p.weight.shape == (6, 8) and p.weight.abs().max() <= 0.25
    with pytest.raises(ConfigError, match="candidate"):
        vocab_init(emb, 11, torch.Generator(), cand)


def test_config_and_wiring_errors_are_explicit():
    with pytest.raises(ConfigError, match="init"):
        SoftPromptConfig(init="zeros")
    with pytest.raises(ConfigError, match="label_token_ids"):
        PromptClassifier(tiny_llama(), 3, None)


def test_detect_architecture_tells_the_three_kinds_apart():
    assert [detect_architecture(m()) for m in (tiny_bert, tiny_llama, tiny_gpt2, tiny_t5)] == [
        "encoder", "decoder", "decoder", "encoder-decoder"]
    # a masked LM's head is also called lm_head (RoBERTa, XLM-R): it is still an encoder
    cfg = transformers.RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=70)
    mlm = transformers.RobertaForMaskedLM(cfg)
    assert hasattr(mlm, "lm_head") and detect_architecture(mlm) == "encoder"
