import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from cptpp.recsys.evaluation import evaluate_embeddings, evaluate_ranking


def csr(pairs, shape):
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return sp.csr_matrix((np.ones(len(pairs), np.float32), (pairs[:, 0], pairs[:, 1])), shape=shape)


def reference(scores, target, exclude, ks):
    """Per-user brute force: drop excluded items, sort the rest by score, read metrics."""
    t = target.toarray() > 0
    ex = sum(e.toarray() for e in exclude) > 0 if exclude else np.zeros_like(t)
    out = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg", "precision", "hit", "mrr")}
    for u in range(t.shape[0]):
        targets = set(np.flatnonzero(t[u]))
        if not targets:
            continue
        cand = np.flatnonzero(~ex[u])
        ranked = cand[np.argsort(-scores[u, cand], kind="stable")]
        for k in ks:
            hit_ranks = [r for r, i in enumerate(ranked[:k]) if i in targets]
            dcg = sum(1 / math.log2(r + 2) for r in hit_ranks)
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(targets), k)))
            out[f"recall@{k}"].append(len(hit_ranks) / len(targets))
            out[f"precision@{k}"].append(len(hit_ranks) / k)
            out[f"ndcg@{k}"].append(dcg / idcg)
            out[f"hit@{k}"].append(float(bool(hit_ranks)))
            out[f"mrr@{k}"].append(1 / (hit_ranks[0] + 1) if hit_ranks else 0.0)
    res = {key: float(np.mean(v)) for key, v in out.items()}
    res["num_users"] = sum(1 for u in range(t.shape[0]) if t[u].any())
    return res


def random_split(num_users, num_items, seed):
    rng = np.random.default_rng(seed)
    split = rng.choice(4, size=(num_users, num_items), p=[0.55, 0.2, 0.1, 0.15])
    split[: num_users // 6, :] = np.where(split[: num_users // 6] == 3, 0, split[: num_users // 6])
    mats = [sp.csr_matrix((split == s).astype(np.float32)) for s in (1, 2, 3)]
    return mats  # train, valid, test; the first users have no test items


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force(seed):
    U, I = 40, 35
    train, valid, test = random_split(U, I, seed)
    assert (np.diff(test.indptr) == 0).any() and (np.diff(test.indptr) > 3).any()  # more targets than K=3
    scores = np.random.default_rng(seed + 10).standard_normal((U, I)).astype(np.float32)
    ks = (1, 3, 10, 30, 50)  # 30 > remaining candidates for many users; 50 > num_items
    got = evaluate_ranking(lambda u: torch.from_numpy(scores)[u].clone(), test, [train, valid],
                           ks=ks, block_size=7)
    want = reference(scores, test, [train, valid], ks)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_hand_worked_two_users():
    # user 0: ranking after masking item 0 is 1, 2, 3, 4; targets {2, 4} -> one hit at rank 1
    # user 1: ranking 4, 3, 2, 1, 0; target {4} -> hit at rank 0
    # user 2: no targets -> not counted
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5],
                           [0.1, 0.2, 0.3, 0.4, 0.5],
                           [0.5, 0.4, 0.3, 0.2, 0.1]])
    target = csr([[0, 2], [0, 4], [1, 4]], (3, 5))
    train = csr([[0, 0], [2, 1]], (3, 5))
    got = evaluate_ranking(lambda u: scores[u].clone(), target, [train], ks=(2, 3))
    d1 = 1 / math.log2(3)
    ndcg_u0 = d1 / (1 + d1)  # one hit at rank 1, two targets -> IDCG over ranks 0, 1
    assert got["num_users"] == 2
    assert got["recall@2"] == pytest.approx((0.5 + 1) / 2)
    assert got["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert got["precision@3"] == pytest.approx((1 / 3 + 1 / 3) / 2)
    assert got["ndcg@2"] == pytest.approx((ndcg_u0 + 1) / 2)
    assert got["ndcg@2"] == pytest.approx(0.6934264036)
    assert got["ndcg@3"] == pytest.approx((ndcg_u0 + 1) / 2)
    assert got["hit@2"] == 1.0
    assert got["mrr@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert got["mrr@3"] == pytest.approx(0.75)


def test_excluded_items_never_reach_top_k():
    U, I = 25, 20
    rng = np.random.default_rng(3)
    ex = rng.random((U, I)) < 0.4
    # the model loves exactly the items it must not recommend
    scores = torch.from_numpy(np.where(ex, 100.0, 0.0) + rng.random((U, I))).float()
    target = sp.csr_matrix((~ex).astype(np.float32))  # every remaining item is a target
    n_free = (~ex).sum(1)
    for k in (1, 5, 20):
        got = evaluate_ranking(lambda u: scores[u].clone(), target, [sp.csr_matrix(ex)],
                               ks=(k,), metrics=("precision", "recall"))
        # precision@k is 1 only if no excluded item took a slot
        assert got[f"precision@{k}"] == pytest.approx(np.mean(np.minimum(n_free, k) / k))
        assert got[f"recall@{k}"] == pytest.approx(np.mean(np.minimum(n_free, k) / n_free))


def test_block_size_does_not_matter_and_embeddings_match():
    U, I, d = 23, 31, 8
    train, valid, test = random_split(U, I, seed=5)
    g = torch.Generator().manual_seed(0)
    ue, ie = torch.randn(U, d, generator=g), torch.randn(I, d, generator=g)
    results = [evaluate_embeddings(ue, ie, test, [train, valid], ks=(5, 20), block_size=b)
               for b in (1, 3, U, 4096)]
    for r in results[1:]:
        assert r.keys() == results[0].keys()
        for key in r:
            assert r[key] == pytest.approx(results[0][key], abs=1e-12)
    want = reference((ue @ ie.T).numpy(), test, [train, valid], (5, 20))
    for key in want:
        assert results[0][key] == pytest.approx(want[key], abs=1e-12)


def test_errors_name_the_problem():
    target = csr([[0, 1]], (2, 3))
    with pytest.raises(ValueError, match="valid choices"):
        evaluate_ranking(lambda u: torch.zeros(len(u), 3), target, metrics=("auc",))
    with pytest.raises(ValueError, match="shape"):
        evaluate_ranking(lambda u: torch.zeros(len(u), 4), target)
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(lambda u: torch.full((len(u), 3), float("nan")), target)
    with pytest.raises(ValueError, match="exclude matrix has shape"):
        evaluate_ranking(lambda u: torch.zeros(len(u), 3), target, [csr([], (3, 3))])


def test_no_counted_users():
    got = evaluate_ranking(lambda u: torch.zeros(len(u), 3), csr([], (2, 3)), ks=(5,))
    assert got["num_users"] == 0 and got["recall@5"] == 0.0
