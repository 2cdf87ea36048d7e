"""The shared loop: resume reproduces an uninterrupted run; the test split is read once, at the best epoch."""
import json

import pytest
import torch

from cptpp.config import ConfigError
from cptpp.recsys.task import RecConfig, RecTask
from cptpp.train import TrainConfig, fit, seed_everything


class Killed(Exception):
    pass


class KillAfter:
    """Wraps a task and raises when epoch ``kill_at`` starts, as a killed process would stop."""

    def __init__(self, task, kill_at):
        self.task, self.kill_at, self.model, self.metric = task, kill_at, task.model, task.metric

    def batches(self, epoch, gen):
        if epoch == self.kill_at:
            raise Killed
        return self.task.batches(epoch, gen)

    def loss(self, batch):
        return self.task.loss(batch)

    def evaluate(self, split):
        return self.task.evaluate(split)


@pytest.mark.parametrize("model", ["lightgcn", "sgl"])
def test_resume_equals_uninterrupted(tiny_data, tmp_path, model):
    rec = RecConfig(model=model, layers=2, batch_size=32, dim=8)
    base = dict(epochs=5, lr=0.01, patience=0, progress=False, seed=3)
    seed_everything(3)  # model initialization, as the CLI does before building the task
    full = fit(RecTask(tiny_data, rec), TrainConfig(out=str(tmp_path / "full"), **base))

    seed_everything(3)
    with pytest.raises(Killed):
        fit(KillAfter(RecTask(tiny_data, rec), 4), TrainConfig(out=str(tmp_path / "cut"), **base))
    assert not (tmp_path / "cut" / "results.json").exists()
    seed_everything(99)  # the resumed process starts from a different state: the checkpoint must win
    task = RecTask(tiny_data, rec)
    resumed = fit(task, TrainConfig(out=str(tmp_path / "cut"), resume=True, **base))

    assert resumed["valid"] == full["valid"] and resumed["test"] == full["test"]
    assert resumed["best_epoch"] == full["best_epoch"]
    a = torch.load(tmp_path / "full" / "best.pt")
    b = torch.load(tmp_path / "cut" / "best.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4, 5]
    full_losses = [json.loads(x)["loss"] for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [json.loads(x)["loss"] for x in lines] == full_losses


class Scripted:
    """A task whose validation metric follows a script; records what it was asked."""

    metric = "recall@20"

    def __init__(self, script):
        self.model = torch.nn.Linear(1, 1)
        self.script, self.calls, self.epoch = script, [], 0

    def batches(self, epoch, gen):
        self.epoch = epoch
        return [torch.ones(1, 1)]

    def loss(self, batch):
        return self.model(batch).sum() * 0

    def evaluate(self, split):
        self.calls.append(split)
        if split == "valid":
            with torch.no_grad():  # stamp the epoch into the weights so the restore is visible
                self.model.bias.fill_(self.epoch)
            return {"recall@20": self.script[self.epoch - 1]}
        return {"recall@20": float(self.model.bias)}


def test_early_stopping_restores_best_and_tests_once():
    task = Scripted([0.1, 0.5, 0.3, 0.2, 0.4, 0.9])
    res = fit(task, TrainConfig(epochs=6, patience=2, progress=False))
    assert res["best_epoch"] == 2 and res["stopped_early"] and res["epochs_run"] == 4
    assert task.calls.count("test") == 1 and task.calls[-1] == "test"
    assert res["test"]["recall@20"] == 2.0  # the model state of epoch 2 was restored


def test_eval_every_zero_never_validates_and_tests_the_last_epoch():
    task = Scripted([0.9, 0.1, 0.1])
    task.model.bias.data.fill_(-1.0)
    original_batches = task.batches

    def batches(epoch, gen):  # stamp the epoch here: evaluate("valid") must never run
        with torch.no_grad():
            task.model.bias.fill_(epoch)
        return original_batches(epoch, gen)

    task.batches = batches
    res = fit(task, TrainConfig(epochs=3, eval_every=0, patience=1, progress=False))
    assert task.calls == ["test"] and res["best_epoch"] == 3 and res["epochs_run"] == 3
    assert res["test"]["recall@20"] == 3.0 and res["valid"] == {}


def test_existing_run_dir_needs_resume(tmp_path):
    fit(Scripted([0.1]), TrainConfig(epochs=1, out=str(tmp_path), progress=False))
    with pytest.raises(ConfigError, match="--resume"):
        fit(Scripted([0.1]), TrainConfig(epochs=1, out=str(tmp_path), progress=False))


def test_unknown_metric_lists_available():
    with pytest.raises(ConfigError, match="available: recall@20"):
        fit(Scripted([0.1]), TrainConfig(epochs=1, metric="ndcg@20", progress=False))
