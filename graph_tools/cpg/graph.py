"""`ProgramGraph`: the arrays a code property graph is made of, and its text renderings."""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field

import numpy as np


class EdgeType(enum.IntEnum):
    """Typed edges of a code property graph. Values are stable: they index embedding tables."""

    AST = 0            # parent -> named child
    CFG_NEXT = 1       # sequential control flow (and entry -> first statement)
    CFG_TRUE = 2       # condition holds (if/loop header -> body, switch -> case)
    CFG_FALSE = 3      # condition fails (if -> else/after, loop header -> exit/else)
    CFG_BACK = 4       # edge that closes a loop (body end / continue -> loop header)
    CFG_EXCEPTION = 5  # statement in try -> handler; throw/raise -> handler or exit
    DFG = 6            # reaching definition -> use of the same variable
    CALL = 7           # call site -> declaration of a function/method in the same unit

    @property
    def is_cfg(self) -> bool:
        return EdgeType.CFG_NEXT <= self <= EdgeType.CFG_EXCEPTION


# One colour per edge kind; the names are valid in both Graphviz and matplotlib.
EDGE_COLORS = {
    EdgeType.AST: "gray",
    EdgeType.CFG_NEXT: "black",
    EdgeType.CFG_TRUE: "forestgreen",
    EdgeType.CFG_FALSE: "red",
    EdgeType.CFG_BACK: "purple",
    EdgeType.CFG_EXCEPTION: "darkorange",
    EdgeType.DFG: "blue",
    EdgeType.CALL: "deeppink",
}


@dataclass
class ProgramGraph:
    """A code property graph over one method/function or one file.

    Nodes are the *named* tree-sitter nodes of the unit (comments excluded) in breadth-first
    order (node 0 is the unit root; a parent always precedes its children), followed by one
    synthetic ``<exit>`` node per function-like unit in it.

    Attributes:
        language: ``"java"`` or ``"python"``.
        node_kind: ``[N]`` int64 tree-sitter kind ids of ``language``; see ``kind_names``.
        node_label: ``[N]`` object array of str: source text for leaves (identifiers,
            literals), the kind name for inner nodes (plus the operator for operator nodes).
        byte_span: ``[N, 2]`` int64 ``[start, end)`` byte offsets into ``source`` (UTF-8).
        edge_index: ``[2, E]`` int64 (source row, target row).
        edge_type: ``[E]`` int64 values of ``EdgeType``.
        kind_names: kind id -> name table for ``language`` (shared, not copied).
        source: the text the spans refer to (the snippet as given, never the wrapper).
        errors: ``(node_index_or_-1, start_byte, end_byte, what)`` for every ERROR node and
            MISSING token tree-sitter reported; empty when the unit parsed cleanly.
        num_nodes_before_truncation: node count before ``max_nodes`` was applied.
    """

    language: str
    node_kind: np.ndarray
    node_label: np.ndarray
    byte_span: np.ndarray
    edge_index: np.ndarray
    edge_type: np.ndarray
    kind_names: tuple
    source: str
    errors: list = field(default_factory=list)
    num_nodes_before_truncation: int = -1

    @property
    def num_nodes(self) -> int:
        return int(self.node_kind.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_type.shape[0])

    @property
    def node_type(self) -> list[str]:
        """Kind names per node (``[N]`` list of str)."""
        names = self.kind_names
        return [names[k] for k in self.node_kind.tolist()]

    @property
    def line_span(self) -> np.ndarray:
        """``[N, 4]`` int64 ``(start_line, start_col, end_line, end_col)``, 0-based, byte columns."""
        data = self.source.encode("utf-8")
        newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        line_start = np.concatenate([[0], newlines + 1])
        out = np.empty((self.num_nodes, 4), dtype=np.int64)
        for col, b in ((0, self.byte_span[:, 0]), (2, self.byte_span[:, 1])):
            line = np.searchsorted(newlines, b, side="left")
            out[:, col] = line
            out[:, col + 1] = b - line_start[line]
        return out

    def edges(self, kind: EdgeType) -> list[tuple[int, int]]:
        """The ``(src, dst)`` pairs of one edge kind, in insertion order."""
        sel = self.edge_type == int(kind)
        return list(zip(self.edge_index[0, sel].tolist(), self.edge_index[1, sel].tolist()))

    def node_text(self, i: int) -> str:
        s, e = self.byte_span[i].tolist()
        return self.source.encode("utf-8")[s:e].decode("utf-8", errors="replace")

    def to_json(self) -> dict:
        """Plain-data form: ``{"language", "nodes": [...], "edges": [...], "errors": [...]}``."""
        spans = self.line_span.tolist()
        types = self.node_type
        nodes = [
            {"id": i, "kind": types[i], "label": str(self.node_label[i]),
             "bytes": self.byte_span[i].tolist(), "span": spans[i]}
            for i in range(self.num_nodes)
        ]
        edges = [
            {"src": s, "dst": d, "type": EdgeType(t).name}
            for s, d, t in zip(self.edge_index[0].tolist(), self.edge_index[1].tolist(), self.edge_type.tolist())
        ]
        errors = [{"node": n, "bytes": [s, e], "what": w} for n, s, e, w in self.errors]
        return {"language": self.language, "nodes": nodes, "edges": edges, "errors": errors,
                "num_nodes_before_truncation": self.num_nodes_before_truncation}

    def to_dot(self, name: str = "cpg") -> str:
        """Graphviz text; edge colour per ``EdgeType`` (legend in ``EDGE_COLORS``)."""
        lines = [f"digraph {_dot_id(name)} {{", "  node [shape=box, fontname=monospace];"]
        types = self.node_type
        for i in range(self.num_nodes):
            text = str(self.node_label[i])
            label = types[i] if text == types[i] else f"{types[i]}\\n{_dot_escape(text)}"
            lines.append(f'  n{i} [label="{label}"];')
        for s, d, t in zip(self.edge_index[0].tolist(), self.edge_index[1].tolist(), self.edge_type.tolist()):
            et = EdgeType(t)
            style = ', style=dashed' if et in (EdgeType.DFG, EdgeType.CALL) else ""
            lines.append(f'  n{s} -> n{d} [color={EDGE_COLORS[et]}, label="{et.name}"{style}];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def dumps(self) -> str:
        return json.dumps(self.to_json())


def _dot_escape(text: str) -> str:
    text = text if len(text) <= 40 else text[:37] + "..."
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _dot_id(name: str) -> str:
    return '"' + name.replace('"', "") + '"'
