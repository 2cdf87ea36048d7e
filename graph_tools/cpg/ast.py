"""Breadth-first walk of a tree-sitter subtree into flat lists (the AST layer of the CPG).

Breadth-first order makes every node's named children contiguous, so ``children(i)`` is
``range(first[i], first[i + 1])`` with no per-node child lists, and a parent always has a
smaller index than its children (one forward pass computes anything inherited from parents).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FlatAst:
    """Named nodes of one subtree; index 0 is the subtree root.

    ``nodes`` keeps the tree-sitter ``Node`` objects for the few field look-ups the
    CFG/DFG passes need; everything else reads the int lists.
    """

    nodes: list
    kinds: list
    parent: list
    first: list
    start: list
    end: list
    src: bytes

    def children(self, i: int) -> range:
        return range(self.first[i], self.first[i + 1])

    def text(self, i: int) -> str:
        return self.src[self.start[i]:self.end[i]].decode("utf-8", errors="replace")


def flatten(root, kept: bytearray, src: bytes, leaf_kinds: bytearray | None = None) -> FlatAst:
    """Named, non-comment nodes under ``root`` (inclusive), breadth first.

    ``leaf_kinds[k]`` marks kinds whose children are never needed (grammar terminals, and
    token-like kinds such as ``integral_type`` whose only children are anonymous); skipping
    them saves creating their children's Node objects.
    """
    if leaf_kinds is None:
        leaf_kinds = bytearray(65536)
    nodes = [root]
    kinds = [root.kind_id]
    parent = [-1]
    first = []
    push_node, push_kind, push_parent, push_first = nodes.append, kinds.append, parent.append, first.append
    i = 0
    count = 1
    for node in nodes:  # the list grows while we iterate: that is the BFS queue
        push_first(count)
        if not leaf_kinds[kinds[i]]:
            for c in node.children:
                k = c.kind_id
                if kept[k]:
                    push_node(c)
                    push_kind(k)
                    push_parent(i)
                    count += 1
        i += 1
    push_first(count)
    start = [n.start_byte for n in nodes]
    end = [n.end_byte for n in nodes]
    return FlatAst(nodes, kinds, parent, first, start, end, src)
