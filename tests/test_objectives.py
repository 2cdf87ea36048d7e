"""Loss terms on hand-checkable examples, and each objective's wiring against a dense re-computation."""
import math

import pytest
import torch
import torch.nn.functional as F

from cptpp.config import ConfigError
from cptpp.recsys.objectives import (bpr_loss, info_nce, info_nce_all, l2_penalty, sgl_cl, two_term_cl,
                                     uniform_noise)
from cptpp.recsys.task import RecConfig, RecTask


def test_bpr_hand_example():
    u = torch.tensor([[1.0, 0.0]])
    assert float(bpr_loss(u, torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]))) == pytest.approx(
        math.log(1 + math.exp(-2)))


def test_l2_penalty_hand_example():
    a, b = torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert float(l2_penalty(a, b)) == pytest.approx((25 + 2) / (2 * 2))


def test_info_nce_hand_example():
    v = torch.eye(2)
    # logits [[2, 0], [0, 2]] at tau=0.5 -> each row -log(e^2 / (e^2 + 1))
    assert float(info_nce(v, v * 3, tau=0.5)) == pytest.approx(math.log(1 + math.exp(-2)))


def test_uniform_noise_has_norm_eps_and_keeps_sign():
    torch.manual_seed(0)
    h = torch.randn(50, 8)
    out = uniform_noise(h, 0.3)
    d = out - h
    torch.testing.assert_close(d.norm(dim=1), torch.full((50,), 0.3))
    assert ((d * h) >= 0).all()


def _batch(task):
    return next(iter(task.batches(1, torch.Generator().manual_seed(0))))


def _dense_layers(task, x, layers, noise_eps=None):
    a = task.graph.to_dense()
    out = [x]
    for _ in range(layers):
        h = a @ out[-1]
        if noise_eps is not None:
            h = h + noise_eps * torch.sign(h) * F.normalize(torch.rand_like(h), dim=-1)
        out.append(h)
    return out


def test_lightgcn_loss_matches_dense(tiny_data):
    task = RecTask(tiny_data, RecConfig(recommender="lightgcn", layers=2, batch_size=64))
    users, pos, neg = _batch(task)
    m = task.model
    ego = torch.cat([m.user, m.item]).detach()
    final = torch.stack(_dense_layers(task, ego, 2)).mean(0)
    ue, ie = final[:30], final[30:]
    expect = bpr_loss(ue[users], ie[pos], ie[neg]) + 1e-4 * l2_penalty(m.user[users], m.item[pos], m.item[neg])
    torch.testing.assert_close(task.loss((users, pos, neg)), expect)


def test_xsimgcl_matches_dense_with_same_noise(tiny_data):
    cfg = RecConfig(recommender="xsimgcl", layers=2, cl_layer=1, eps=0.2, tau=0.15, cl_weight=0.2, batch_size=64)
    task = RecTask(tiny_data, cfg)
    batch = _batch(task)
    users, pos, neg = batch
    torch.manual_seed(7)
    got = task.loss(batch)
    m = task.model
    torch.manual_seed(7)
    layers = _dense_layers(task, torch.cat([m.user, m.item]).detach(), 2, noise_eps=0.2)
    final = torch.stack(layers[1:]).mean(0)  # XSimGCL skips layer 0 in the readout
    mid = layers[1]
    uu, ii = torch.unique(users), torch.unique(pos)
    cl = info_nce(final[uu], mid[uu], 0.15) + info_nce(final[30 + ii], mid[30 + ii], 0.15)
    rec = bpr_loss(final[users], final[30 + pos], final[30 + neg])
    l2 = 1e-4 * l2_penalty(m.user[users], m.item[pos], m.item[neg])
    torch.testing.assert_close(got, rec + l2 + 0.2 * cl)


def test_sgl_batch_cl_is_one_infonce_over_stacked_users_and_items():
    # Users 0, 1 (user 0 twice in the batch) and item 0 (twice): the stacked rows are
    # z = [e_x, e_y, e_x]; at tau = 1 row 0 and row 2 see logits [1, 0, 1], row 1 sees [0, 1, 0].
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])  # user 2 is not in the batch: ignored
    i = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    users, pos = torch.tensor([0, 1, 0]), torch.tensor([0, 0, 0])
    e = math.e
    expect = (2 * -math.log(e / (2 * e + 1)) - math.log(e / (e + 2))) / 3
    assert float(sgl_cl(u, i, u, i, users, pos, 1.0, "batch")) == pytest.approx(expect)
    # SimGCL's two-term form is a different number on the same input: users among users,
    # items among items (one item: its InfoNCE is 0).
    two = -math.log(e / (e + 1))
    assert float(two_term_cl(u, i, u, i, users, pos, 1.0)) == pytest.approx(two)


def test_sgl_all_cl_matches_dense_reference():
    # RecBole's calc_ssl_loss written out row by row: every batch row (duplicates included)
    # against every node of the other view, user and item means added.
    torch.manual_seed(0)
    u1, u2, i1, i2 = torch.randn(7, 4), torch.randn(7, 4), torch.randn(9, 4), torch.randn(9, 4)
    users, pos = torch.tensor([3, 0, 3, 6, 3]), torch.tensor([8, 8, 1, 2, 0])
    tau = 0.5

    def ref(a, b, idx):
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
        total = 0.0
        for k in idx.tolist():
            sims = torch.exp(b @ a[k] / tau)
            total += -math.log(float(sims[k] / sims.sum()))
        return total / len(idx)

    expect = ref(u1, u2, users) + ref(i1, i2, pos)
    assert float(sgl_cl(u1, i1, u2, i2, users, pos, tau, "all")) == pytest.approx(expect, rel=1e-5)
    assert float(info_nce_all(u1, u2, users, tau)) == pytest.approx(ref(u1, u2, users), rel=1e-5)


@pytest.mark.parametrize("model,negatives", [("sgl", "batch"), ("sgl", "all"), ("simgcl", "batch")])
def test_zero_perturbation_views_equal_clean_embeddings(tiny_data, model, negatives):
    # With no dropout / no noise both views are the clean encoder output, so the CL term is the
    # model's contrastive form on the clean embeddings with themselves.
    cfg = RecConfig(recommender=model, layers=2, drop_ratio=0.0, eps=0.0, tau=0.2, batch_size=64,
                    cl_negatives=negatives)
    task = RecTask(tiny_data, cfg)
    gen = torch.Generator().manual_seed(0)
    batch = next(iter(task.batches(1, gen)))
    users, pos, _ = batch
    terms = task.objective.terms(*batch, need_rec=True)
    ue, ie = task.model(task.graph)
    uu, ii = torch.unique(users), torch.unique(pos)
    if model == "simgcl":
        expect = info_nce(ue[uu], ue[uu], 0.2) + info_nce(ie[ii], ie[ii], 0.2)
    elif negatives == "batch":
        expect = info_nce(torch.cat([ue[uu], ie[ii]]), torch.cat([ue[uu], ie[ii]]), 0.2)
    else:
        expect = info_nce_all(ue, ue, users, 0.2) + info_nce_all(ie, ie, pos, 0.2)
    torch.testing.assert_close(terms["cl"], expect)


def test_sgl_views_differ_from_clean_graph_with_dropout(tiny_data):
    task = RecTask(tiny_data, RecConfig(recommender="sgl", layers=2, drop_ratio=0.5, batch_size=64))
    task.batches(1, torch.Generator().manual_seed(0))
    v1, v2 = task.objective.views
    assert v1.nnz < task.graph.nnz and v2.nnz < task.graph.nnz
    assert not torch.equal(v1.indices, v2.indices)
    task.cfg.sgl_aug = "rw"
    task.objective.start_epoch(torch.Generator().manual_seed(0))
    assert len(task.objective.views[0]) == 2  # one graph per layer


def test_pretrain_mode_is_contrastive_only(tiny_data):
    task = RecTask(tiny_data, RecConfig(recommender="simgcl", mode="pretrain", layers=2, batch_size=64))
    batch = _batch(task)
    torch.manual_seed(1)
    loss = task.loss(batch)
    assert set(task.last_terms) == {"cl"}
    assert float(loss.detach()) == pytest.approx(task.last_terms["cl"])


def test_config_errors_name_valid_choices():
    with pytest.raises(ConfigError, match="lightgcn"):
        RecConfig(recommender="lightgnc")
    with pytest.raises(ConfigError, match="pretrain needs a contrastive"):
        RecConfig(recommender="lightgcn", mode="pretrain")
    with pytest.raises(ConfigError, match="batch, all"):
        RecConfig(recommender="sgl", cl_negatives="every")
    with pytest.raises(ConfigError, match="cl_negatives=all is SGL"):
        RecConfig(recommender="simgcl", cl_negatives="all")
    with pytest.raises(ConfigError, match="cl_layer"):
        RecConfig(recommender="xsimgcl", layers=2, cl_layer=3)


def test_sgl_defaults_joint_recbole_form_pretrain_selfrec_form():
    joint = RecConfig(recommender="sgl")
    assert (joint.cl_negatives, joint.tau, joint.cl_weight) == ("all", 0.5, 0.05)
    pre = RecConfig(recommender="sgl", mode="pretrain")
    assert (pre.cl_negatives, pre.tau) == ("batch", 0.2)
    assert RecConfig(recommender="sgl", mode="pretrain", cl_negatives="all", tau=0.5).cl_negatives == "all"
    assert RecConfig(recommender="simgcl").cl_negatives == "batch"
