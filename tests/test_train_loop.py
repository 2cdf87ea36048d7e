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
    rec = RecConfig(recommender=model, layers=2, batch_size=32, dim=8)
    # the schedule resumes from the checkpoint's step, with the configured (not the saved) base LR
    base = dict(epochs=5, lr=0.01, patience=0, progress=False, seed=3, schedule="cosine", warmup_steps=4)
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


# ---------------------------------------------------------------- schedules, budgets, param groups, metric

def test_lr_at_hand_computed():
    from cptpp.train.schedule import lr_at

    # warmup 4: lr * (step + 1) / 4, whatever the schedule
    assert [lr_at(2.0, s, 0.0, schedule="cosine", warmup_steps=4) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert lr_at(2.0, 10, 0.25, schedule="linear") == 1.5
    assert lr_at(2.0, 10, 0.5, schedule="cosine") == pytest.approx(1.0)
    assert lr_at(2.0, 10, 0.25, schedule="cosine") == pytest.approx(1 + 2 ** -0.5)
    # constant with a cooldown over the last 40%: flat until progress 0.6, then linear to 0
    assert lr_at(2.0, 10, 0.6, cooldown=0.4) == 2.0
    assert lr_at(2.0, 10, 0.8, cooldown=0.4) == pytest.approx(1.0)
    assert lr_at(2.0, 10, 1.0, cooldown=0.4) == 0.0


class Probe:
    """Two scalar weights ``a``, ``b`` and loss ``a + b`` (gradient 1 each): with SGD, each step moves
    a weight by exactly its group's LR, so the applied LRs can be read off the weights."""

    metric = "neg_a"

    def __init__(self, batches_per_epoch=1, groups=None):
        self.model = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.zeros(())),
                                             "b": torch.nn.Parameter(torch.zeros(()))})
        self.n, self.groups, self.a_after = batches_per_epoch, groups, []

    def batches(self, epoch, gen):
        return [None] * self.n

    def loss(self, batch):
        self.a_after.append(float(self.model["a"].detach()))  # the weight before this step
        return self.model["a"] + self.model["b"]

    def evaluate(self, split):
        return {"neg_a": -float(self.model["a"])}

    def applied_lrs(self):
        a = self.a_after + [float(self.model["a"].detach())]
        return [round(x - y, 6) for x, y in zip(a, a[1:])]


def test_fit_applies_the_schedule_at_every_step():
    task = Probe()
    fit(task, TrainConfig(epochs=5, lr=1.0, optimizer="sgd", schedule="linear", warmup_steps=2, eval_every=0,
                          progress=False))
    # steps 0, 1 warm up (1/2, 2/2); then lr * (1 - progress), progress = epochs done / 5 = 2/5, 3/5, 4/5
    assert task.applied_lrs() == [0.5, 1.0, 0.6, 0.4, 0.2]

    task = Probe(batches_per_epoch=3)
    res = fit(task, TrainConfig(epochs=0, max_steps=4, lr=1.0, optimizer="sgd", schedule="cosine", eval_every=0,
                                progress=False))
    # progress = step / 4: (1 + cos(pi * s / 4)) / 2
    assert task.applied_lrs() == [1.0, 0.853553, 0.5, 0.146447]
    assert res["stopped"] == "max_steps" and res["steps"] == 4

    task = Probe(batches_per_epoch=4)
    fit(task, TrainConfig(epochs=1, lr=1.0, optimizer="sgd", cooldown=0.5, eval_every=0, progress=False))
    # constant, then linear to 0 over the last half of the epoch: progress 0, 1/4, 2/4 (not past 1/2), 3/4
    assert task.applied_lrs() == [1.0, 1.0, 1.0, 0.5]


def test_param_groups_keep_their_own_options_and_lr_under_the_schedule():
    task = Probe()
    a, b = task.model["a"], task.model["b"]
    task.param_groups = lambda: [{"params": [a], "lr": 0.5}, {"params": [b]}]
    fit(task, TrainConfig(epochs=3, lr=1.0, optimizer="sgd", warmup_steps=2, eval_every=0, progress=False))
    # each group warms up to its own LR: a 0.25, 0.5, 0.5; b 0.5, 1.0, 1.0
    assert task.applied_lrs() == [0.25, 0.5, 0.5] and float(b) == pytest.approx(-2.5)

    # weight decay per group: zero gradient, so only the decay moves a weight (w <- w * (1 - lr * wd))
    model = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.ones(())), "b": torch.nn.Parameter(torch.ones(()))})
    task = Scripted([0.1])
    task.model = model
    task.loss = lambda batch: (model["a"] + model["b"]) * 0
    task.evaluate = lambda split: {"recall@20": 0.0}
    task.param_groups = lambda: [{"params": [model["a"]], "weight_decay": 0.0}, {"params": [model["b"]]}]
    fit(task, TrainConfig(epochs=1, lr=1.0, weight_decay=0.1, optimizer="sgd", eval_every=0, progress=False))
    assert float(model["a"]) == 1.0 and float(model["b"]) == pytest.approx(0.9)

    task.param_groups = lambda: [{"params": [model["a"]]}]
    with pytest.raises(ConfigError, match="1 tensors, but the model has 2 trainable"):
        fit(task, TrainConfig(epochs=1, eval_every=0, progress=False))


def test_metric_comes_from_the_task_unless_configured(tiny_data):
    class TwoMetrics(Scripted):
        metric = "acc"

        def evaluate(self, split):
            return {"acc": [0.1, 0.5, 0.2][self.epoch - 1], "loss": [0.9, 0.1, 0.95][self.epoch - 1]}

    res = fit(TwoMetrics([]), TrainConfig(epochs=3, patience=0, progress=False))
    assert res["metric"] == "acc" and res["best_epoch"] == 2
    res = fit(TwoMetrics([]), TrainConfig(epochs=3, patience=0, metric="loss", progress=False))
    assert res["metric"] == "loss" and res["best_epoch"] == 3

    class NoMetric(Scripted):
        metric = None

    with pytest.raises(ConfigError, match="no `metric` attribute"):
        fit(NoMetric([0.1]), TrainConfig(epochs=1, progress=False))
    assert RecTask(tiny_data, RecConfig(dim=4)).metric == "recall@20"
    assert RecTask(tiny_data, RecConfig(dim=4, ks=[5, 10])).metric == "recall@10"


def _same_run(a_dir, b_dir, a, b):
    assert b["valid"] == a["valid"] and b["test"] == a["test"] and b["best_epoch"] == a["best_epoch"]
    best_a, best_b = torch.load(a_dir / "best.pt"), torch.load(b_dir / "best.pt")
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    losses = [[json.loads(x)["loss"] for x in (d / "metrics.jsonl").read_text().splitlines()] for d in (a_dir, b_dir)]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_step_budget_stops_inside_an_epoch_and_resume_finishes_it(tiny_data, tmp_path):
    rec = RecConfig(recommender="sgl", layers=2, batch_size=32, dim=8)  # 6 batches per epoch; SGL redraws its views
    base = dict(epochs=3, lr=0.01, patience=0, progress=False, seed=3)
    seed_everything(3)
    full = fit(RecTask(tiny_data, rec), TrainConfig(out=str(tmp_path / "full"), **base))
    assert full["stopped"] == "epochs" and full["steps"] == 18

    seed_everything(3)
    cut = fit(RecTask(tiny_data, rec), TrainConfig(out=str(tmp_path / "cut"), max_steps=8, **base))
    assert cut["stopped"] == "max_steps" and cut["steps"] == 8 and cut["epochs_run"] == 1  # epoch 2 unfinished
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 1
    seed_everything(99)
    resumed = fit(RecTask(tiny_data, rec), TrainConfig(out=str(tmp_path / "cut"), resume=True, **base))
    assert resumed["steps"] == 18 and resumed["stopped"] == "epochs"
    _same_run(tmp_path / "full", tmp_path / "cut", full, resumed)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_time_budget_stops_cleanly_and_resume_matches(tiny_data, tmp_path, monkeypatch):
    import cptpp.train.loop as loop

    clock = FakeClock()
    monkeypatch.setattr(loop, "time", clock)
    rec = RecConfig(recommender="lightgcn", layers=2, batch_size=32, dim=8)
    base = dict(epochs=3, lr=0.01, patience=0, progress=False, seed=3)

    class Ticking(RecTask):  # every step takes one "second"
        def loss(self, batch):
            clock.now += 1.0
            return super().loss(batch)

    seed_everything(3)
    full = fit(Ticking(tiny_data, rec), TrainConfig(out=str(tmp_path / "full"), **base))
    seed_everything(3)
    cut = fit(Ticking(tiny_data, rec), TrainConfig(out=str(tmp_path / "cut"), max_minutes=10 / 60, **base))
    assert cut["stopped"] == "max_minutes" and cut["steps"] == 10 and cut["seconds"] >= 10
    seed_everything(99)
    resumed = fit(Ticking(tiny_data, rec), TrainConfig(out=str(tmp_path / "cut"), resume=True, **base))
    assert resumed["steps"] == 18
    _same_run(tmp_path / "full", tmp_path / "cut", full, resumed)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="unbounded"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="cooldown.*schedule=constant"):
        TrainConfig(schedule="cosine", cooldown=0.2)
    with pytest.raises(ConfigError, match="schedule='step' is not valid; choose one of: constant, linear, cosine"):
        TrainConfig(schedule="step")
    with pytest.raises(ConfigError, match="betas"):
        TrainConfig(betas=(0.9, 1.0))


def test_a_limit_before_any_validation_tests_the_trained_model():
    task = Probe(batches_per_epoch=5)
    res = fit(task, TrainConfig(epochs=2, max_steps=3, lr=1.0, optimizer="sgd", progress=False))
    assert res["stopped"] == "max_steps" and res["epochs_run"] == 0 and res["valid"] == {}
    assert res["test"] == {"neg_a": 3.0}  # a = -3 after three steps, not the initial 0


def test_defaults_live_in_the_config_dataclasses():
    from cptpp.cli import build_parser
    from cptpp.code.tasks import CodeTaskConfig
    from cptpp.recsys.config import PromptTuneConfig, RankingConfig, RecTrainConfig

    # recommenders keep SELFRec's seed (so recorded results reproduce); the loop itself is neutral
    assert RecTrainConfig().seed == 2020 and TrainConfig().seed == 0 and TrainConfig().metric is None
    args = build_parser().parse_args(["code-tune", "--task", "translation", "--method", "lora", "--model", "m"])
    assert (args.max_source, args.max_target, args.batch_size) == (
        CodeTaskConfig.max_source_tokens, CodeTaskConfig.max_target_tokens, CodeTaskConfig.batch_size) == (400, 128, 8)
    for cls in (RecConfig, PromptTuneConfig):  # one declaration (and one check) of the shared fields
        assert issubclass(cls, RankingConfig)
        with pytest.raises(ConfigError, match="ks="):
            cls(ks=[0])
