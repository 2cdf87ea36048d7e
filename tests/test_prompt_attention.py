import pytest
import torch

from cptpp.config import ConfigError
from cptpp.peft.prompt_attention import (ContextualMixtureConfig, LinearHead, LinearPromptAttention,
                                         PromptAttention, SelfAttention, accuracy, label_rule, logistic_loss,
                                         prompt_attention_gradients, sample_mixture, train_model)


def test_generator_label_rule_and_token_structure_hold_exactly_without_noise():
    cfg = ContextualMixtureConfig(seq_len=10, dim=8, relevant_fraction=0.3, num_irrelevant_contexts=3,
                                  noise_strength=2.5, context_overlap=0.6, sigma=0.0)
    data = sample_mixture(cfg, 200, seed=1)
    assert data.X.shape == (200, 10, 8)
    assert (data.relevant.sum(1) == 3).all()
    assert torch.equal(label_rule(data), data.y)
    on_v = data.X @ data.v_star
    on_q = data.X @ data.q_star
    rel, irr = data.relevant, ~data.relevant
    # relevant tokens: q_star + y v_star ; irrelevant: q_j +- rho v_star +- kappa q_star
    assert torch.allclose(on_v[rel], data.y[:, None].expand(-1, 10)[rel], atol=1e-5)
    assert torch.allclose(on_q[rel], torch.ones(int(rel.sum())), atol=1e-5)
    assert torch.allclose(on_v[irr].abs(), torch.full((int(irr.sum()),), 2.5), atol=1e-5)
    assert torch.allclose(on_q[irr].abs(), torch.full((int(irr.sum()),), 0.6), atol=1e-5)
    # both labels occur and the irrelevant noise sign is not the label
    assert 0.3 < (data.y > 0).float().mean() < 0.7
    agree = (torch.sign(on_v[irr]) == data.y[:, None].expand(-1, 10)[irr]).float().mean()
    assert 0.4 < agree < 0.6


def test_label_rule_survives_small_noise_and_directions_are_orthonormal():
    cfg = ContextualMixtureConfig(sigma=0.05)
    data = sample_mixture(cfg, 300, seed=2)
    assert torch.equal(label_rule(data), data.y)
    dirs = torch.stack([data.q_star, data.v_star, *data.q_irrelevant])
    assert torch.allclose(dirs @ dirs.T, torch.eye(len(dirs)), atol=1e-5)


def test_softmax_prompt_attention_can_solve_what_a_linear_head_cannot():
    cfg = ContextualMixtureConfig(seq_len=20, dim=8, relevant_fraction=0.1, noise_strength=3.0, sigma=0.0)
    data = sample_mixture(cfg, 500, seed=3)
    model = PromptAttention(8).double()
    with torch.no_grad():
        # attend along q_star (relevant score 1 vs +-0.7), read the label along v_star
        model.p.copy_(torch.linalg.solve(model.W, 40 * data.q_star.double()))
        model.v.copy_(torch.linalg.solve(model.U, data.v_star.double()))
    assert accuracy(model, data.__class__(data.X.double(), data.y.double(), data.relevant, data.q_star,
                                           data.v_star, data.q_irrelevant)) == 1.0
    head = LinearHead(8)
    with torch.no_grad():
        head.v.copy_(data.v_star)
    assert accuracy(head, data) < 0.8


def test_analytic_prompt_attention_gradient_matches_autograd():
    torch.manual_seed(0)
    model = PromptAttention(4, train_attention=True, seed=5).double()
    with torch.no_grad():
        model.p.copy_(torch.randn(4, dtype=torch.float64))
        model.v.copy_(torch.randn(4, dtype=torch.float64))
    X = torch.randn(3, 5, 4, dtype=torch.float64)
    y = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    logistic_loss(model(X), y).backward()
    analytic = prompt_attention_gradients(model, X, y)
    for name in ("p", "W", "U", "v"):
        assert torch.allclose(analytic[name], getattr(model, name).grad, atol=1e-12), name


def test_analytic_gradient_on_a_hand_computed_single_token_pair():
    # T=2, d=1: a = (x1 w p, x2 w p); with x = (1, -1), w = u = 1, p = 0 -> s = (1/2, 1/2), f = v * 0 = 0
    model = PromptAttention(1, train_attention=True).double()
    with torch.no_grad():
        model.W.fill_(1.0), model.U.fill_(1.0), model.p.fill_(0.0), model.v.fill_(2.0)
    X = torch.tensor([[[1.0], [-1.0]]], dtype=torch.float64)
    y = torch.tensor([1.0], dtype=torch.float64)
    g = prompt_attention_gradients(model, X, y)
    # dL/df = -sigmoid(0) = -1/2 ; u = (2, -2) ; df/da = s*(u - 0) = (1, -1) ; df/dp = x^T df/da = 2
    assert g["p"].item() == pytest.approx(-1.0)
    assert g["v"].item() == pytest.approx(0.0)           # X^T s = 0


def test_frozen_attention_weights_do_not_move_and_prompt_does():
    cfg = ContextualMixtureConfig()
    data = sample_mixture(cfg, 64, seed=0)
    model = PromptAttention(cfg.dim, train_attention=False)
    W0, p0 = model.W.detach().clone(), model.p.detach().clone()
    train_model(model, data, steps=5)
    assert torch.equal(model.W, W0)
    assert not torch.equal(model.p, p0)


def test_self_attention_matches_a_per_query_loop():
    torch.manual_seed(1)
    model = SelfAttention(3, seed=2)
    with torch.no_grad():
        model.v.copy_(torch.randn(3))
    X = torch.randn(2, 4, 3)
    ref = []
    for n in range(2):
        total = 0.0
        for q in range(4):
            s = torch.softmax(X[n] @ model.W @ X[n, q], dim=0)
            total = total + (X[n].T @ s) @ model.U @ model.v
        ref.append(total / 4)
    assert torch.allclose(model(X), torch.stack(ref), atol=1e-6)


def test_linear_prompt_attention_is_the_unnormalized_score():
    model = LinearPromptAttention(3, seed=0)
    with torch.no_grad():
        model.v.copy_(torch.tensor([1.0, -1.0, 0.5]))
    X = torch.randn(2, 4, 3)
    ref = torch.stack([(X[n].T @ (X[n] @ model.W @ model.p) / 4) @ model.U @ model.v for n in range(2)])
    assert torch.allclose(model(X), ref, atol=1e-6)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="dim"):
        ContextualMixtureConfig(dim=3, num_irrelevant_contexts=4)
    with pytest.raises(ConfigError, match="context_overlap"):
        ContextualMixtureConfig(context_overlap=1.5)
