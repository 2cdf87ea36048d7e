"""Size control for `ProgramGraph`: keep at most ``max_nodes`` nodes.

Policy (in priority order, ties broken by node index, i.e. breadth-first = shallow first):
  1. CFG nodes: statements, function entries and ``<exit>`` nodes;
  2. endpoints of DFG edges (the identifiers that carry data flow) and call sites;
  3. every other AST node, shallowest first.
The first ``max_nodes`` by that order are kept. Edges between kept nodes stay; an AST edge
whose parent was dropped is re-attached to the nearest kept ancestor, so the kept AST stays a
tree (a forest only if the root itself was dropped, which needs max_nodes < #CFG nodes).
"""
from __future__ import annotations

import numpy as np

from .graph import EdgeType, ProgramGraph


def truncate(graph: ProgramGraph, max_nodes: int) -> ProgramGraph:
    """A new graph with at most ``max_nodes`` nodes chosen by the module's policy."""
    n = graph.num_nodes
    if n <= max_nodes:
        return graph
    et, ei = graph.edge_type, graph.edge_index
    tier = np.full(n, 2, dtype=np.int64)
    flow = et >= int(EdgeType.DFG)  # DFG and CALL
    tier[ei[:, flow].ravel()] = 1
    cfg = (et >= int(EdgeType.CFG_NEXT)) & (et <= int(EdgeType.CFG_EXCEPTION))
    tier[ei[:, cfg].ravel()] = 0
    order = np.lexsort((np.arange(n), tier))
    keep = np.zeros(n, dtype=bool)
    keep[order[:max_nodes]] = True
    new_id = np.full(n, -1, dtype=np.int64)
    new_id[keep] = np.arange(int(keep.sum()))

    # AST parent of every node, then the nearest kept ancestor (parents precede children).
    ast = et == int(EdgeType.AST)
    parent = np.full(n, -1, dtype=np.int64)
    parent[ei[1, ast]] = ei[0, ast]
    anc = parent.copy()
    for i in range(n):
        p = anc[i]
        if p >= 0 and not keep[p]:
            anc[i] = anc[p]
    child = np.flatnonzero(keep & (anc >= 0))
    ast_edges = np.stack([new_id[anc[child]], new_id[child]])

    other = ~ast & keep[ei[0]] & keep[ei[1]]
    edge_index = np.concatenate([ast_edges, new_id[ei[:, other]]], axis=1)
    edge_type = np.concatenate([np.full(child.size, int(EdgeType.AST), dtype=np.int64), et[other]])
    kept_nodes = np.flatnonzero(keep)
    old = {int(o): int(new_id[o]) for o in kept_nodes}
    errors = [(old.get(i, -1) if i >= 0 else -1, s, e, w) for i, s, e, w in graph.errors]
    return ProgramGraph(language=graph.language, node_kind=graph.node_kind[keep],
                        node_label=graph.node_label[keep], byte_span=graph.byte_span[keep],
                        edge_index=edge_index, edge_type=edge_type, kind_names=graph.kind_names,
                        source=graph.source, errors=errors, num_nodes_before_truncation=n)
