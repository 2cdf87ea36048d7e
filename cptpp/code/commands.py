"""`cptpp cpg FILE`: print the code property graph of a source file or one of its methods."""
from __future__ import annotations

import json
import sys
from pathlib import Path

_SUFFIX_LANGUAGE = {".java": "java", ".py": "python"}


def add_commands(subparsers) -> None:
    """Add ``cpg`` to a ``cptpp`` subparsers object (sets ``func=``)."""
    p = subparsers.add_parser(
        "cpg", help="build the code property graph (AST+CFG+DFG) of a Java/Python file or method",
        description="Build the code property graph (AST + CFG + DFG + call edges) of FILE and print it.")
    p.add_argument("file", metavar="FILE", help="a .java or .py file ('-' reads stdin; then give --language)")
    p.add_argument("--format", choices=("json", "dot"), default="json",
                   help="json: nodes + typed edges; dot: Graphviz with one colour per edge kind (default: json)")
    p.add_argument("--method", metavar="NAME", default=None,
                   help="only this method/function (simple or dotted qualified name); default: the whole file")
    p.add_argument("--language", choices=("java", "python"), default=None,
                   help="source language (default: from the file suffix)")
    p.add_argument("--max-nodes", type=int, default=None, help="truncate to at most this many nodes")
    p.add_argument("--normalize-labels", action="store_true", help="split identifiers into lower-case subtokens")
    p.set_defaults(func=run_cpg)


def _language(args) -> str:
    if args.language:
        return args.language
    suffix = Path(args.file).suffix.lower()
    if suffix not in _SUFFIX_LANGUAGE:
        raise ValueError(f"cannot tell the language of {args.file!r} from its suffix; pass --language java|python "
                         f"(known suffixes: {', '.join(_SUFFIX_LANGUAGE)})")
    return _SUFFIX_LANGUAGE[suffix]


def run_cpg(args) -> int:
    from graph_tools.cpg import build_cpg, split_methods  # heavy: tree-sitter

    language = _language(args)
    if args.file == "-":
        source = sys.stdin.read()
    else:
        path = Path(args.file)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {args.file}")
        source = path.read_text(encoding="utf-8", errors="replace")
    granularity = "file"
    if args.method is not None:
        methods = list(split_methods(source, language))
        chosen = [m for m in methods if args.method in (m.name, m.qualname)]
        if not chosen:
            names = sorted({m.qualname for m in methods})
            raise ValueError(f"no method named {args.method!r} in {args.file}; found: "
                             f"{', '.join(names) if names else 'none'}")
        source, granularity = chosen[0].text, "method"
    graph = build_cpg(source, language, granularity=granularity, max_nodes=args.max_nodes,
                      normalize_labels=args.normalize_labels)
    if args.format == "json":
        json.dump(graph.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(graph.to_dot(args.method or Path(args.file).stem))
    return 0
