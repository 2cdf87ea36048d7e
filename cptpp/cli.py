"""`cptpp <command>`: one entry point; each area adds its own subcommands.

Each module in ``COMMAND_MODULES`` exposes ``add_commands(subparsers)`` and sets
``func=`` on the parsers it adds; heavy imports happen inside the command functions.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from cptpp.config import ConfigError

COMMAND_MODULES = [
    "cptpp.recsys.commands",
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
