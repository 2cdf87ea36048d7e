import numpy as np
import pytest
import torch

from cptpp.recsys.sampling import NegativeSampler, bpr_batches, num_bpr_batches


def dense_pairs(num_users, num_items, density, seed):
    """Random (user, item) pairs with every user keeping at least one free item."""
    rng = np.random.default_rng(seed)
    adj = rng.random((num_users, num_items)) < density
    for u in range(num_users):  # leave exactly one free item for a few users (hard case)
        if u % 5 == 0:
            adj[u] = True
            adj[u, rng.integers(num_items)] = False
        if adj[u].all():
            adj[u, 0] = False
    return np.argwhere(adj).astype(np.int64), adj


@pytest.mark.parametrize("bitmap_max_bytes", [0, 2**20])  # searchsorted / bitmap membership
def test_is_positive_matches_dense_adjacency(bitmap_max_bytes):
    pairs, adj = dense_pairs(13, 11, 0.4, seed=4)  # 143 bits: last byte partly used
    s = NegativeSampler(pairs, 13, 11, bitmap_max_bytes=bitmap_max_bytes)
    assert (s.bitmap is None) == (bitmap_max_bytes == 0)
    u, i = torch.meshgrid(torch.arange(13), torch.arange(11), indexing="ij")
    np.testing.assert_array_equal(s.is_positive(u, i).numpy(), adj)
    empty = NegativeSampler(np.zeros((0, 2)), 2, 3, bitmap_max_bytes=bitmap_max_bytes)
    assert not empty.is_positive(torch.tensor([0, 1]), torch.tensor([2, 0])).any()


@pytest.mark.parametrize("max_rounds,bitmap_max_bytes", [(0, 2**20), (2, 0), (16, 0), (16, 2**20)])
def test_never_returns_a_positive(max_rounds, bitmap_max_bytes):
    pairs, adj = dense_pairs(20, 15, 0.7, seed=0)
    s = NegativeSampler(pairs, 20, 15, max_rounds=max_rounds, bitmap_max_bytes=bitmap_max_bytes)
    users = torch.arange(20).repeat(5000)
    g = torch.Generator().manual_seed(1)
    neg = s.sample(users, generator=g).numpy()
    assert neg.shape == (100_000,)
    assert ((neg >= 0) & (neg < 15)).all()
    assert not adj[users.numpy(), neg].any()
    # every free item of every user shows up (no item is unreachable)
    seen = np.zeros_like(adj)
    seen[users.numpy(), neg] = True
    assert (seen == ~adj).all()


def test_rank_lookup_enumerates_free_items_in_order():
    pairs, adj = dense_pairs(12, 9, 0.5, seed=3)
    s = NegativeSampler(pairs, 12, 9)
    for u in range(12):
        free = np.flatnonzero(~adj[u])
        j = torch.arange(len(free), dtype=torch.float64)
        u01 = (j + 0.5) / len(free)
        got = s._nth_negative(torch.full((len(free),), u), u01).numpy()
        np.testing.assert_array_equal(got, free)


@pytest.mark.parametrize("max_rounds", [0, 16])
@pytest.mark.parametrize("bitmap_max_bytes", [0, 2**20])
def test_uniform_over_non_positives(max_rounds, bitmap_max_bytes):
    num_items = 30
    positives = [0, 3, 4, 5, 11, 12, 13, 14, 20, 21, 22, 23, 24, 25, 26, 29]  # 14 free items
    pairs = np.array([[1, i] for i in positives] + [[0, 7]])
    s = NegativeSampler(pairs, 2, num_items, max_rounds=max_rounds,
                        bitmap_max_bytes=bitmap_max_bytes)
    n = 70_000
    neg = s.sample(torch.ones(n, dtype=torch.int64), torch.Generator().manual_seed(0)).numpy()
    counts = np.bincount(neg, minlength=num_items)
    free = np.setdiff1d(np.arange(num_items), positives)
    assert counts[positives].sum() == 0
    expected = n / len(free)
    chi2 = ((counts[free] - expected) ** 2 / expected).sum()
    # 13 degrees of freedom: mean 13, P(chi2 > 45) < 1e-4. A sampler that favoured low ids
    # by even 5% on half the items would exceed this by far.
    assert chi2 < 45, chi2


def test_deterministic_given_generator_and_num_negatives_shape():
    pairs, _ = dense_pairs(10, 40, 0.3, seed=1)
    s = NegativeSampler(pairs, 10, 40)
    users = torch.arange(10)
    a = s.sample(users, torch.Generator().manual_seed(5), num_negatives=7)
    b = s.sample(users, torch.Generator().manual_seed(5), num_negatives=7)
    c = s.sample(users, torch.Generator().manual_seed(6), num_negatives=7)
    assert a.shape == (10, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_user_with_every_item_is_an_error():
    pairs = np.array([[0, 0], [0, 1], [0, 2], [1, 0]])
    s = NegativeSampler(pairs, 2, 3)
    assert s.sample(torch.tensor([1, 1])).tolist() != []
    with pytest.raises(ValueError, match=r"users \[0\] interacted with all 3 items"):
        s.sample(torch.tensor([1, 0]))


def test_bad_ids_are_errors():
    with pytest.raises(ValueError, match="outside"):
        NegativeSampler(np.array([[0, 5]]), 1, 5)
    s = NegativeSampler(np.array([[0, 1]]), 1, 5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        s.sample(torch.tensor([1]))


def epoch(pairs, s, seed, world_size, batch_size, drop_last):
    out = []
    for rank in range(world_size):
        g = torch.Generator().manual_seed(seed)  # same state on every rank, as DDP requires
        out.append(list(bpr_batches(torch.as_tensor(pairs), batch_size, s, g, rank=rank,
                                    world_size=world_size, drop_last=drop_last)))
    return out


def pair_counts(batches_per_rank, num_items):
    keys = [u * num_items + p for rank in batches_per_rank for u, p, _ in rank]
    return np.bincount(torch.cat(keys).numpy())


@pytest.mark.parametrize("n_users", [30, 31])
def test_sharding_covers_each_pair_once(n_users):
    rng = np.random.default_rng(2)
    pairs = np.unique(np.stack([rng.integers(0, n_users, 200), rng.integers(0, 50, 200)], 1), axis=0)
    n = len(pairs)
    s = NegativeSampler(pairs, n_users, 50)
    world = 3
    ranks = epoch(pairs, s, seed=9, world_size=world, batch_size=16, drop_last=False)
    assert {len(r) for r in ranks} == {num_bpr_batches(n, 16, world)}
    counts = pair_counts(ranks, 50)
    keys = pairs[:, 0] * 50 + pairs[:, 1]
    counts = np.pad(counts, (0, keys.max() + 1 - len(counts)))
    assert counts[keys].min() == 1 and counts.sum() == n + (-n % world)  # padding by wrapping
    assert (counts[keys] == 2).sum() == (-n % world)
    # negatives are never positives, and every (user, pos) is a real training pair
    adj = np.zeros((n_users, 50), bool)
    adj[pairs[:, 0], pairs[:, 1]] = True
    for r in ranks:
        for u, p, q in r:
            assert adj[u.numpy(), p.numpy()].all() and not adj[u.numpy(), q.numpy()].any()


def test_sharding_exactly_once_when_divisible_and_drop_last():
    pairs = np.stack([np.arange(60) % 7, np.arange(60)], 1)  # item id = pair index
    s = NegativeSampler(pairs, 7, 60)
    ranks = epoch(pairs, s, seed=0, world_size=4, batch_size=8, drop_last=False)
    used = np.sort(torch.cat([p for r in ranks for _, p, _ in r]).numpy())
    np.testing.assert_array_equal(used, np.arange(60))
    # 60 pairs / 4 ranks = 15 each -> with drop_last one full batch of 8 per rank, disjoint
    ranks = epoch(pairs, s, seed=0, world_size=4, batch_size=8, drop_last=True)
    assert [len(r) for r in ranks] == [1] * 4 == [num_bpr_batches(60, 8, 4, True)] * 4
    used = torch.cat([p for r in ranks for _, p, _ in r]).numpy()
    assert len(used) == 32 and len(np.unique(used)) == 32


def test_epoch_is_deterministic_and_shuffled():
    pairs = np.stack([np.arange(100) % 10, np.arange(100)], 1)
    s = NegativeSampler(pairs, 10, 100)
    a = epoch(pairs, s, seed=4, world_size=2, batch_size=32, drop_last=False)
    b = epoch(pairs, s, seed=4, world_size=2, batch_size=32, drop_last=False)
    c = epoch(pairs, s, seed=5, world_size=2, batch_size=32, drop_last=False)
    flat = lambda e: torch.cat([torch.cat(t) for r in e for t in r])  # noqa: E731
    assert torch.equal(flat(a), flat(b))
    assert not torch.equal(flat(a), flat(c))
    assert not torch.equal(a[0][0][1], torch.arange(0, 64, 2)[:32])  # not in file order
    # ranks draw different negatives for their (different) users
    assert not torch.equal(a[0][0][2], a[1][0][2])
