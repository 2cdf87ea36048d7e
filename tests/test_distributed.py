"""Two CPU processes (torchrun, gloo) train the same model as one process with the doubled batch."""
import json
import os
import subprocess
import sys

import numpy as np
import torch


def _ratings(tmp_path):
    rng = np.random.default_rng(0)
    rows = [f"{u} {i}" for u in range(40) for i in rng.choice(50, 10, replace=False)]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _train(args, nproc, env):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                f"--nproc_per_node={nproc}", "-m", "cptpp.cli"] if nproc > 1 else [sys.executable, "-m", "cptpp.cli"]
    proc = subprocess.run(launcher + args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_process_gloo_matches_single_process(tmp_path):
    data = _ratings(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CPTPP_SPMM": "torch"}
    common = ["train", "--dataset", str(data), "--recommender", "lightgcn", "--dim", "8", "--layers", "2",
              "--epochs", "3", "--lr", "0.01", "--no-progress", "--patience", "0", "--seed", "7"]
    _train(common + ["--batch-size", "64", "--out", str(tmp_path / "single")], 1, env)
    _train(common + ["--batch-size", "32", "--out", str(tmp_path / "ddp")], 2, env)

    single = torch.load(tmp_path / "single" / "best.pt")
    ddp = torch.load(tmp_path / "ddp" / "best.pt")
    # Same pairs, same negatives, gradients averaged: equal up to float summation order.
    for k in single:
        torch.testing.assert_close(ddp[k], single[k], atol=1e-5, rtol=1e-4)
    rs = json.loads((tmp_path / "single" / "results.json").read_text())
    rd = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert rd["best_epoch"] == rs["best_epoch"]
    for key in ("recall@20", "ndcg@20"):
        assert abs(rd["test"][key] - rs["test"][key]) < 1e-6
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
