"""benchmarks/transducer_table.py without a model run: the seed aggregation against hand-computed values and the
resume logic (finished (task, method, seed) runs are reused, a run under other settings is refused)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("torch_geometric")
pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def table():
    spec = importlib.util.spec_from_file_location("transducer_table", ROOT / "benchmarks" / "transducer_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def row(method, seed, bleu, codebleu, **extra):
    test = {"bleu": bleu, "codebleu": codebleu, "em": 0.0, "sbleu": bleu, "chrf": 10.0, "token_acc": 50.0}
    return {"task": "translation", "protocol": "official-splits", "method": method, "seed": seed, "trainable": 7,
            "test": test, "pairs": {"train": 4, "valid": 2, "test": 2}, "steps": 2, "peak_rss_mib": 100.0 + seed,
            "train_delta_mib": 1.0, "train_cpu_seconds": 10.0 * (seed + 1), "eval_cpu_seconds": 1.0, **extra}


def test_mean_std_is_the_sample_standard_deviation(table):
    mean, std = table.mean_std([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3)
    assert std == pytest.approx(math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2))
    assert table.mean_std([3.0]) == (3.0, 0.0)
    assert table.mean_std([1.0, None]) == (None, None)


def test_aggregate_per_method_and_the_above_frozen_verdict(table):
    readout = {m: {"loss": loss, "token_acc": 0.0} for m, loss in (("none", 1.0), ("shuffle", 1.5), ("zeros", 2.0))}
    rows = [row("frozen", 0, 5.0, 6.0),
            row("lora", 0, 9.0, 8.0), row("lora", 1, 7.0, 7.0),
            row("prompt", 0, 9.0, 8.0), row("prompt", 1, 9.0, 5.0),  # one seed's CodeBLEU below frozen
            row("transducer", 0, 6.0, 7.0, graph_readout={**readout, "gate_abs_mean": 0.1}),
            row("transducer", 1, 6.0, 7.0, graph_readout={**readout, "gate_abs_mean": 0.3})]
    got = {s["method"]: s for s in table.aggregate(rows)}
    assert list(got) == ["frozen", "lora", "prompt", "transducer"]
    assert got["lora"]["seeds"] == [0, 1]
    assert got["lora"]["test"]["bleu"] == pytest.approx((8.0, math.sqrt(2)))
    assert got["lora"]["train_cpu_seconds"] == 15.0 and got["lora"]["peak_rss_mib"] == 100.5
    assert got["frozen"]["above_frozen"] is None
    assert got["lora"]["above_frozen"] is True and got["prompt"]["above_frozen"] is False
    assert got["transducer"]["graph_readout"] == pytest.approx(
        {"none": 1.0, "shuffle": 1.5, "zeros": 2.0, "gate_abs_mean": 0.2})
    md = table.markdown(rows, "note")
    assert "| lora | 2 | 7 | 2 | n/a | 100 | 15 | 8.00 ± 1.41 |" in md
    assert "| transducer | 1.0000 | 1.5000 | 2.0000 | 2.00e-01 |" in md


@pytest.fixture
def tiny_model_dir(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_a_killed_table_resumes_without_redoing_finished_runs(table, tiny_model_dir, tmp_path, monkeypatch):
    """The first invocation dies in its third run (as a killed process would); the second reruns only the runs
    without a result file, and the table has every (method, seed) once."""
    calls = []

    def fake_run(job, args, out, fail_at=None):
        calls.append(job)
        if fail_at is not None and len(calls) >= fail_at:  # the process died: this run and any after write nothing
            raise RuntimeError("killed")
        task, method, seed = job.split(":")
        result = row(method, int(seed), 5.0 + len(method), 6.0)
        result["settings"] = table.run_settings(args, method)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result))
        return result

    argv = ["--model", str(tiny_model_dir), "--tasks", "translation", "--methods", "frozen,lora,ia3",
            "--seeds", "0,1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "res" / "table")]
    monkeypatch.setattr(table, "run_in_subprocess", lambda job, args, out: fake_run(job, args, out, fail_at=3))
    with pytest.raises(RuntimeError, match="killed"):
        table.main(argv)
    assert calls[:3] == ["translation:frozen:0", "translation:lora:0", "translation:lora:1"]
    assert sorted(p.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").rglob("*.json")) == [
        "translation/frozen/seed0.json", "translation/lora/seed0.json"]
    calls.clear()
    monkeypatch.setattr(table, "run_in_subprocess", fake_run)
    assert table.main(argv) == 0
    assert calls == ["translation:lora:1", "translation:ia3:0", "translation:ia3:1"]  # frozen: once, seed 0
    saved = json.loads((tmp_path / "res" / "table.json").read_text())
    assert [(r["method"], r["seed"]) for r in saved["rows"]] == [
        ("frozen", 0), ("lora", 0), ("lora", 1), ("ia3", 0), ("ia3", 1)]
    assert saved["command"].startswith("benchmarks/transducer_table.py --model")
    calls.clear()
    assert table.main(argv) == 0 and calls == []  # everything finished: nothing reruns
    # the same runs folder under another learning rate is refused before anything runs...
    with pytest.raises(Exception, match=r"lora/seed0.json was run with other settings \(lr: 0\.0003 there, 0\.001 now"):
        table.main(argv + ["--lr", "1e-3"])
    with pytest.raises(Exception, match=r"ia3/seed0.json .*lr: 0\.0003 there, 0\.003 now"):
        table.main(argv + ["--method-lr", "ia3=3e-3"])
    assert calls == []
    # ...but a method's own rate leaves the other methods' runs valid, and the frozen rows have no rate
    assert table.main(argv + ["--method-lr", "ia3=3e-3", "--runs", str(tmp_path / "runs2")]) == 0
    lrs = {(r["method"], r["seed"]): r["settings"]["lr"] for r in
           json.loads((tmp_path / "res" / "table.json").read_text())["rows"]}
    assert lrs == {("frozen", 0): None, ("lora", 0): 3e-4, ("lora", 1): 3e-4, ("ia3", 0): 3e-3, ("ia3", 1): 3e-3}


def test_method_lr_parsing_and_transducer_fallback(table):
    import argparse

    assert table.lrs("transducer=1e-2, prompt=0.03") == {"transducer": 1e-2, "prompt": 0.03}
    with pytest.raises(argparse.ArgumentTypeError, match="METHOD=LR with METHOD one of frozen"):
        table.lrs("adapter=1e-3")
    args = argparse.Namespace(lr=1e-3, method_lr={"transducer": 1e-2, "transducer-zeros": 5e-3})
    assert table.method_lr(args, "transducer-as-released") == 1e-2
    assert table.method_lr(args, "transducer-zeros") == 5e-3
    assert table.method_lr(args, "lora") == 1e-3
