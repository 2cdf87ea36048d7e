"""cptpp.train.params: parameter counts and the trained-state round trip on hand-made modules."""
import pytest
import torch
from torch import nn

from cptpp.config import ConfigError
from cptpp.train.params import (ParamCount, count_parameters, load_trained, load_trained_state, save_trained,
                                trained_state)


class Adapted(nn.Module):
    """A frozen 'base' (embedding 10x4 tied to an output layer, Linear 4->3) with an added adapter and head."""

    def __init__(self):
        super().__init__()
        self.base = nn.Module()
        self.base.emb = nn.Embedding(10, 4)                    # 40
        self.base.proj = nn.Linear(4, 3)                       # 12 + 3
        self.base.out = nn.Linear(4, 10, bias=False)
        self.base.out.weight = self.base.emb.weight            # tied: counted once
        self.base.proj.adapter = nn.Linear(3, 3)               # 9 + 3, added inside the base
        self.head = nn.Linear(3, 2)                            # 6 + 2
        self.base.requires_grad_(False)
        self.base.proj.adapter.requires_grad_(True)

    def forward(self, ids):
        h = self.base.proj(self.base.emb(ids))
        return self.head(h + self.base.proj.adapter(h)).sum(1)


def test_count_parameters_matches_a_hand_count():
    model = Adapted()
    count = count_parameters(model, model.base, added=["adapter."])
    assert count == ParamCount(trainable=12 + 8, base=40 + 15)
    assert count.percent == pytest.approx(100 * 20 / 55)
    # without naming the base or what was added, every parameter is "base"
    assert count_parameters(model) == ParamCount(trainable=20, base=40 + 15 + 12 + 8)


def test_trained_state_holds_only_the_trainable_tensors_as_copies():
    model = Adapted()
    state = trained_state(model)
    assert sorted(state) == ["base.proj.adapter.bias", "base.proj.adapter.weight", "head.bias", "head.weight"]
    with torch.no_grad():
        model.head.weight.add_(1.0)
    assert not torch.equal(state["head.weight"], model.head.weight)


def test_save_load_round_trip_restores_outputs(tmp_path):
    torch.manual_seed(0)
    trained = Adapted()
    with torch.no_grad():                                       # "training" moved the trainable tensors
        for p in trained.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    fresh = Adapted()
    fresh.base.load_state_dict(trained.base.state_dict())        # same base weights, untrained method
    ids = torch.tensor([[1, 2, 3], [4, 5, 9]])
    assert not torch.allclose(fresh(ids), trained(ids))
    save_trained(tmp_path / "state.pt", trained)
    load_trained(fresh, tmp_path / "state.pt")
    torch.testing.assert_close(fresh(ids), trained(ids), rtol=0, atol=0)


def test_load_errors_name_the_file_and_the_key():
    model = Adapted()
    state = trained_state(model)
    bad = dict(state, **{"head.weight": torch.zeros(5, 3)})
    with pytest.raises(ConfigError, match=r"run\.pt: head\.weight has shape \(5, 3\), model expects \(2, 3\)"):
        load_trained_state(model, bad, "run.pt")
    before = model.base.proj.adapter.weight.clone()
    # the adapter comes first in the state, the bad shape last: still nothing may be copied
    bad = dict(state, **{"base.proj.adapter.weight": torch.ones(3, 3), "head.bias": torch.zeros(4)})
    with pytest.raises(ConfigError, match="head.bias"):
        load_trained_state(model, bad)
    assert torch.equal(model.base.proj.adapter.weight, before)
    missing = {k: v for k, v in state.items() if k != "head.bias"}
    with pytest.raises(ConfigError, match=r"missing \['head\.bias'\], unexpected \[\]"):
        load_trained_state(model, missing)
    with pytest.raises(ConfigError, match=r"unexpected \['base\.proj\.weight'\]"):
        load_trained_state(model, dict(state, **{"base.proj.weight": torch.zeros(3, 4)}))
