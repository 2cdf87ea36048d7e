"""`cptpp <command>`: one entry point; each area adds its own subcommands.

Each module in ``COMMAND_MODULES`` exposes ``add_commands(subparsers)`` and sets
``func=`` on the parsers it adds; heavy imports happen inside the command functions.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import shlex
import sys
import tempfile
from pathlib import Path

from cptpp.config import ConfigError, config_file_defaults

DESCRIPTION = """\
cptpp: graph recommenders, code property graphs and parameter-efficient tuning (PEFT) of language
models. Each method is one command, and every command trains through the same loop.

command families:
  recommenders  train (MF, LightGCN, SGL, SimGCL, XSimGCL), pretrain + prompt-tune (CPTPP), data
  code          cpg (the code property graph of a file), code-tune (Transducer Tuning, PEFT baselines)
  text PEFT     xprompt, topro, peftt, prompt-attention, mamba-search, mamba-pretrain

Every training command writes a run folder (--out DIR: config.json, metrics.jsonl, results.json,
checkpoints) and --resume continues a killed run there. --seed, --device, --progress/--no-progress
and --config FILE (JSON of option: value) are spelled alike on every command that has them.
Data is read from $CPTPP_DATA_MIRROR/<area>/<name>/ (a local copy), then $CPTPP_DATA_HOME
(default ~/.cache/cptpp), and downloaded there otherwise. `cptpp COMMAND --help` lists the options.
"""

# Optional dependencies by the extra that installs them (setup.cfg).
EXTRAS = {"tree_sitter": "code", "tree_sitter_java": "code", "tree_sitter_python": "code",
          "tree_sitter_c_sharp": "code", "torch_geometric": "code", "sacrebleu": "code",
          "transformers": "text", "peft": "text", "optuna": "text", "gguf": "text", "torch_scatter": "scatter"}

COMMAND_MODULES = [
    "cptpp.recsys.commands",
    "cptpp.recsys.data_commands",
    "cptpp.code.commands",
    "cptpp.peft.mamba_commands",
    "cptpp.peft.commands",
    "cptpp.model_commands",
]


class _HelpFormatter(argparse.HelpFormatter):
    """Paragraphs laid out by hand are kept, one-line ones wrapped; defaults are shown where the help
    does not say them. Every command's parser uses it (``_Parser``)."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for para in text.strip("\n").split("\n\n"):
            if "\n" in para.strip() or para.startswith(" "):  # laid out by hand: keep it
                paragraphs.append("\n".join(indent + line for line in para.splitlines()))
            else:
                paragraphs.append(super()._fill_text(para, width, indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or not action.option_strings or default is None or default is False
                or default is argparse.SUPPRESS or action.required):
            return text
        shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = _HelpFormatter  # one look for every command
        super().__init__(*args, **kwargs)

    def error(self, message):  # list valid choices/options, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n(run `{self.prog} --help` for the valid options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cptpp", description=DESCRIPTION)
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


# Options renamed so that one spelling has one meaning; an old spelling gets a pointer, not an alias.
RENAMED = {("train", "--model"): "--recommender", ("pretrain", "--model"): "--recommender",
           ("pretrain", "--objective"): "--recommender", ("prompt-tune", "--mode"): "--recipe",
           ("cpg", "--method"): "--function", ("data info", "--seed"): "--data-seed"}


def _command_parser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub)parser of the command that was given, e.g. ``data info``'s."""
    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        name = getattr(args, sub.dest, None) if sub else None
        if not name or name not in sub.choices:
            return parser
        parser = sub.choices[name]


def _all_parsers(parser: argparse.ArgumentParser):
    """``parser`` and every subcommand's parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _all_parsers(sub)


def _unknown_options(parser: argparse.ArgumentParser, args, extra: list[str]) -> None:
    """Exit with the unknown options, close matches, and every valid option of the command."""
    cmd = _command_parser(parser, args)
    valid = sorted(o for a in cmd._actions for o in a.option_strings if o.startswith("--"))
    lines = [f"{cmd.prog}: error: unrecognized arguments: {' '.join(extra)}"]
    for opt in (e.split("=")[0] for e in extra if e.startswith("-")):
        renamed = RENAMED.get((cmd.prog.removeprefix("cptpp "), opt))
        close = [renamed] if renamed else difflib.get_close_matches(opt, valid, n=3)
        if close:
            lines.append(f"  {opt}: did you mean {' or '.join(close)}?")
    lines.append(f"valid options: {' '.join(valid)}")
    cmd.exit(2, "\n".join(lines) + "\n")


def _check_out(out: str) -> None:
    """Fail before any work when ``--out`` cannot become a run folder (a file, under a file, not writable)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {out}: this is a file, and --out names a run folder; choose another --out")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: {parent} is a file, not a folder; choose another --out")
    try:  # os.access is not enough: root is refused by read-only and special file systems
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".cptpp-probe-"))
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create folders in {parent} ({(e.strerror or str(e)).lower()}); "
                          "choose a folder you can write to") from None


def _missing_extra(e: ImportError) -> str | None:
    """``e`` (or what caused it) is a missing optional dependency: say which extra installs it."""
    while e is not None:
        name = getattr(e, "name", None)
        if isinstance(e, ModuleNotFoundError) and name and name.split(".")[0] in EXTRAS:
            extra = EXTRAS[name.split(".")[0]]
            return (f"this command needs the [{extra}] extra ({name} is not installed): pip install 'cptpp[{extra}]', "
                    f"or from a checkout of cptpp: pip install -e '.[{extra}]'")
        e = e.__cause__ or e.__context__
    return None


def _resume_hint(args, argv: list[str]) -> str:
    """The command line that continues an interrupted run (same options, its --out, plus --resume)."""
    line = list(argv)
    if "--out" not in line and not any(a.startswith("--out=") for a in line):
        line += ["--out", str(args.out)]
    if "--resume" not in line:
        line.append("--resume")
    return f"interrupted; continue with: {shlex.join(['cptpp', *line])}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    # First pass without required options, which a --config file may supply.
    relaxed = [a for p in _all_parsers(parser) if getattr(p, "config_file_defaults", False)
               for a in p._actions if a.required]
    for a in relaxed:
        a.required = False
    args, extra = parser.parse_known_args(argv)
    for a in relaxed:
        a.required = True
    cmd = _command_parser(parser, args)
    if getattr(cmd, "config_file_defaults", False):
        if getattr(args, "config", None):
            try:
                config_file_defaults(cmd, args.config)
            except ConfigError as e:
                print(f"{cmd.prog}: error: {e}", file=sys.stderr)
                return 2
        args, extra = parser.parse_known_args(argv)
    if extra:
        _unknown_options(parser, args, extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    where = _command_parser(parser, args).prog
    try:
        if getattr(args, "out", None):
            _check_out(args.out)
        rc = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handler below
        return rc
    except BrokenPipeError:  # `cptpp cpg ... | head`: the reader is gone; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141  # 128 + SIGPIPE
    except KeyboardInterrupt:
        resumable = hasattr(args, "resume") and getattr(args, "out", None)
        print(f"{where}: " + (_resume_hint(args, argv) if resumable else "interrupted"), file=sys.stderr)
        return 130
    except ImportError as e:
        print(f"{where}: error: {_missing_extra(e) or e}", file=sys.stderr)
        return 2
    except (ConfigError, KeyError, FileNotFoundError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"{where}: error: {msg}", file=sys.stderr)
        return 2
    except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as e:
        print(f"{where}: error: {_os_error(e)}", file=sys.stderr)
        return 2


def _os_error(e: OSError) -> str:
    what = {PermissionError: "no permission to write there; choose a folder you can write to",
            NotADirectoryError: "a part of this path is a file, not a folder; choose another path",
            FileExistsError: "a file is in the way (a folder is needed here); choose another path",
            IsADirectoryError: "this is a folder, not a file; choose another path"}[type(e)]
    return f"{e.filename}: {e.strerror.lower() if e.strerror else e}; {what}"


if __name__ == "__main__":
    sys.exit(main())
