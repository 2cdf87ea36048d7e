"""Bad inputs and faults that used to give silent wrong results, lost files or tracebacks (issue 18).

Each case runs the CLI in-process (``cptpp.cli.main``) where the behaviour is the CLI's and checks
the exit code, the message (names the file / key) and that nothing was written that should not be.
"""
from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pytest

from cptpp.cli import main
from cptpp.config import ConfigError, check_range
from cptpp.recsys.datasets import MalformedLineError, load_dataset, read_interactions

TINY = ["--dim", "4", "--batch-size", "64", "--no-progress"]


@pytest.fixture(autouse=True)
def _isolated_data_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "cache"))


def _train(csv, out, *extra):
    return main(["train", "--dataset", str(csv), "--out", str(out), *TINY, *extra])


def _error_lines(err: str) -> list[str]:
    """The error lines of a command's stderr (notes and progress lines are not errors)."""
    return [line for line in err.splitlines() if line.startswith("cptpp ") and ": error: " in line]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------- 1. ratings files


def test_headerless_file_with_letter_ids_keeps_its_first_row(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("user1,item55,5\nuser2,item3,4\nuser1,item3,2\n")
    raw = read_interactions(path)
    assert raw.header is None
    assert list(zip(raw.users.tolist(), raw.items.tolist())) == [("user1", "item55"), ("user2", "item3"),
                                                               ("user1", "item3")]


@pytest.mark.parametrize("text,header", [
    ("userId,movieId,rating,timestamp\n1,2,5,100\n2,3,4,101\n", "userId,movieId,rating,timestamp"),
    ("who\twhat\tstars\nA1\tB7\t5\nA2\tB7\t4\n", "who\twhat\tstars"),  # rating field is text
    ("u,i\n1,2\n3,4\n", "u,i"),                                          # ids are text, then numbers
])
def test_header_is_skipped_with_a_note(tmp_path, text, header):
    path = tmp_path / "r.txt"
    path.write_text(text)
    raw = read_interactions(path)
    assert raw.header == header and len(raw) == 2
    data = load_dataset(str(path), rating_threshold="all", split_ratios=(1.0, 0.0, 0.0))
    assert any(repr(header) in n and "header" in n for n in data.notes)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_non_finite_rating_is_a_malformed_line(tmp_path, bad):
    path = tmp_path / "r.csv"
    path.write_text(f"1,2,5\n1,3,{bad}\n2,3,4\n")
    with pytest.raises(MalformedLineError) as e:
        read_interactions(path)
    assert f"{path}:2:" in str(e.value) and "finite" in str(e.value)
    assert main(["train", "--dataset", str(path), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert not (tmp_path / "run").exists()


def test_huge_integer_ids_are_not_wrapped(tmp_path):
    """Ids past 2**53 do not survive float64 (or int64): they stay distinct, as text."""
    path = tmp_path / "r.tsv"
    path.write_text("1e30\t1\n99999999999999999999999\t2\n99999999999999999999998\t2\n")
    raw = read_interactions(path)
    assert len(set(raw.users.tolist())) == 3


def test_rating_threshold_semantics(tmp_path):
    path = tmp_path / "r.csv"
    rows = [f"u{u},i{i},{r}" for u in range(6) for i, r in enumerate([-1, 0, 1, 3, 4, 5])]
    path.write_text("\n".join(rows) + "\n")

    def kept(**kw):
        d = load_dataset(str(path), split_ratios=(1.0, 0.0, 0.0), **kw)
        return len(d.train), d

    n_all, d_all = kept(rating_threshold="all")
    assert n_all == 36 and d_all.rating_threshold == "all"       # every rating, negatives included
    assert kept(rating_threshold=0)[0] == 30                       # rating >= 0
    n_default, d = kept()                                          # a rating file's default: >= 4
    assert n_default == 12 and d.rating_threshold == 4.0
    assert any("rating >= 4" in n and "default" in n for n in d.notes)
    with pytest.raises(ConfigError, match="rating_threshold"):
        load_dataset(str(path), rating_threshold="some")
    with pytest.raises(ConfigError, match="rating_threshold"):
        load_dataset(str(path), rating_threshold=float("nan"))


def test_movielens_records_its_default_threshold(monkeypatch):
    from conftest import mirror_dir

    if mirror_dir("recsys", "ml-100k") is None:
        pytest.skip("ml-100k is not in $CPTPP_DATA_MIRROR")
    d = load_dataset("ml-100k", progress=False)
    assert d.rating_threshold == 4.0 and sum(map(len, (d.train, d.valid, d.test))) == 55_375


def test_config_json_records_the_threshold_applied(ratings_csv, tmp_path, capsys):
    assert _train(ratings_csv, tmp_path / "a", "--epochs", "1", "--recommender", "mf", "--layers", "0") == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data"]["rating_threshold"] == 4.0
    assert "rating >= 4" in capsys.readouterr().err                # the default is announced
    assert _train(ratings_csv, tmp_path / "b", "--epochs", "1", "--recommender", "mf", "--layers", "0",
                  "--rating-threshold", "all") == 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["data"]["rating_threshold"] == "all"


# ------------------------------------------------------------------------------- 2. resume safety


@pytest.fixture
def finished_run(ratings_csv, tmp_path):
    out = tmp_path / "run"
    assert _train(ratings_csv, out, "--recommender", "lightgcn", "--epochs", "1") == 0
    return out


def test_resume_with_other_settings_is_refused(ratings_csv, finished_run, capsys):
    before = _snapshot(finished_run)
    capsys.readouterr()
    assert _train(ratings_csv, finished_run, "--resume", "--recommender", "mf", "--layers", "0", "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert "model.recommender: \"lightgcn\" -> \"mf\"" in err and str(finished_run) in err
    assert "Traceback" not in err and _snapshot(finished_run) == before
    # a different --dim used to be torch's `size mismatch` traceback
    assert _train(ratings_csv, finished_run, "--resume", "--epochs", "2", "--dim", "8") == 2
    assert "model.dim: 4 -> 8" in capsys.readouterr().err
    assert _snapshot(finished_run) == before
    # more epochs (and patience, progress) may change: the run continues
    assert _train(ratings_csv, finished_run, "--resume", "--epochs", "2", "--patience", "3") == 0
    assert len((finished_run / "metrics.jsonl").read_text().splitlines()) == 2
    assert json.loads((finished_run / "config.json").read_text())["train"]["epochs"] == 2


def test_resume_takes_the_saved_settings_as_defaults(ratings_csv, finished_run, capsys):
    """`--out OUT --resume` continues the run as it was run (dim 4, lightgcn), without repeating options."""
    assert main(["train", "--out", str(finished_run), "--resume", "--epochs", "2", "--no-progress"]) == 0
    cfg = json.loads((finished_run / "config.json").read_text())
    assert (cfg["model"]["dim"], cfg["model"]["recommender"], cfg["train"]["epochs"]) == (4, "lightgcn", 2)
    assert cfg["data"]["dataset"] == str(ratings_csv)


def test_resume_on_another_dataset_is_refused(ratings_csv, finished_run, tmp_path, capsys):
    other = tmp_path / "other.csv"
    other.write_text(ratings_csv.read_text().replace("u1,", "u99,"))
    assert _train(other, finished_run, "--resume", "--epochs", "2") == 2
    err = capsys.readouterr().err
    assert "data.dataset" in err and "Traceback" not in err


def test_resume_with_a_mistyped_out_is_an_error(ratings_csv, tmp_path, capsys):
    out = tmp_path / "rnu"
    assert _train(ratings_csv, out, "--resume", "--epochs", "1") == 2
    assert f"nothing to resume in {out}" in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_not_a_run_folder_is_never_written(ratings_csv, tmp_path, capsys):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "t5"}')  # e.g. a model folder
    (folder / "notes.txt").write_text("mine")
    before = _snapshot(folder)
    assert _train(ratings_csv, folder, "--epochs", "1") == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "not a cptpp run" in err
    assert _snapshot(folder) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _train(ratings_csv, empty, "--epochs", "1", "--recommender", "mf", "--layers", "0") == 0


# ------------------------------------------------------------------------------- 3. corrupt files


@pytest.mark.parametrize("name,damage", [
    ("checkpoint.pt", "truncate"), ("checkpoint.pt", "empty"), ("checkpoint.pt", "garbage"),
    ("best.pt", "truncate"), ("best.pt", "empty"),
])
def test_corrupt_checkpoint_is_one_line_naming_the_file(ratings_csv, finished_run, capsys, name, damage):
    path = finished_run / name
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": random.Random(0).randbytes(300)}[damage])
    capsys.readouterr()
    assert _train(ratings_csv, finished_run, "--resume", "--epochs", "2") == 2
    err = capsys.readouterr().err
    (line,) = _error_lines(err)
    assert str(path) in line and "corrupt" in line and line == err.strip().splitlines()[-1]
    assert "weights_only" not in err and "Traceback" not in err


def test_partial_last_metrics_line_is_dropped_on_resume(ratings_csv, finished_run, capsys):
    metrics = finished_run / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"epoch": 2, "loss": 0.6')  # a writer killed mid-line
    capsys.readouterr()
    assert _train(ratings_csv, finished_run, "--resume", "--epochs", "2") == 0
    assert f"{metrics}:2: dropped a partial last line" in capsys.readouterr().err
    assert [json.loads(x)["epoch"] for x in metrics.read_text().splitlines()] == [1, 2]


def test_damaged_metrics_line_before_the_end_names_file_and_line(ratings_csv, finished_run, capsys):
    metrics = finished_run / "metrics.jsonl"
    metrics.write_text("{oops\n" + metrics.read_text())
    assert _train(ratings_csv, finished_run, "--resume", "--epochs", "2") == 2
    assert f"{metrics}:1: damaged metrics line" in capsys.readouterr().err


def test_stale_temp_files_are_removed_on_resume(ratings_csv, finished_run, capsys):
    stale = finished_run / ".checkpoint.pt.ab12cd34.tmp"
    stale.write_bytes(b"half a checkpoint")
    mine = finished_run / "keep.tmp"
    mine.write_text("not ours")
    assert _train(ratings_csv, finished_run, "--resume", "--epochs", "2") == 0
    assert not stale.exists() and mine.exists()
    assert ".checkpoint.pt.ab12cd34.tmp" in capsys.readouterr().err


@pytest.fixture
def pretrained(ratings_csv, tmp_path):
    pre = tmp_path / "pre"
    assert main(["pretrain", "--dataset", str(ratings_csv), "--recommender", "simgcl", "--epochs", "1",
                 "--out", str(pre), *TINY]) == 0
    return pre


def _prompt_tune(pre, out):
    return main(["prompt-tune", "--pretrained", str(pre), "--prompt", "historical", "--epochs", "1",
                 "--hidden", "8", "--batch-size", "64", "--no-progress", "--out", str(out)])


@pytest.mark.parametrize("text,expect", [
    ("{}", "missing key 'data'"),
    ('{"data": ', "config.json:1:"),
    ('{"data": {"dataset": "x", "learning": 1}}', "unknown key(s) learning"),
])
def test_prompt_tune_with_a_bad_pretrain_config(pretrained, tmp_path, capsys, text, expect):
    (pretrained / "config.json").write_text(text)
    capsys.readouterr()
    assert _prompt_tune(pretrained, tmp_path / "tuned") == 2
    err = capsys.readouterr().err
    assert str(pretrained / "config.json") in err and expect in err
    assert not (tmp_path / "tuned").exists()


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_prompt_tune_with_a_corrupt_encoder(pretrained, tmp_path, capsys, damage):
    enc = pretrained / "encoder.pt"
    enc.write_bytes(enc.read_bytes()[:100] if damage == "truncate" else b"")
    capsys.readouterr()
    assert _prompt_tune(pretrained, tmp_path / "tuned") == 2
    err = capsys.readouterr().err
    (line,) = _error_lines(err)
    assert str(enc) in line and "cptpp pretrain" in line and "weights_only" not in err


# ------------------------------------------------------------------------------- 4. validation up front


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_check_range_rejects_non_finite(value):
    with pytest.raises(ConfigError, match="lr=.*finite"):
        check_range("lr", value, 0, lo_open=True)
    with pytest.raises(ConfigError, match="tau=.*finite"):
        check_range("tau", value)


@pytest.mark.parametrize("args,key", [
    (["--lr", "inf"], "lr"), (["--l2", "nan"], "l2"), (["--recommender", "sgl", "--tau", "nan"], "tau"),
    (["--weight-decay", "nan"], "weight_decay"), (["--cl-weight", "inf"], "cl_weight"),
    (["--metric", "recall@7"], "metric"), (["--metric", "auc"], "metric"),
    (["--rating-threshold", "nan"], "rating_threshold"),
    (["--eval-block", "0"], "eval_block"),  # already rejected up front: kept as a guard
])
def test_bad_values_are_rejected_before_anything_is_written(ratings_csv, tmp_path, capsys, args, key):
    out = tmp_path / "run"
    assert _train(ratings_csv, out, "--epochs", "1", *args) == 2
    err = capsys.readouterr().err
    assert f"{key}=" in err and "Traceback" not in err
    assert not out.exists()


def test_metric_names_match_the_evaluator():
    from cptpp.recsys.config import RANKING_METRICS
    from cptpp.recsys.evaluation import METRICS

    assert RANKING_METRICS == METRICS


# ------------------------------------------------------------------------------- 5. cpg and UTF-8


def test_cpg_refuses_invalid_utf8_instead_of_shifting_spans(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tree_sitter_java")
    bad = b"class A {\n  // caf\xe9\n  int f() { return 1; }\n}\n"
    path = tmp_path / "A.java"
    path.write_bytes(bad)
    assert main(["cpg", str(path)]) == 2
    captured = capsys.readouterr()
    assert "not UTF-8 at byte 18 (line 2, column 9" in captured.err and captured.out == ""
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(bad)))
    assert main(["cpg", "-", "--language", "java"]) == 2
    assert "stdin: not UTF-8 at byte 18" in capsys.readouterr().err
    # valid UTF-8 with multi-byte characters: spans stay byte offsets of the file
    data = "class A {\n  // café ü\n  int f() { return 1; }\n}\n".encode()
    path.write_bytes(data)
    assert main(["cpg", str(path)]) == 0
    (ret,) = [n for n in json.loads(capsys.readouterr().out)["nodes"] if n["kind"] == "return_statement"]
    assert data[ret["bytes"][0]:ret["bytes"][1]] == b"return 1;"


# ------------------------------------------------------------------------------- the loop itself


def _toy_fit(tiny_data, out):
    from cptpp.recsys.task import RecConfig, RecTask
    from cptpp.train import TrainConfig, fit

    task = RecTask(tiny_data, RecConfig(recommender="mf", dim=4, batch_size=64), "cpu")
    return fit(task, TrainConfig(epochs=1, out=str(out), progress=False))


def test_fit_never_overwrites_run_files_of_a_folder_that_is_not_a_run(tiny_data, tmp_path):
    out = tmp_path / "folder"
    out.mkdir()
    (out / "metrics.jsonl").write_text("someone else's log\n")
    with pytest.raises(ConfigError, match="not a cptpp run.*metrics.jsonl"):
        _toy_fit(tiny_data, out)
    assert (out / "metrics.jsonl").read_text() == "someone else's log\n"
    (out / "metrics.jsonl").unlink()
    (out / "scores.pt").write_bytes(b"a pipeline's own file")  # files the loop does not write may be there
    _toy_fit(tiny_data, out)
    assert (out / "results.json").exists() and (out / "scores.pt").read_bytes() == b"a pipeline's own file"


def test_fit_resume_allows_the_tasks_own_budget_keys(tiny_data, tmp_path):
    from cptpp.recsys.task import RecConfig, RecTask
    from cptpp.train import TrainConfig, fit

    def run(steps, may_change, epochs):
        task = RecTask(tiny_data, RecConfig(recommender="mf", dim=4, batch_size=64), "cpu")
        return fit(task, TrainConfig(epochs=epochs, out=str(tmp_path / "r"), progress=False, resume=True),
                   run_config={"budget": {"steps": steps}, "other": 1}, may_change=may_change)

    run(1, (), 1)
    with pytest.raises(ConfigError, match=r"budget.steps: 1 -> 2"):
        run(2, (), 2)
    assert run(2, ("budget.steps",), 2)["epochs_run"] == 2
