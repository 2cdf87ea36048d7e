"""`cptpp search`: spaces parse or fail clearly, trials are `train` runs scored on validation, resume."""
import json

from tests.conftest import write_ratings_csv
import pytest

from cptpp.cli import main
from cptpp.config import ConfigError
from cptpp.recsys.search import parse_space

optuna = pytest.importorskip("optuna")


@pytest.fixture
def ratings_csv(tmp_path):
    return write_ratings_csv(tmp_path / "ratings.csv", users=30, items=40, per_user=10, rating=5)


def test_parse_space_kinds_and_errors():
    keys = {"lr", "tau", "layers"}
    assert parse_space("tau=choice:0.2,0.5", keys).choices == (0.2, 0.5)
    s = parse_space("--lr=logfloat:1e-4:1e-2", keys)
    assert (s.key, s.kind, s.lo, s.hi) == ("lr", "logfloat", 1e-4, 1e-2)
    assert parse_space("layers=int:1:3", keys).kind == "int"
    with pytest.raises(ConfigError, match="not a train option; valid: layers, lr, tau"):
        parse_space("learning_rate=float:0:1", keys)
    with pytest.raises(ConfigError, match="choose one of: choice, float, logfloat, int"):
        parse_space("lr=normal:0:1", keys)
    with pytest.raises(ConfigError, match="LO < HI"):
        parse_space("lr=float:1:0", keys)
    with pytest.raises(ConfigError, match="LO > 0"):
        parse_space("lr=logfloat:0:1", keys)


def _search(csv, out, *extra):
    return main(["search", "--dataset", str(csv), "--rating-threshold", "0", "--recommender", "mf", "--layers", "0",
                 "--dim", "8", "--batch-size", "64", "--epochs", "2", "--out", str(out), *extra])


def test_grid_search_scores_trials_on_validation_and_resumes(ratings_csv, tmp_path, capsys):
    out = tmp_path / "search"
    assert _search(ratings_csv, out, "--sampler", "grid", "--space", "lr=choice:0.001,0.05") == 0
    runs = sorted((out / "trials").iterdir())
    assert len(runs) == 2
    # each trial's score is its own run's best validation recall@20, and the best config is the argmax
    by_lr = {json.loads((r / "config.json").read_text())["train"]["lr"]: json.loads((r / "results.json").read_text())
             for r in runs}
    assert set(by_lr) == {0.001, 0.05}
    best = json.loads((out / "best_config.json").read_text())
    top = max(r["valid"]["recall@20"] for r in by_lr.values())
    assert by_lr[best["lr"]]["valid"]["recall@20"] == top and best["recommender"] == "mf" and "out" not in best
    table = (out / "results.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    assert len(rows) == 2 and f"| {top:.4f} |" in rows[0]
    # rerunning the same command trains nothing new
    stamps = {r: (r / "results.json").stat().st_mtime_ns for r in runs}
    capsys.readouterr()
    assert _search(ratings_csv, out, "--sampler", "grid", "--space", "lr=choice:0.001,0.05") == 2  # not --resume
    assert _search(ratings_csv, out, "--sampler", "grid", "--space", "lr=choice:0.001,0.05", "--resume") == 0
    assert "trial " not in capsys.readouterr().err
    assert {r: (r / "results.json").stat().st_mtime_ns for r in runs} == stamps


@pytest.mark.parametrize("sampler", ["tpe", "grid"])
def test_killed_trial_is_retried_with_its_values(ratings_csv, tmp_path, sampler):
    out = tmp_path / "search"
    out.mkdir()
    study = optuna.create_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}", direction="maximize")
    study.enqueue_trial({"lr": 0.02})
    if sampler == "grid":
        study.ask({"lr": optuna.distributions.CategoricalDistribution([0.02, 0.005])})  # left RUNNING: "killed"
        space = "lr=choice:0.02,0.005"
    else:
        study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
        space = "lr=logfloat:1e-3:1e-1"
    assert _search(ratings_csv, out, "--space", space, "--trials", "2", "--sampler", sampler, "--resume") == 0
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and 0.02 in [t.params["lr"] for t in done]
    if sampler == "grid":  # the killed point ran again and the rest of the grid too
        assert sorted(t.params["lr"] for t in done) == [0.005, 0.02]


def test_search_needs_out_and_a_space(ratings_csv, capsys):
    assert main(["search", "--dataset", str(ratings_csv), "--space", "lr=float:0.001:0.01"]) == 2
    assert "needs --out" in capsys.readouterr().err
