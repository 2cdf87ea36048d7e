"""`cptpp --help` and every subcommand's help explain themselves, and a flag means one thing everywhere."""
import argparse
import json

import pytest

from cptpp.cli import build_parser, main


def _all_parsers(parser):
    """``parser`` and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def _commands():
    """{"train": parser, ..., "data info": parser}: every command that runs something (has func)."""
    return {p.prog.removeprefix("cptpp "): p for p in _all_parsers(build_parser())
            if p.prog != "cptpp" and p.get_default("func") is not None}


def _options(parser):
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith("--")}


def test_every_command_has_a_description_and_every_option_help():
    missing = []
    for parser in _all_parsers(build_parser()):
        if not (parser.description or "").strip():
            missing.append(f"{parser.prog}: no description")
        for a in parser._actions:
            if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            text = (a.help or "").strip()
            if not text or text.startswith("default:") or "default: None" in text:
                missing.append(f"{parser.prog} {'/'.join(a.option_strings) or a.dest}: help {text!r}")
    assert not missing, "\n".join(missing)


def test_fixed_sets_are_choices_shown_in_the_help():
    commands = _commands()
    expected = {
        ("train", "--recommender"): {"mf", "lightgcn", "sgl", "simgcl", "xsimgcl"},
        ("train", "--mode"): {"joint", "pretrain"},
        ("train", "--optimizer"): {"adam", "adamw", "sgd"},
        ("train", "--schedule"): {"constant", "linear", "cosine"},
        ("train", "--sgl-aug"): {"ed", "nd", "rw"},
        ("pretrain", "--recommender"): {"sgl", "simgcl", "xsimgcl"},
        ("pretrain", "--save"): {"best", "last"},
        ("prompt-tune", "--prompt"): {"historical", "factorization", "high_order"},
        ("prompt-tune", "--fusion"): {"concat_mlp", "add"},
        ("prompt-tune", "--tune"): {"prompt", "prompt+items", "all"},
        ("prompt-tune", "--recipe"): {"paper", "official-code"},
        ("code-tune", "--fusion"): {"cross-attention", "as-released"},
        ("code-tune", "--method"): {"transducer", "lora", "prompt", "prefix", "ia3", "full"},
        ("xprompt", "--task"): {"BoolQ", "CB", "COPA", "MultiRC", "RTE", "WiC", "WSC"},
        ("topro", "--task"): {"ner", "pos"},
        ("topro", "--method"): {"topro", "finetune", "prompt", "probe"},
        ("peftt", "--method"): {"full", "probe", "prompt", "adapter", "prompt+adapter"},
        ("peftt", "--tsheg"): {"restore", "keep"},
        ("peftt", "--adapter-kind"): {"houlsby", "pfeiffer"},
        ("cpg", "--format"): {"json", "dot"},
    }
    for (command, flag), choices in expected.items():
        action = _options(commands[command])[flag]
        assert set(action.choices or ()) == choices, (command, flag)
    for command, parser in commands.items():  # every choice of every option is printed by --help
        text = parser.format_help()
        for flag, action in _options(parser).items():
            for choice in action.choices or ():
                assert choice in text, (command, flag, choice)


def test_help_gives_per_model_defaults_and_the_ks_format():
    train = _commands()["train"].format_help()
    flat = " ".join(train.split())
    assert "--layers INT propagation layers (default: per model (mf 0, lightgcn 3, sgl 3, simgcl 2, xsimgcl 2))" \
        in flat
    assert "tau" in flat and "per model (sgl 0.5, simgcl 0.2, xsimgcl 0.15" in flat
    assert "--ks K,K,... ranking cutoffs, comma-separated: 5,10,20" in flat
    pretrain = " ".join(_commands()["pretrain"].format_help().split())
    assert "best validation metric (--save best, the default) or of the last epoch (--save last)" in pretrain
    top = " ".join(build_parser().format_help().split())
    for family in ("recommenders", "code", "text PEFT", "CPTPP_DATA_MIRROR", "--resume"):
        assert family in top


RUNS = ("train", "pretrain", "prompt-tune", "search", "code-tune", "mamba-search", "mamba-pretrain",
        "xprompt", "topro", "peftt", "prompt-attention")


def test_a_flag_is_spelled_and_behaves_alike_on_every_command():
    commands = _commands()
    with_out = {c for c, p in commands.items() if "--out" in _options(p)}
    assert with_out == set(RUNS)
    for command in with_out:
        opts = _options(commands[command])
        assert isinstance(opts["--resume"], argparse._StoreTrueAction), command  # a plain switch
        assert "--config" in opts and "--seed" in opts, command
        if "--progress" in opts:
            assert isinstance(opts["--progress"], argparse.BooleanOptionalAction), command
    for command in ("train", "pretrain", "prompt-tune", "code-tune", "mamba-pretrain"):
        assert "--no-progress" in _options(commands[command]), command
    for command in ("train", "pretrain", "prompt-tune", "code-tune", "mamba-search", "mamba-pretrain",
                    "xprompt", "topro", "peftt"):
        assert _options(commands[command])["--device"].option_strings == ["--device"], command
    # --model is a model to load everywhere (never a recommender name); --seed is never the split seed
    for command, parser in commands.items():
        opts = _options(parser)
        if "--model" in opts:
            assert opts["--model"].choices is None and command not in ("train", "pretrain"), command
    assert "--seed" not in _options(commands["data info"]) and "--data-seed" in _options(commands["data info"])
    assert "--method" not in _options(commands["cpg"]) and "--function" in _options(commands["cpg"])
    assert "--mode" not in _options(commands["prompt-tune"])


@pytest.mark.parametrize("argv, hint", [
    (["train", "--model", "sgl"], "--model: did you mean --recommender?"),
    (["pretrain", "--objective", "sgl"], "--objective: did you mean --recommender?"),
    (["data", "info", "ml-100k", "--seed", "1"], "--seed: did you mean --data-seed?"),
    (["cpg", "x.java", "--method", "f"], "--method: did you mean --function?"),
])
def test_a_renamed_option_points_at_its_new_name(argv, hint, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and hint in capsys.readouterr().err


def test_config_file_supplies_options_of_hand_written_commands(tmp_path, capsys):
    cfg = tmp_path / "tune.json"
    cfg.write_text(json.dumps({"task": "translation", "method": "lora", "model": str(tmp_path / "no-model")}))
    assert main(["code-tune", "--config", str(cfg)]) == 2  # the required options came from the file
    assert f"--model '{tmp_path / 'no-model'}': not a local" in capsys.readouterr().err
    cfg.write_text(json.dumps({"task": "sql"}))
    assert main(["code-tune", "--config", str(cfg)]) == 2
    assert "task='sql' is not valid; choose one of: translation, assert" in capsys.readouterr().err
    cfg.write_text(json.dumps({"trails": 3}))
    assert main(["mamba-search", "--out", str(tmp_path / "s"), "--config", str(cfg)]) == 2
    assert "unknown key(s) trails; valid keys:" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
