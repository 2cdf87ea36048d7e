import pytest
import torch
import torch.nn.functional as F

from cptpp.config import ConfigError
from cptpp.peft.prompt import PromptClassifier, SoftPrompt
from cptpp.peft.xprompt import (MaskedSoftPrompt, XPromptConfig, importance_scores, load_pruned_prompt,
                                prune_pieces, prune_tokens, save_pruned_prompt, xprompt_search)
from cptpp.train.params import trained_state

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 9, 14, 2, 8], [4, 6, 21, 0, 0], [3, 3, 17, 30, 1]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
LABELS = torch.tensor([0, 2, 1])


def tiny_model(num_tokens=5, num_pieces=4, dtype=torch.float32):
    cfg = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                  attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()
    prompt = MaskedSoftPrompt(num_tokens, 16, num_pieces, torch.randn(num_tokens, 16))
    model = PromptClassifier(bert, 3, prompt).to(dtype).eval()
    return model, prompt


def test_unmasked_prompt_behaves_like_a_plain_soft_prompt():
    model, prompt = tiny_model()
    plain = PromptClassifier(model.backbone, 3, SoftPrompt(5, 16, prompt.weight.detach()))
    plain.head.load_state_dict(model.head.state_dict())
    assert torch.allclose(model(IDS, MASK), plain(IDS, MASK))
    assert prompt.num_parameters() == 5 * 16


def test_pruned_tokens_and_pieces_contribute_exactly_zero():
    model, prompt = tiny_model()
    prune_tokens(prompt, torch.tensor([5.0, 0.1, 3.0, 0.2, 4.0]), 0.4)       # drops tokens 1 and 3
    assert prompt.token_mask.tolist() == [1, 0, 1, 0, 1]
    scores = torch.arange(20.0).view(5, 4)
    prune_pieces(prompt, scores, 0.25)                                        # 3 of 12 surviving pieces
    assert prompt.piece_mask[[0, 2, 4]].sum() == 9
    assert prompt.piece_mask[0, :3].tolist() == [0, 0, 0]                     # lowest alive scores: 0, 1, 2
    before = model(IDS, MASK)
    with torch.no_grad():                                                     # scramble every pruned entry
        dead = prompt.entry_mask() == 0
        prompt.weight[dead] = torch.randn(int(dead.sum())) * 100
    after = model(IDS, MASK)
    assert torch.equal(before, after)
    F.cross_entropy(after, LABELS).backward()
    assert torch.equal(prompt.weight.grad[dead], torch.zeros(int(dead.sum())))
    assert prompt.weight.grad[~dead].abs().sum() > 0
    # and it is the same as a prompt holding only the survivors with the pruned pieces zeroed
    kept = (prompt.weight * prompt.entry_mask()).detach()[[0, 2, 4]]
    ref = PromptClassifier(model.backbone, 3, SoftPrompt(3, 16, kept))
    ref.head.load_state_dict(model.head.state_dict())
    assert torch.allclose(ref(IDS, MASK), after, atol=1e-6)
    assert prompt.num_parameters() == 9 * 4


def _per_example_losses(model, prompt, gamma_tok, gamma_piece):
    """Reference: the masked prompt written out with explicit real-valued gammas."""
    entry = gamma_tok[:, None] * gamma_piece.repeat_interleave(prompt.piece_size, dim=1)
    alive = prompt.alive_tokens()
    values = (prompt.weight.detach() * entry)[alive]
    return F.cross_entropy(model(IDS, MASK, prompt_values=values), LABELS, reduction="none")


def test_importance_scores_equal_finite_difference_estimate():
    model, prompt = tiny_model(num_tokens=4, num_pieces=4, dtype=torch.float64)
    with torch.no_grad():
        prompt.token_mask[2] = 0                                   # one token already pruned
        prompt.piece_mask[0, 1] = 0                                # one piece already pruned
    tok, piece = importance_scores(model, prompt, [(IDS[:2], MASK[:2], LABELS[:2]), (IDS[2:], MASK[2:], LABELS[2:])])
    eps = 1e-6
    g_tok, g_piece = prompt.token_mask.double().clone(), prompt.piece_mask.double().clone()
    fd_tok = torch.zeros(4, dtype=torch.float64)
    for p in range(4):
        if g_tok[p] == 0:
            continue
        up, down = g_tok.clone(), g_tok.clone()
        up[p] += eps
        down[p] -= eps
        d = (_per_example_losses(model, prompt, up, g_piece) - _per_example_losses(model, prompt, down, g_piece)) / (2 * eps)
        fd_tok[p] = (d * g_tok[p]).abs().mean()
    assert torch.allclose(tok, fd_tok, rtol=1e-5, atol=1e-9)
    assert tok[2] == 0 and (tok[[0, 1, 3]] > 0).all()
    fd_piece = torch.zeros(4, 4, dtype=torch.float64)
    for p in (0, 1, 3):
        for j in range(4):
            up, down = g_piece.clone(), g_piece.clone()
            up[p, j] += eps
            down[p, j] -= eps
            d = (_per_example_losses(model, prompt, g_tok, up) - _per_example_losses(model, prompt, g_tok, down)) / (2 * eps)
            fd_piece[p, j] = (d * g_piece[p, j]).abs().mean()
    assert torch.allclose(piece, fd_piece, rtol=1e-5, atol=1e-9)
    assert piece[0, 1] == 0 and piece[2].abs().sum() == 0


def test_token_pruning_is_cumulative_keeps_one_and_never_unprunes():
    prompt = MaskedSoftPrompt(10, 8, 2)
    scores = torch.tensor([9.0, 1, 8, 2, 7, 3, 6, 4, 5, 0])
    prune_tokens(prompt, scores, 0.3)
    assert sorted(prompt.token_mask.eq(0).nonzero().flatten().tolist()) == [1, 3, 9]
    prune_tokens(prompt, torch.zeros(10), 0.5)                       # 2 more, among the alive ones
    assert int(prompt.token_mask.sum()) == 5
    assert prompt.token_mask[[1, 3, 9]].sum() == 0
    prune_tokens(prompt, scores, 1.0)
    assert int(prompt.token_mask.sum()) == 1
    with pytest.raises(ConfigError, match="un-prune"):
        prune_tokens(prompt, scores, 0.2)


def test_piece_pruning_only_touches_surviving_tokens():
    prompt = MaskedSoftPrompt(4, 8, 4)
    prompt.token_mask[1] = 0
    scores = torch.rand(4, 4)
    scores[1] = -1.0                                                  # lowest, but the token is gone
    prune_pieces(prompt, scores, 0.5)
    assert prompt.piece_mask[1].tolist() == [1, 1, 1, 1]
    assert int(prompt.piece_mask[[0, 2, 3]].eq(0).sum()) == 6


def test_rewind_restores_stage1_values_for_survivors_in_the_search():
    model, prompt = tiny_model()
    stage1 = trained_state(model)
    seen = []

    def score():
        return torch.arange(5.0), torch.arange(20.0).view(5, 4)

    def retrain(tag):
        # what retraining starts from must be the stage-1 solution, for every surviving entry
        alive = prompt.entry_mask().bool()
        seen.append(torch.equal(prompt.weight[alive], stage1["prompt.weight"][alive])
                    and torch.equal(model.head.weight, stage1["head.weight"]))
        with torch.no_grad():                                          # "training" moves the values
            prompt.weight.add_(1.0)
            model.head.weight.mul_(2.0)
        return {"valid": {"accuracy": {"token0.2": 0.5, "token0.6": 0.7, "piece0.5": 0.6}[tag]}, "test": {}}

    cfg = XPromptConfig(num_pieces=4, token_ratios=[0.2, 0.6], piece_ratios=[0.5])
    records, best = xprompt_search(model, prompt, cfg, score, retrain)
    assert seen == [True, True, True]
    assert [(r.level, r.ratio, r.tokens_kept) for r in records] == [("token", 0.2, 4), ("token", 0.6, 2),
                                                                     ("piece", 0.5, 2)]
    # piece pruning started from the better token mask (0.6); best = token 0.6, restored with its values
    assert best.level == "token" and best.ratio == 0.6
    assert prompt.token_mask.tolist() == [0, 0, 0, 1, 1] and prompt.piece_mask.sum() == 20
    assert torch.equal(prompt.weight, stage1["prompt.weight"] + 1)


def test_save_load_pruned_prompt_round_trip(tmp_path):
    model, prompt = tiny_model()
    prune_tokens(prompt, torch.tensor([1.0, 0, 2, 3, 4]), 0.2)
    prune_pieces(prompt, torch.rand(5, 4), 0.5)
    save_pruned_prompt(tmp_path / "p.pt", prompt)
    loaded = load_pruned_prompt(tmp_path / "p.pt")
    assert torch.equal(loaded.token_mask, prompt.token_mask) and torch.equal(loaded.piece_mask, prompt.piece_mask)
    assert torch.equal(loaded.values(), prompt.values())
    assert float(loaded.weight.detach()[loaded.entry_mask() == 0].abs().sum()) == 0.0   # pruned stored as zeros
    reloaded = PromptClassifier(model.backbone, 3, loaded)
    reloaded.head.load_state_dict(model.head.state_dict())
    assert torch.equal(reloaded(IDS, MASK), model(IDS, MASK))
    torch.save({"weight": torch.zeros(2, 2)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="not a pruned XPrompt file"):
        load_pruned_prompt(tmp_path / "bad.pt")


def test_config_validation():
    with pytest.raises(ConfigError, match="increasing"):
        XPromptConfig(token_ratios=[0.5, 0.3])
    with pytest.raises(ConfigError, match="prune everything"):
        XPromptConfig(piece_ratios=[1.0])
    with pytest.raises(ConfigError, match="divide"):
        MaskedSoftPrompt(4, 10, 4)
