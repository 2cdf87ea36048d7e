"""Readable edge sets for the CPG tests: nodes are named ``label@line`` (1-based lines).

Identifiers are ``name@line``, or ``name@line:col`` (0-based byte column) when the same name
occurs twice on that line; other nodes are ``kind@line`` (``<exit>@line`` for exits).
"""
from collections import Counter

from graph_tools.cpg import EdgeType


def names(g):
    spans = g.line_span
    types = g.node_type
    base = []
    for i in range(g.num_nodes):
        line = spans[i][0] + 1
        if types[i] == "identifier":
            base.append((f"{g.node_label[i]}@{line}", spans[i][1]))
        else:
            base.append((f"{types[i]}@{line}", None))
    counts = Counter(b for b, col in base if col is not None)
    return [f"{b}:{col}" if col is not None and counts[b] > 1 else b for b, col in base]


def edge_set(g, *kinds):
    n = names(g)
    out = set()
    for kind in kinds:
        for s, d in g.edges(kind):
            out.add((n[s], n[d]) if len(kinds) == 1 else (n[s], n[d], kind.name))
    return out


CFG_KINDS = (EdgeType.CFG_NEXT, EdgeType.CFG_TRUE, EdgeType.CFG_FALSE, EdgeType.CFG_BACK, EdgeType.CFG_EXCEPTION)


def cfg_set(g):
    """CFG edges as (src, dst, short type) with type in N/T/F/B/X."""
    short = {"CFG_NEXT": "N", "CFG_TRUE": "T", "CFG_FALSE": "F", "CFG_BACK": "B", "CFG_EXCEPTION": "X"}
    return {(s, d, short[t]) for s, d, t in edge_set(g, *CFG_KINDS)}
