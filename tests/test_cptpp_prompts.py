"""CPTPP: profiles vs dense references, what trains in each mode, and pre-trained artifacts."""
import numpy as np
import pytest
import torch

from cptpp.config import ConfigError
from cptpp.recsys.encoders import LightGCN
from cptpp.recsys.prompt_tuning import (PromptTuneConfig, PromptTuningTask, load_pretrained,
                                        save_pretrained)
from cptpp.recsys.prompts import high_order_profile, historical_profile, interaction_graph, nmf
from cptpp.train import TrainConfig, fit, seed_everything
from graph_tools.sparse import normalized_bipartite_graph


def _encoder(data, layers=2, dim=8):
    seed_everything(0)
    return LightGCN(data.num_users, data.num_items, dim, layers)


def _dense_r(data):
    r = np.zeros((data.num_users, data.num_items), dtype=np.float32)
    r[data.train[:, 0], data.train[:, 1]] = 1
    return torch.from_numpy(r)


def test_historical_profile_is_sum_of_interacted_item_embeddings(tiny_data):
    item = torch.randn(tiny_data.num_items, 5)
    got = historical_profile(interaction_graph(tiny_data.csr("train")), item)
    torch.testing.assert_close(got, _dense_r(tiny_data) @ item)
    u = int(tiny_data.train[0, 0])  # one row by hand
    torch.testing.assert_close(got[u], item[tiny_data.train[tiny_data.train[:, 0] == u, 1]].sum(0))


def test_high_order_profile_matches_dense_powers(tiny_data):
    U, I = tiny_data.num_users, tiny_data.num_items
    user, item = torch.randn(U, 4), torch.randn(I, 4)
    adj = normalized_bipartite_graph(tiny_data.train, U, I)
    a = adj.to_dense()
    x = torch.cat([user, item])
    expect = (x + a @ x + a @ a @ x) / 3
    torch.testing.assert_close(high_order_profile(adj, user, item, 2), expect[:U])


def test_nmf_matches_dense_multiplicative_updates(tiny_data):
    r = interaction_graph(tiny_data.csr("train"))
    w, h, losses = nmf(r, 3, iters=30, seed=5)
    # dense reference with the same initialization
    R = _dense_r(tiny_data).double()
    gen = torch.Generator().manual_seed(5)
    scale = float(np.sqrt(float(R.mean()) / 3))
    W = torch.rand(R.shape[0], 3, generator=gen, dtype=torch.float64) * scale
    H = torch.rand(3, R.shape[1], generator=gen, dtype=torch.float64) * scale
    for _ in range(30):
        W = W * (R @ H.T) / (W @ H @ H.T + 1e-10)
        H = H * (W.T @ R) / (W.T @ W @ H + 1e-10)
    torch.testing.assert_close(w.double(), W, rtol=1e-4, atol=1e-6)
    assert losses[-1] == pytest.approx(float(((R - W @ H) ** 2).sum()), rel=1e-6)
    assert all(b <= a + 1e-9 for a, b in zip(losses, losses[1:]))  # MU never increases the loss
    assert (w >= 0).all() and (h >= 0).all()


@pytest.mark.parametrize("prompt", ["historical", "factorization", "high_order"])
def test_paper_mode_trains_only_prompt_layers(tiny_data, prompt):
    enc = _encoder(tiny_data)
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    task = PromptTuningTask(enc, tiny_data, PromptTuneConfig(prompt=prompt, hidden=16, batch_size=64, nmf_iters=5))
    gen_before = [p.clone() for p in task.model.generator.parameters()]
    trainable = {n for n, p in task.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("generator.", "fusion.")) for n in trainable)
    fit(task, TrainConfig(epochs=2, lr=0.01, progress=False, patience=0))
    after = enc.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # encoder bitwise unchanged
    assert any(not torch.equal(a, b) for a, b in zip(gen_before, task.model.generator.parameters()))


def test_prompt_plus_items_and_add_fusion(tiny_data):
    task = PromptTuningTask(_encoder(tiny_data), tiny_data,
                            PromptTuneConfig(tune="prompt+items", fusion="add", hidden=16, batch_size=64))
    trainable = {n.split(".")[0] for n, p in task.model.named_parameters() if p.requires_grad}
    assert trainable == {"generator", "item_table"}  # add fusion has no parameters
    users, items = task.model()
    assert users.shape == (tiny_data.num_users, 8) and items.shape == (tiny_data.num_items, 8)


@pytest.mark.parametrize("rescale", [True, False])
def test_rescale_sets_mean_row_norm_one_with_one_scalar(tiny_data, rescale):
    enc = _encoder(tiny_data)
    adj = normalized_bipartite_graph(tiny_data.train, tiny_data.num_users, tiny_data.num_items)
    with torch.no_grad():
        user, item = enc(adj)
    model = PromptTuningTask(enc, tiny_data, PromptTuneConfig(hidden=16, rescale=rescale)).model
    scale = 1 / float(torch.cat([user, item]).norm(dim=1).mean()) if rescale else 1.0
    torch.testing.assert_close(model.user_frozen, user * scale)
    torch.testing.assert_close(model.item_frozen, item * scale)
    if rescale:
        norms = torch.cat([model.user_frozen, model.item_frozen]).norm(dim=1)
        assert float(norms.mean()) == pytest.approx(1.0, rel=1e-5)
    # the R profile is built from the rescaled embeddings (it is linear in them)
    torch.testing.assert_close(model.profile_fixed, high_order_profile(adj, user, item, 2) * scale)


def test_official_code_mode_reproduces_untrained_prompts(tiny_data):
    enc = _encoder(tiny_data)
    enc_before = {k: v.clone() for k, v in enc.state_dict().items()}
    task = PromptTuningTask(enc, tiny_data, PromptTuneConfig(recipe="official-code", hidden=16, batch_size=64))
    prompt_before = {k: v.clone() for k, v in task.model.state_dict().items() if k.startswith(("generator", "fusion"))}
    fit(task, TrainConfig(epochs=2, lr=0.01, progress=False, patience=0))
    state = task.model.state_dict()
    assert all(torch.equal(prompt_before[k], state[k]) for k in prompt_before)  # never trained
    assert any(not torch.equal(enc_before[k], enc.state_dict()[k]) for k in enc_before)  # encoder trained
    assert task.evaluate("valid") == task.evaluate("test")  # selection on test, as that code does


def test_official_code_mode_rejects_other_tunes():
    with pytest.raises(ConfigError, match="official-code"):
        PromptTuneConfig(recipe="official-code", tune="prompt")
    with pytest.raises(ConfigError, match="no rescale"):
        PromptTuneConfig(recipe="official-code", rescale=True)
    assert PromptTuneConfig(recipe="official-code").rescale is False and PromptTuneConfig().rescale is True


def test_pretrained_artifact_round_trip(tiny_data, tmp_path):
    enc = _encoder(tiny_data, layers=3)
    (tmp_path / "config.json").write_text('{"data": {"dataset": "x"}}')
    save_pretrained(enc, tmp_path)
    loaded, cfg = load_pretrained(tmp_path)
    adj = normalized_bipartite_graph(tiny_data.train, tiny_data.num_users, tiny_data.num_items)
    for a, b in zip(enc(adj), loaded(adj)):
        torch.testing.assert_close(a, b)
    assert loaded.layers == 3 and cfg["data"]["dataset"] == "x"
    with pytest.raises(FileNotFoundError, match="cptpp pretrain"):
        load_pretrained(tmp_path / "missing")


def test_encoder_shape_mismatch_is_clear(tiny_data):
    enc = LightGCN(tiny_data.num_users + 1, tiny_data.num_items, 8, 2)
    with pytest.raises(ConfigError, match="pre-trained on"):
        PromptTuningTask(enc, tiny_data, PromptTuneConfig())
