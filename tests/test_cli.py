"""`cptpp train` end to end on a user CSV, and its errors for bad options."""
import json

import pytest

from cptpp.cli import main


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


# ---------------------------------------------------------------- trustworthy runs (issue 18)

import os  # noqa: E402
import stat  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--dim", "8", "--batch-size", "64", "--rating-threshold", "0", "--layers", "1"]


def _cptpp(args, *, cwd):
    """``python -m cptpp.cli ARGS`` in a child process; stderr is a pipe (not a terminal). Output is decoded
    as written (no newline translation, so a progress bar's carriage returns stay visible)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cptpp.cli", *args], cwd=cwd, env=env, capture_output=True,
                          timeout=600)
    proc.stdout, proc.stderr = proc.stdout.decode(), proc.stderr.decode()
    return proc


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def test_run_files_get_the_umask_mode(ratings_csv, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        assert main(["train", "--dataset", str(ratings_csv), "--epochs", "1", "--out", str(out), *TINY]) == 0
    finally:
        os.umask(old)
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert {"config.json", "results.json", "metrics.jsonl", "checkpoint.pt", "best.pt"} <= set(files)
    assert set(files.values()) == {0o644}, files

    from cptpp.io import write_json
    old = os.umask(0o027)
    try:
        write_json(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.json").stat().st_mode) == 0o640


def test_redirected_stderr_gets_one_line_per_epoch_and_no_bar(ratings_csv, tmp_path):
    proc = _cptpp(["train", "--dataset", str(ratings_csv), "--epochs", "3", "--batch-size", "16",
                   "--out", str(tmp_path / "run"), "--dim", "8", "--rating-threshold", "0"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stderr and "it/s" not in proc.stderr and "%|" not in proc.stderr
    epoch_lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1", "2", "3"]


def test_progress_forces_the_bar_and_no_progress_silences_the_epochs(ratings_csv, tmp_path):
    common = ["train", "--dataset", str(ratings_csv), "--epochs", "1", "--batch-size", "16", *TINY[:2]]
    bar = _cptpp(common + ["--out", str(tmp_path / "a"), "--progress", "--rating-threshold", "0"], cwd=tmp_path)
    assert bar.returncode == 0 and "\r" in bar.stderr
    quiet = _cptpp(common + ["--out", str(tmp_path / "b"), "--no-progress", "--rating-threshold", "0"], cwd=tmp_path)
    assert quiet.returncode == 0 and "\r" not in quiet.stderr and "epoch 1 (step" not in quiet.stdout + quiet.stderr


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        return locked / "run"
    if not Path("/sys/kernel").is_dir():
        pytest.skip("running as root without sysfs: no folder root cannot write")
    return Path("/sys/kernel/cptpp-test-run")  # root cannot create folders in sysfs


@pytest.mark.parametrize("case", ["file", "under-file", "unwritable"])
def test_bad_out_is_one_line_and_touches_nothing(case, ratings_csv, tmp_path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    out = {"file": afile, "under-file": afile / "run", "unwritable": _unwritable(tmp_path)}[case]
    before = _tree(tmp_path)
    rc = main(["train", "--dataset", str(ratings_csv), "--epochs", "1", "--out", str(out), *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and str(out) in err and "--out" in err, err
    assert _tree(tmp_path) == before and (case == "file" or not out.exists())


def test_an_os_error_during_the_run_is_one_line_naming_the_file(ratings_csv, tmp_path, monkeypatch, capsys):
    import cptpp.train

    def refuse(task, cfg, run_config=None):
        raise PermissionError(13, "Permission denied", str(tmp_path / "run" / "config.json"))

    monkeypatch.setattr(cptpp.train, "fit", refuse)
    assert main(["train", "--dataset", str(ratings_csv), "--out", str(tmp_path / "run"), *TINY]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the run's own info lines
    assert last.startswith(f"cptpp train: error: {tmp_path / 'run' / 'config.json'}: permission denied; ")


def test_ctrl_c_says_how_to_resume(ratings_csv, tmp_path, monkeypatch, capsys):
    import cptpp.train

    def interrupted(task, cfg, run_config=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cptpp.train, "fit", interrupted)
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--dataset", str(ratings_csv), *TINY]
    try:
        assert main(argv + ["--out", "runs/a"]) == 130
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped cptpp.cli.main (a traceback for the user)")
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the run's own info lines
    assert last == "cptpp train: interrupted; continue with: cptpp " + " ".join(argv) + " --out runs/a --resume"
    assert main(argv) == 130  # no --out: the message names the folder the run chose
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cptpp train: interrupted; continue with: cptpp train") and " --out runs/" in last
    assert last.endswith(" --resume")


def test_ctrl_c_of_a_real_run_exits_130_with_one_line(ratings_csv, tmp_path):
    import signal

    args = ["train", "--dataset", str(ratings_csv), "--epochs", "0", "--max-minutes", "5",
            "--out", str(tmp_path / "run"), *TINY]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cptpp.cli", *args], env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until training runs
        if line.startswith("lightgcn"):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == 130
    assert rest.strip() == "cptpp train: interrupted; continue with: cptpp " + " ".join(args) + " --resume"


def test_broken_pipe_exits_quietly(tmp_path):
    pytest.importorskip("tree_sitter_java")
    src = tmp_path / "Big.java"
    src.write_text("class Big {\n" + "".join(f"  int f{i}(int x) {{ return x + {i}; }}\n" for i in range(400)) + "}\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cptpp.cli", "cpg", str(src)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()  # `| head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""


BLOCK = "import sys; sys.modules[{name!r}] = None; from cptpp.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.parametrize("module, extra, argv", [
    ("tree_sitter", "code", ["cpg", "A.java"]),
    ("transformers", "text", ["code-tune", "--task", "translation", "--method", "lora", "--model", "m"]),
])
def test_a_missing_extra_names_it_and_the_checkout_install(module, extra, argv, tmp_path):
    (tmp_path / "A.java").write_text("class A { int f() { return 1; } }\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", BLOCK.format(name=module), *argv], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"[{extra}] extra ({module} is not installed)" in proc.stderr
    assert f"pip install -e '.[{extra}]'" in proc.stderr


def test_pretrain_saves_the_best_or_the_last_encoder(ratings_csv, tmp_path, capsys):
    runs = {}
    for save in ("best", "last"):
        out = tmp_path / save
        assert main(["pretrain", "--dataset", str(ratings_csv), "--recommender", "simgcl", "--epochs", "3",
                     "--patience", "0", "--save", save, "--out", str(out), "--no-progress", *TINY]) == 0
        runs[save] = torch.load(out / "encoder.pt")["state_dict"]
        res = json.loads((out / "results.json").read_text())
        epoch = res["best_epoch"] if save == "best" else res["epochs_run"]
        assert f"encoder of epoch {epoch} ({save}) saved" in capsys.readouterr().out
    best = torch.load(tmp_path / "best" / "best.pt")
    last = torch.load(tmp_path / "last" / "checkpoint.pt", weights_only=False)["model"]
    for k in best:
        torch.testing.assert_close(runs["best"][k], best[k])
        torch.testing.assert_close(runs["last"][k], last[k])


def test_no_download_possible_says_how_to_use_a_local_copy(tmp_path, monkeypatch, capsys):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.delenv("CPTPP_DATA_MIRROR", raising=False)
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert main(["data", "info", "ml-100k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cptpp data info: error: could not download") and err.count("\n") == 1
    assert "CPTPP_DATA_MIRROR is not set" in err and "`export CPTPP_DATA_MIRROR=DIR` (DIR/recsys/ml-100k/" in err
    assert str(tmp_path / "home" / "recsys" / "ml-100k") in err


def test_data_info_and_train_share_the_split_seed(ratings_csv, capsys):
    assert main(["data", "info", str(ratings_csv), "--data-seed", "3", "--rating-threshold", "0"]) == 0
    counts = capsys.readouterr().out
    from cptpp.recsys.datasets import load_dataset

    data = load_dataset(str(ratings_csv), seed=3, rating_threshold=0, progress=False)
    assert f"{data.stats()['valid']:>12,}" in counts.splitlines()[5]
