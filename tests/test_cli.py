"""`cptpp train` end to end on a user CSV, and its errors for bad options."""
import json

import numpy as np
import pytest

from cptpp.cli import main


@pytest.fixture
def ratings_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["user,item,rating"]
    for u in range(40):
        for i in rng.choice(60, 12, replace=False):
            rows.append(f"u{u},i{i},{rng.integers(1, 6)}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_train_end_to_end_writes_results(ratings_csv, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", str(ratings_csv), "--recommender", "lightgcn", "--epochs", "2",
               "--dim", "8", "--batch-size", "64", "--out", str(out), "--no-progress",
               "--rating-threshold", "0"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res) >= {"valid", "test", "best_epoch", "seconds_per_epoch"}
    assert 0.0 <= res["test"]["recall@20"] <= 1.0 and "ndcg@20" in res["valid"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["dim"] == 8 and cfg["train"]["epochs"] == 2
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert "recall@20" in capsys.readouterr().out


def test_config_file_and_override(ratings_csv, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"dataset": str(ratings_csv), "recommender": "mf", "layers": 0, "dim": 4,
                               "epochs": 1, "progress": False, "lr": 0.5}))
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--lr", "0.01", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["lr"] == 0.01 and saved["model"]["recommender"] == "mf"


def test_unknown_option_suggests_close_match(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--recomender", "sgl"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean --recommender" in err and "valid options:" in err


def test_bad_values_name_the_valid_choices(ratings_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:  # a fixed set is checked by the parser
        main(["train", "--dataset", str(ratings_csv), "--recommender", "ligthgcn"])
    assert e.value.code == 2 and "'mf', 'lightgcn', 'sgl', 'simgcl', 'xsimgcl'" in capsys.readouterr().err
    cfg = tmp_path / "c.json"  # and by the config class, for a --config file
    cfg.write_text(json.dumps({"recommender": "ligthgcn"}))
    assert main(["train", "--dataset", str(ratings_csv), "--config", str(cfg)]) == 2
    assert "mf, lightgcn, sgl, simgcl, xsimgcl" in capsys.readouterr().err
    assert main(["train", "--dataset", "no-such-set", "--recommender", "mf"]) == 2
    assert "gowalla" in capsys.readouterr().err
    assert main(["train", "--dataset", str(ratings_csv), "--dim", "abc"]) == 2
    assert "dim expects int" in capsys.readouterr().err


def test_config_file_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"model": "mf",\n "lr": }')
    assert main(["train", "--config", str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"learning_rate": 0.1}')
    assert main(["train", "--config", str(unknown)]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and "valid keys" in err and "lr" in err


def test_pretrain_then_prompt_tune(ratings_csv, tmp_path, capsys):
    pre = tmp_path / "pre"
    common = ["--dim", "8", "--batch-size", "64", "--no-progress"]
    assert main(["pretrain", "--dataset", str(ratings_csv), "--recommender", "simgcl", "--epochs", "1",
                 "--rating-threshold", "0", "--out", str(pre), *common]) == 0
    assert (pre / "encoder.pt").exists()
    assert json.loads((pre / "config.json").read_text())["model"]["mode"] == "pretrain"
    out = tmp_path / "tuned"
    assert main(["prompt-tune", "--pretrained", str(pre), "--prompt", "historical", "--epochs", "1",
                 "--hidden", "16", "--batch-size", "64", "--no-progress", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert "recall@20" in res["test"]
    with pytest.raises(SystemExit):
        main(["prompt-tune", "--pretrained", str(pre), "--prompt", "nope"])
    assert "'historical', 'factorization', 'high_order'" in capsys.readouterr().err
