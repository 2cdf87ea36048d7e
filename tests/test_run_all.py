"""benchmarks/run_all.py: the report, failure handling and command reconstruction (no benchmark runs)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ra():
    # run_all imports its sibling peak_rss (a script's folder is on sys.path); load both from their files
    for name in ("peak_rss", "run_all"):
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


MACHINE = {"cpus": 2, "torch": "2.13.0+cpu", "torch_threads": 2, "python": "3.11.7"}

RECSYS = {"dataset": "ml-1m-implicit", "users": 6040, "items": 3706, "train_pairs": 719842, "batches_per_epoch": 352,
          "threads": 2, "speedup_epoch": 17.15, "speedup_eval": 3.59,
          "cptpp": {"epoch_seconds": 17.08, "batch_seconds": 0.0485, "eval_valid_seconds": 0.144,
                    "eval_test_seconds": 0.137, "valid_recall@20_after_1_epoch": 0.1087},
          "torch_geometric": {"batch_seconds": 0.832, "batches_timed": 5, "epoch_seconds_extrapolated": 293.0,
                              "eval_seconds": 0.518}}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def fake_step(ra, name, script="benchmarks/fake.py", quick=None, full=None, outputs=("fake.txt",), render=None):
    return ra.Step(name, f"title of {name}", script, f"what {name} measures", quick=quick,
                   full=full or (lambda o: [ra.py(script)]), outputs=list(outputs), render=render)


def test_report_marks_sizes_commands_and_numbers(ra, tmp_path):
    results = tmp_path / "results"
    write(results / "recsys_speed.json", json.dumps(RECSYS))  # committed full-size file, no run record
    quick = dict(RECSYS, speedup_epoch=9.5, threads=2)
    write(results / "quick" / "recsys_speed.json", json.dumps(quick))
    write(results / "quick" / "run_all" / "recsys-speed.json", json.dumps({
        "step": "recsys-speed", "size": "quick", "status": "ok", "started": "2026-11-26 14:00 UTC",
        "finished": "2026-11-26 14:01 UTC", "seconds": 61.0, "peak_rss_MB": 812.4, "machine": MACHINE,
        "load_average_start": [3.2, 3.0, 2.9], "note": "",
        "commands": [{"command": "python benchmarks/recsys_speed.py --pyg-batches 3", "exit_code": 0,
                      "seconds": 61.0, "peak_rss_MB": 812.4, "timed_out": False}]}))
    step = [s for s in ra.steps() if s.name == "recsys-speed"]
    md = ra.build_report(results, step, generated_by="python benchmarks/run_all.py --quick", machine=MACHINE)
    assert "## recsys-speed" in md and "(#recsys-speed)" in md
    quick_block, full_block = md.split("### recsys-speed, quick size")[1].split("### recsys-speed, full size")
    assert "9.5x" in quick_block and "17.1x" not in quick_block
    assert "17.1x" in full_block and "9.5x" not in full_block
    assert "812 MB" in quick_block and "load average 3.2" in quick_block
    assert "--pyg-batches 3" in quick_block
    # the committed file has no command: the report says so instead of inventing one
    assert "`python benchmarks/recsys_speed.py` (not recorded" in full_block
    assert "peak RSS was not measured" in full_block
    assert "- machine: 2 torch threads (recorded in the results)" in full_block
    assert "`--quick` steps last finished 2026-11-26 14:01 UTC" in md


def test_failed_step_is_reported_and_others_still_run(ra, tmp_path):
    results = tmp_path / "results"
    ok_script = write(tmp_path / "ok.py", "print('value 42')\n")
    bad_script = write(tmp_path / "bad.py", "import sys\nprint('partial output')\nsys.exit('boom: broken input')\n")
    bad = fake_step(ra, "bad-step", quick=lambda o: [ra.Cmd(["{py}", str(bad_script)], "bad.txt")],
                    outputs=["bad.txt"])
    ok = fake_step(ra, "ok-step", quick=lambda o: [ra.Cmd(["{py}", str(ok_script)], "ok.txt")], outputs=["ok.txt"])
    long = fake_step(ra, "long-table", outputs=["long.md"])  # no quick commands: reported, not run
    report = tmp_path / "RESULTS.md"
    records = ra.run_all([bad, ok, long], "quick", results, report=report, generated_by="test")
    assert [r["step"] for r in records] == ["bad-step", "ok-step"]
    assert [r["status"] for r in records] == ["failed", "ok"]
    assert records[0]["commands"][0]["exit_code"] == 1
    assert (results / "quick" / "ok.txt").read_text() == "value 42\n"  # stdout only, stderr to the log
    assert not (results / "quick" / "bad.txt").exists()  # a failed run's partial stdout stays in its log
    assert "boom: broken input" in (results / "quick" / "logs" / "bad-step.log").read_text()
    md = report.read_text()
    assert "| [bad-step](#bad-step) | quick | **FAILED** |" in md
    sections = {block.split("\n", 1)[0]: block for block in md.split("\n## ")[1:]}
    assert "boom: broken input" in sections["bad-step"] and "value 42" not in sections["bad-step"]
    assert "value 42" in sections["ok-step"]
    assert "No results yet" in sections["long-table"]
    assert not (results / "ok.txt").exists()  # quick never writes beside the full-size files


def test_main_exits_nonzero_when_a_step_fails(ra, tmp_path, monkeypatch):
    bad_script = write(tmp_path / "bad.py", "raise SystemExit(3)\n")
    ok_script = write(tmp_path / "ok.py", "print('fine')\n")
    fake = [fake_step(ra, "bad-step", quick=lambda o: [ra.Cmd(["{py}", str(bad_script)])], outputs=[]),
            fake_step(ra, "ok-step", quick=lambda o: [ra.Cmd(["{py}", str(ok_script)], "ok.txt")],
                      outputs=["ok.txt"])]
    monkeypatch.setattr(ra, "steps", lambda: fake)
    args = ["--results", str(tmp_path / "results"), "--out-report", str(tmp_path / "RESULTS.md")]
    assert ra.main(["--quick", *args]) == 1
    assert (tmp_path / "results" / "quick" / "ok.txt").exists()
    assert ra.main(["--quick", "--only", "ok-step", *args]) == 0
    with pytest.raises(SystemExit, match="unknown step 'nope'.*bad-step, ok-step"):
        ra.main(["--quick", "--skip", "nope", *args])


def test_timeout_kills_the_command(ra, tmp_path):
    script = write(tmp_path / "sleepy.py", "import time\ntime.sleep(120)\n")
    with open(tmp_path / "log", "w") as log:
        res = ra.run_command([sys.executable, str(script)], log, timeout=1.0, echo=False)
    assert res.timed_out and res.exit_code != 0
    assert res.seconds < 100  # killed, not waited for


def test_peak_rss_is_the_commands_own(ra, tmp_path):
    """A child that touches 150 MB reports at least that; a trivial one reports far less than this
    (pytest) process, whose memory map a directly forked child would inherit."""
    big = write(tmp_path / "big.py", "b = bytearray(150 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\n")
    small = write(tmp_path / "small.py", "pass\n")
    with open(tmp_path / "log", "w") as log:
        r_big = ra.run_command([sys.executable, str(big)], log, echo=False)
        r_small = ra.run_command([sys.executable, str(small)], log, echo=False)
    assert r_big.exit_code == 0 and r_small.exit_code == 0
    assert r_big.peak_rss_MB >= 150
    assert r_small.peak_rss_MB < 60


def test_command_rebuilt_from_recorded_args(ra, tmp_path):
    script = write(tmp_path / "bench.py", 'p.add_argument("--max-train", type=int)\np.add_argument("--tasks")\n'
                   'p.add_argument("--fast", action="store_true")\np.add_argument("--out")\n'
                   "p.add_argument('--token-ratios')\n")
    args = {"max_train": 64, "tasks": ["RTE", "CB"], "fast": True, "out": "/abs/path", "label_dim": 384,
            "model": None, "token_ratios": [0.25, 0.5]}
    assert ra.args_to_argv(args, ra.script_options(script)) == [
        "--max-train", "64", "--tasks", "RTE,CB", "--fast", "--token-ratios", "0.25,0.5"]
    recorded = write(tmp_path / "r.json", json.dumps({"command": "python bench.py --tasks RTE --resume --fast"}))
    assert ra.command_args_from_json(script, recorded) == ["--tasks", "RTE", "--fast"]
    assert ra.command_args_from_json(script, tmp_path / "missing.json") is None
    assert ra.stored_args({"meta": {"args": {"a": 1}}}) == {"a": 1}
    assert ra.stored_args({"settings": {"b": 2}}) == {"b": 2}
    assert ra.stored_args({"rows": []}) is None


def test_committed_tables_give_full_commands(ra):
    """Every accuracy table whose committed json stores its arguments rebuilds to options the script has."""
    for step in ra.steps():
        if step.recorded_args and (ra.RESULTS / step.recorded_args).exists():
            argv = ra.command_args_from_json(ROOT / step.script, ra.RESULTS / step.recorded_args)
            assert argv, step.name
            opts = ra.script_options(ROOT / step.script)
            assert {a for a in argv if a.startswith("--")} <= opts, step.name


def test_memory_and_recbole_renderers(ra, tmp_path):
    mem = write(tmp_path / "memory_per_node_ml-100k.json", json.dumps({
        "dataset": "ml-100k", "nodes": 2625, "train_pairs": 70000, "rss_before_model_MB": 300.0,
        "rss_growth_MB": 12.5, "bytes_per_node_if_all_node_state": 4993.5}) + "\n")
    assert ra.render_memory(mem) == "| ml-100k | 2,625 | 70,000 | 300 | 12.5 | 4,994 |"
    side = {"library": "x", "torch": "2.13.0", "threads": 2, "batches_per_epoch": 352, "setup_seconds": 5.0,
            "epoch_seconds_mean": 100.0, "valid_eval_seconds_median": 2.0, "test_eval_seconds": 2.0,
            "peak_rss_MB": 900.0, "valid": {"recall@20": 0.1, "ndcg@20": 0.2}, "test": {"recall@20": 0.1, "ndcg@20": 0.2}}
    fast = dict(side, epoch_seconds_mean=20.0, valid_eval_seconds_median=0.5, test_eval_seconds=0.5)
    rb = write(tmp_path / "recbole_lightgcn.json", json.dumps({
        "dataset": "ml-1m-implicit", "epochs": 2, "settings": {"topk": 20, "batch_size": 2048},
        "split": {"users": 6040, "items": 3706, "train": 1, "valid": 1, "test": 1}, "recbole": side, "cptpp": fast}))
    md = ra.render_recbole(rb)
    assert "| training epoch, wall (mean over epochs 2..2) | 100 s | 20.0 s | 5.0x |" in md
    assert "| full-ranking evaluation, valid, wall (median) | 2.0 s | 0.500 s | 4.0x |" in md


def test_recbole_step_skipped_when_its_venv_cannot_be_made(ra, tmp_path, monkeypatch):
    monkeypatch.setattr(ra, "RECBOLE_VENV", tmp_path / "no-venv")
    step = fake_step(ra, "peer", quick=lambda o: [ra.py("benchmarks/never_run.py")], outputs=["peer.json"])
    step.needs_recbole = True
    rec = ra.run_step(step, "quick", tmp_path / "results" / "quick", MACHINE, make_recbole=False)
    assert rec["status"] == "skipped" and rec["commands"] == []
    assert "no-venv missing" in rec["note"]
    md = ra.build_report(tmp_path / "results", [step], generated_by="test", machine=MACHINE)
    assert "status **SKIPPED**" in md and "no-venv missing" in md


def test_commands_show_checkout_and_mirror_paths_relative(ra, monkeypatch):
    mirror = ra.ROOT.parent / "mirror-x"
    monkeypatch.setenv("CPTPP_DATA_MIRROR", str(mirror))
    argv = ["python", str(ra.ROOT / "benchmarks" / "cpg_speed.py"), "--data", str(mirror / "code"),
            "--other", str(ra.ROOT.parent / "mirror-x2" / "code"), "--tmp", "tmp/x"]
    assert ra.display(argv) == ("python benchmarks/cpg_speed.py --data ../mirror-x/code "
                                f"--other {ra.ROOT.parent / 'mirror-x2' / 'code'} --tmp tmp/x")


def test_committed_report_has_no_absolute_paths_of_this_machine(ra):
    text = ra.REPORT.read_text()
    for folder in {str(ra.ROOT), str(ra.ROOT.parent / "shared")}:
        assert folder not in text


@pytest.fixture(scope="module")
def peer():
    spec = importlib.util.spec_from_file_location("recbole_peer", ROOT / "benchmarks" / "peers" / "recbole_peer.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _peer_record(test_recall: float, best_epoch: int, epochs: int = 20) -> dict:
    curve = [{"recall@20": e / 100, "ndcg@20": e / 200} for e in range(1, epochs + 1)]
    return {"valid_curve": curve, "best_epoch": best_epoch, "epoch_seconds": [1.0, 3.0],
            "test_at_best": {"recall@20": test_recall, "ndcg@20": test_recall / 2}, "peak_rss_MB": 100.0}


def test_peer_table_averages_each_run_over_its_seeds(peer):
    res = {"epochs": 20, "per_seed": {
        "2020": {"cptpp:sgl": _peer_record(0.30, 18), "recbole:sgl": _peer_record(0.34, 20)},
        "2021": {"cptpp:sgl": _peer_record(0.32, 20)}}}
    lines = peer.table(res).splitlines()
    cptpp = next(line for line in lines if "`cptpp:sgl`" in line).split(" | ")
    recbole = next(line for line in lines if "`recbole:sgl`" in line).split(" | ")
    # two seeds: mean 0.31, sample std 0.01414; one seed: the value alone; curve at epochs 10 and 20
    assert cptpp[1:6] == ["2", "0.1000", "0.2000", "19", "0.3100 ± 0.0141"]
    assert cptpp[6] == "0.1550 ± 0.0071"
    assert recbole[1] == "1" and recbole[5] == "0.3400"


def test_peer_records_of_the_results_file_are_restored_not_retrained(peer, tmp_path):
    out = tmp_path / "peer.json"
    out.write_text(json.dumps({"epochs": 20, "per_seed": {"2020": {"recbole:sgl": _peer_record(0.34, 20)}}}))
    work = tmp_path / "work"
    peer.restore_records(out, work, epochs=100)  # another epoch budget: nothing to reuse
    assert not work.exists()
    peer.restore_records(out, work, epochs=20)
    assert json.loads((work / "seed2020" / "recbole_sgl.json").read_text())["test_at_best"]["recall@20"] == 0.34
