"""Code property graphs (AST + CFG + DFG + call edges) for Java and Python from tree-sitter.

    >>> g = build_cpg("int f(int a) { return a + 1; }", "java")
    >>> g.edges(EdgeType.DFG)   # [(param a, use of a)]

See docs/cpg.md for node/edge conventions, truncation policy and benchmarks.
"""
from .batch import to_pyg, to_pyg_data
from .build import build_cpg
from .graph import EDGE_COLORS, EdgeType, ProgramGraph
from .labels import normalize_label
from .methods import Method, split_methods
from .truncate import truncate

__all__ = ["build_cpg", "ProgramGraph", "EdgeType", "EDGE_COLORS", "to_pyg", "to_pyg_data", "split_methods", "Method",
           "normalize_label", "truncate"]
