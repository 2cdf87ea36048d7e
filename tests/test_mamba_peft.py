"""MambaPEFT on tiny random transformers Mamba models: exactness at init, effect when non-zero, isolation, I/O."""
import copy

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import MambaConfig, MambaForCausalLM  # noqa: E402
from transformers.models.mamba.modeling_mamba import MambaMixer  # noqa: E402

from cptpp.config import ConfigError  # noqa: E402
from cptpp.peft.mamba import (  # noqa: E402
    ADDED_NAMES,
    MambaPeftConfig,
    apply_mamba_peft,
    load_mamba_peft,
    merge_mamba_peft,
    save_mamba_peft,
    selective_scan,
)
from cptpp.train.params import count_parameters  # noqa: E402

ZERO_INIT = [
    {"lora_targets": ["in_proj"]}, {"lora_targets": ["in_proj_x"]}, {"lora_targets": ["in_proj_z"]},
    {"lora_targets": ["x_proj"]}, {"lora_targets": ["dt_proj"]}, {"lora_targets": ["out_proj"]},
    {"lora_targets": ["conv1d"]}, {"lora_targets": ["embeddings"]}, {"scan_states": 3},
    {"partial_targets": ["A_log"]}, {"partial_targets": ["D"]}, {"partial_targets": ["conv1d"]},
    {"partial_targets": ["dt_bias"]}, {"partial_targets": ["norm"]},
]
ALL_METHODS = ZERO_INIT + [{"affix_tokens": 2}]


def tiny_mamba(state_size=4, seed=0) -> MambaForCausalLM:
    torch.manual_seed(seed)
    cfg = MambaConfig(vocab_size=50, hidden_size=16, state_size=state_size, num_hidden_layers=2, expand=2,
                      conv_kernel=3, time_step_rank=3, time_step_min=0.1, time_step_max=1.0, initializer_range=0.5)
    # Larger steps than the default (1e-3..0.1) so the SSM path, not the D skip, dominates the output.
    return MambaForCausalLM(cfg).eval()


def adapted(base, **kw):
    return apply_mamba_peft(copy.deepcopy(base), MambaPeftConfig(lora_rank=2, **kw))


def randomize_adapters(model, seed=1):
    """Make every trainable tensor non-zero (LoRA B, scan C rows, partial deltas, norm weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(ids, **kw).logits


IDS = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(3))


def test_selective_scan_matches_hand_recurrence():
    g = torch.Generator().manual_seed(0)
    x, dt = torch.randn(1, 3, 2, generator=g), torch.rand(1, 3, 2, generator=g)
    A, D = -torch.rand(2, 2, generator=g), torch.randn(2, generator=g)
    B, C = torch.randn(1, 3, 2, generator=g), torch.randn(1, 3, 2, generator=g)
    y, h = selective_scan(x, dt, A, B, C, D)
    state = torch.zeros(2, 2)
    for t in range(3):
        for d in range(2):
            for n in range(2):
                state[d, n] = torch.exp(dt[0, t, d] * A[d, n]) * state[d, n] + dt[0, t, d] * B[0, t, n] * x[0, t, d]
        want = (state * C[0, t]).sum(-1) + D * x[0, t]
        assert torch.allclose(y[0, t], want, atol=1e-6)
    assert torch.allclose(h[0], state, atol=1e-6)


@pytest.mark.parametrize("kw", ZERO_INIT, ids=lambda kw: str(kw))
@pytest.mark.parametrize("train_mode", [False, True])
def test_zero_initialized_method_leaves_output_unchanged(kw, train_mode):
    base = tiny_mamba()
    model = adapted(base, **kw)
    base.train(train_mode)
    model.train(train_mode)
    assert not torch.allclose(logits(base, IDS), torch.zeros(1))
    torch.testing.assert_close(logits(model, IDS), logits(base, IDS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", ALL_METHODS, ids=lambda kw: str(kw))
def test_method_changes_output_once_nonzero(kw):
    """Catches the dt_proj trap: wrapping a module whose weight the mixer reads directly does nothing."""
    base = tiny_mamba()
    model = adapted(base, **kw)
    randomize_adapters(model)
    diff = (logits(model, IDS) - logits(base, IDS)).abs().max()
    assert diff > 1e-4, kw  # float noise here is ~1e-7


@pytest.mark.parametrize("target,attr", [("dt_proj", "dt_proj"), ("x_proj", "x_proj"), ("out_proj", "out_proj"),
                                         ("in_proj", "in_proj"), ("conv1d", "conv1d")])
def test_lora_equals_base_model_with_updated_weight(target, attr):
    """Independent reference: the original transformers forward with W + scale * B @ A written into the weight."""
    base = tiny_mamba()
    model = adapted(base, lora_targets=[target], lora_alpha=3.0)
    randomize_adapters(model)
    ref = copy.deepcopy(base)
    with torch.no_grad():
        for m_ref, m in zip(ref.backbone.layers, model.backbone.layers):
            lora = m.mixer.mamba_peft.lora[target]
            w = getattr(m_ref.mixer, attr).weight
            w.add_((1.5 * lora.B @ lora.A).view_as(w))  # scale = alpha / rank = 3 / 2
    torch.testing.assert_close(logits(model, IDS), logits(ref, IDS), rtol=1e-4, atol=1e-5)


LORA_FACTORED = [{"lora_targets": [t]} for t in ("in_proj", "in_proj_x", "in_proj_z", "x_proj", "out_proj",
                                                  "dt_proj", "conv1d")] + [
    {"lora_targets": ["x_proj", "in_proj_x"], "scan_states": 2, "affix_tokens": 1},
    {"lora_targets": ["in_proj", "x_proj", "out_proj", "dt_proj", "conv1d", "embeddings"]}]


@pytest.mark.parametrize("kw", LORA_FACTORED, ids=lambda kw: str(kw))
def test_factored_lora_equals_merged_weights(kw):
    """W x + s B (A x) (the default) against the merged W + s B @ A rebuilt each step: outputs and gradients.

    In float64, so the two summation orders agree to ~1e-14 (float32 differs by ~1e-5 through two layers).
    """
    model = adapted(tiny_mamba(), lora_alpha=3.0, **kw).double()
    randomize_adapters(model)
    results = []
    for factored in (True, False):
        for m in model.backbone.layers:
            m.mixer.mamba_peft.lora_factored = factored
        model.zero_grad()
        out = model(IDS).logits
        out.pow(2).mean().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((out.detach(), grads))
    (fact, g_fact), (merged, g_merged) = results
    assert fact.abs().max() > 1  # not a vacuous comparison
    torch.testing.assert_close(fact, merged, rtol=1e-10, atol=1e-10)
    assert g_fact.keys() == g_merged.keys() and any(".lora." in n for n in g_fact)
    for name in g_fact:
        torch.testing.assert_close(g_fact[name], g_merged[name], rtol=1e-9, atol=1e-10, msg=lambda m: f"{name}: {m}")


def test_additional_scan_equals_bigger_state_model():
    """N' extra states == a transformers Mamba with state_size N + N' holding the extra A_log columns and x_proj rows."""
    base = tiny_mamba(state_size=4)
    model = adapted(base, scan_states=2)
    randomize_adapters(model)
    big = MambaForCausalLM(MambaConfig(**{**base.config.to_dict(), "state_size": 6})).eval()
    sd = base.state_dict()
    r, n = 3, 4
    for i, layer in enumerate(model.backbone.layers):
        ad = layer.mixer.mamba_peft
        p = f"backbone.layers.{i}.mixer."
        w = sd[p + "x_proj.weight"]
        eb, ec = ad.scan_x_proj.detach().chunk(2)
        sd[p + "x_proj.weight"] = torch.cat([w[: r + n], eb, w[r + n:], ec])
        sd[p + "A_log"] = torch.cat([sd[p + "A_log"], ad.scan_A_log.detach()], dim=1)
    big.load_state_dict(sd)
    torch.testing.assert_close(logits(model, IDS), logits(big, IDS, use_cache=False), rtol=1e-4, atol=1e-5)


def test_additional_scan_with_zero_extra_parameters_equals_base():
    base = tiny_mamba()
    model = adapted(base, scan_states=3)
    with torch.no_grad():
        for layer in model.backbone.layers:
            layer.mixer.mamba_peft.scan_x_proj.zero_()
            layer.mixer.mamba_peft.scan_A_log.normal_()
    torch.testing.assert_close(logits(model, IDS), logits(base, IDS), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", ALL_METHODS, ids=lambda kw: str(kw))
def test_only_the_methods_parameters_train(kw):
    base = tiny_mamba()
    model = adapted(base, **kw)
    model.train()
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert trainable
    if kw.get("partial_targets") == ["norm"]:
        assert all(k.endswith("norm.weight") or k.endswith("norm_f.weight") for k in trainable)
    else:
        assert all("mamba_peft" in k for k in trainable)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    model(IDS, labels=IDS).loss.backward()
    opt.step()
    after = model.state_dict()
    changed = {k for k, v in base.state_dict().items() if not torch.equal(v, after[k])}
    assert changed <= trainable
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    assert (logits(model.eval(), IDS) - logits(base, IDS)).abs().max() > 1e-4


def test_save_load_round_trip_restores_outputs(tmp_path):
    base = tiny_mamba()
    model = adapted(base, lora_targets=["dt_proj", "in_proj_x", "embeddings"], scan_states=2, affix_tokens=2,
                    partial_targets=["D", "norm"])
    randomize_adapters(model)
    save_mamba_peft(model, tmp_path / "a.pt")
    blob = torch.load(tmp_path / "a.pt", weights_only=True)
    assert all(("mamba_peft" in k) or ("norm" in k) for k in blob["state"])  # no frozen base weights saved
    fresh = load_mamba_peft(copy.deepcopy(base), tmp_path / "a.pt")
    torch.testing.assert_close(logits(fresh, IDS), logits(model, IDS))


def test_load_rejects_mismatched_file(tmp_path):
    base = tiny_mamba()
    save_mamba_peft(adapted(base, lora_targets=["x_proj"]), tmp_path / "a.pt")
    with pytest.raises(ConfigError, match="differs"):
        load_mamba_peft(adapted(base, lora_targets=["dt_proj"]), tmp_path / "a.pt")


@pytest.mark.parametrize("kw", [
    {"lora_targets": ["in_proj_x", "in_proj_z", "x_proj", "dt_proj", "out_proj", "conv1d"],
     "partial_targets": ["A_log", "D", "conv1d", "dt_bias"]},
    {"lora_targets": ["dt_proj", "x_proj"], "scan_states": 2, "affix_tokens": 1},
])
def test_merge_keeps_outputs_and_restores_plain_mixers(kw):
    model = adapted(tiny_mamba(), **kw)
    randomize_adapters(model)
    before = logits(model, IDS)
    merge_mamba_peft(model)
    torch.testing.assert_close(logits(model, IDS), before, rtol=1e-4, atol=1e-5)
    mixer_types = {type(layer.mixer) for layer in model.backbone.layers}
    if kw.get("scan_states"):
        assert model.mamba_peft_config.methods() == ["additional_scan", "affix"]
    else:
        assert mixer_types == {MambaMixer} and model.mamba_peft_config is None
        assert not any("mamba_peft" in k for k in model.state_dict())


def test_embedding_lora_merges_only_when_untied():
    model = adapted(tiny_mamba(), lora_targets=["embeddings"])
    randomize_adapters(model)
    before = logits(model, IDS)
    merge_mamba_peft(model)  # tied LM head: merging would change the head too, so it stays an adapter
    assert model.mamba_peft_config.lora_targets == ["embeddings"]
    torch.testing.assert_close(logits(model, IDS), before)


def test_cached_decoding_matches_full_forward():
    """Prefill + one-token steps through the cache give the full-sequence logits (affix and scan included)."""
    model = adapted(tiny_mamba(), lora_targets=["dt_proj"], scan_states=2, affix_tokens=2)
    randomize_adapters(model)
    full = logits(model, IDS, use_cache=False)
    with torch.no_grad():
        out = model(IDS[:, :5], use_cache=True)
        steps = [out.logits]
        cache = out.cache
        for t in range(5, IDS.shape[1]):
            out = model(IDS[:, t:t + 1], cache=cache, use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def test_affix_keeps_sequence_length_and_counts_parameters():
    base = tiny_mamba()
    model = adapted(base, affix_tokens=3)
    assert logits(model, IDS).shape == logits(base, IDS).shape
    count = count_parameters(model, added=ADDED_NAMES)
    d_inner = 32
    assert count.trainable == 2 * 3 * d_inner  # 2 layers x 3 tokens x d_inner
    assert count.base == sum(p.numel() for p in base.parameters())
    assert count.percent == pytest.approx(100 * count.trainable / count.base)


def test_lora_rank_is_capped_by_matrix_shape():
    model = adapted(tiny_mamba(), lora_targets=["dt_proj"])
    model.mamba_peft_config  # noqa: B018
    model2 = apply_mamba_peft(copy.deepcopy(tiny_mamba()), MambaPeftConfig(lora_targets=["dt_proj"], lora_rank=64))
    lora = model2.backbone.layers[0].mixer.mamba_peft.lora["dt_proj"]
    assert lora.A.shape == (3, 3) and lora.B.shape == (32, 3)  # time_step_rank = 3


@pytest.mark.parametrize("kw,msg", [
    ({"lora_targets": ["dt"]}, "choose one of: in_proj"),
    ({"partial_targets": ["bias"]}, "choose one of: A_log"),
    ({}, "enables no method"),
    ({"affix_tokens": 2, "affix_position": "suffix"}, "no effect"),
    ({"lora_targets": ["in_proj", "in_proj_x"]}, "already covers"),
    ({"lora_targets": ["x_proj"], "lora_rank": 0}, "lora_rank"),
])
def test_config_errors_name_valid_choices(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        MambaPeftConfig(**kw)


def test_apply_twice_is_an_error():
    model = adapted(tiny_mamba(), lora_targets=["x_proj"])
    with pytest.raises(ConfigError, match="already has"):
        apply_mamba_peft(model, MambaPeftConfig(lora_targets=["x_proj"]))


def test_attention_mask_is_applied_like_transformers():
    base = tiny_mamba()
    model = adapted(base, lora_targets=["x_proj"], scan_states=2)
    mask = torch.ones_like(IDS)
    mask[0, :4] = 0  # left padding in the first row
    torch.testing.assert_close(logits(model, IDS, attention_mask=mask, use_cache=False),
                               logits(base, IDS, attention_mask=mask, use_cache=False), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(logits(model, IDS, attention_mask=mask), logits(model, IDS))


def test_cptpp_scan_without_adapters_equals_transformers_and_trains_everything():
    from cptpp.peft.mamba import use_cptpp_scan

    base = tiny_mamba()
    model = use_cptpp_scan(copy.deepcopy(base)).requires_grad_(True)
    torch.testing.assert_close(logits(model, IDS), logits(base, IDS), rtol=1e-5, atol=1e-5)
    model.train()
    base.train()
    model(IDS, labels=IDS).loss.backward()
    base(IDS, labels=IDS).loss.backward()
    for (k, p), q in zip(model.named_parameters(), base.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=k)
