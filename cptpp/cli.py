"""`cptpp <command>`: one entry point; each area adds its own subcommands.

Each module in ``COMMAND_MODULES`` exposes ``add_commands(subparsers)`` and sets
``func=`` on the parsers it adds; heavy imports happen inside the command functions.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from cptpp.config import ConfigError

COMMAND_MODULES = [
    "cptpp.recsys.commands",
    "cptpp.recsys.data_commands",
    "cptpp.code.commands",
    "cptpp.peft.mamba_commands",
    "cptpp.peft.commands",
    "cptpp.model_commands",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # list valid choices/options, exit 2
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n(run `{self.prog} --help` for the valid options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cptpp", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def _unknown_options(parser: argparse.ArgumentParser, args, extra: list[str]) -> None:
    """Exit with the unknown options, close matches, and every valid option of the command."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cmd = sub.choices.get(getattr(args, "command", None) or "", parser)
    valid = sorted(o for a in cmd._actions for o in a.option_strings if o.startswith("--"))
    lines = [f"{cmd.prog}: error: unrecognized arguments: {' '.join(extra)}"]
    for opt in (e.split("=")[0] for e in extra if e.startswith("-")):
        close = difflib.get_close_matches(opt, valid, n=3)
        if close:
            lines.append(f"  {opt}: did you mean {' or '.join(close)}?")
    lines.append(f"valid options: {' '.join(valid)}")
    cmd.exit(2, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        _unknown_options(parser, args, extra)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ConfigError, KeyError, FileNotFoundError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"cptpp {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
