"""cptpp.train.batching: the pad rule and padding on hand-made examples."""
from types import SimpleNamespace

import torch

from cptpp.train.batching import SizedIterable, length_bucketed, pad, pad_batch, pad_token_id


def test_pad_token_id_rule_is_pad_then_eos_then_zero():
    assert pad_token_id(SimpleNamespace(pad_token_id=3, eos_token_id=7)) == 3
    assert pad_token_id(SimpleNamespace(pad_token_id=0, eos_token_id=7)) == 0      # 0 is a real pad id
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=7)) == 7
    assert pad_token_id(SimpleNamespace(pad_token_id=None, eos_token_id=None)) == 0
    assert pad_token_id(object()) == 0


def test_pad_right_and_left():
    rows = [[5, 6, 7], [8], []]
    assert pad(rows, -100).tolist() == [[5, 6, 7], [8, -100, -100], [-100, -100, -100]]
    assert pad(rows, 0, left=True).tolist() == [[5, 6, 7], [0, 0, 8], [0, 0, 0]]
    assert pad(rows, 0).dtype == torch.long
    assert pad([], 0).shape == (0, 0)


def test_pad_batch_masks_exactly_the_real_tokens():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=9)
    assert ids.tolist() == [[5, 6, 7], [8, 9, 9]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=9, left=True)
    assert ids.tolist() == [[5, 6, 7], [9, 9, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_sized_iterable_reports_its_length_and_iterates_again():
    it = SizedIterable(range(3), 3)
    assert len(it) == 3 and list(it) == [0, 1, 2] and list(it) == [0, 1, 2]


def test_length_bucketed_batches_cover_every_index_once_with_similar_lengths():
    lengths = torch.randperm(64, generator=torch.Generator().manual_seed(0)).tolist()
    batches = length_bucketed(lengths, 4, torch.Generator().manual_seed(1), pool=16)  # one pool: all 64
    assert sorted(i for b in batches for i in b) == list(range(64)) and all(len(b) == 4 for b in batches)
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) == 3 for b in batches)
    assert batches == length_bucketed(lengths, 4, torch.Generator().manual_seed(1), pool=16)
    assert batches != length_bucketed(lengths, 4, torch.Generator().manual_seed(2), pool=16)
