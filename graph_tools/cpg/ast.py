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
    CFG/DFG passes need; everything else reads the int lists. ``leaves`` lists the nodes
    whose children were not walked (token-like kinds: identifiers, literals, type names);
    ``groups[g]`` lists the nodes of node group g (see ``languages.IDENTIFIERS``...),
    ascending.
    """

    nodes: list
    kinds: list
    parent: list
    first: list
    start: list
    end: list
    src: bytes
    leaves: list
    groups: list

    def children(self, i: int) -> range:
        return range(self.first[i], self.first[i + 1])

    def where(self, group: int) -> list[int]:
        """Ascending indices of the nodes of a node group (``languages.IDENTIFIERS``...).
        The result may be an internal list: do not modify it."""
        return self.groups[group]

    def text(self, i: int) -> str:
        return self.src[self.start[i]:self.end[i]].decode("utf-8", errors="replace")


def flatten(root, src: bytes, kept: list, expand: list, indexed: list) -> FlatAst:
    """Named, non-comment nodes under ``root`` (inclusive), breadth first.

    Tables indexed by kind id: ``kept[k]`` marks the kinds that become nodes; ``expand[k]``
    is false for kinds whose children are never needed (grammar terminals, and token-like
    kinds such as ``integral_type`` whose only children are anonymous): those nodes become
    ``leaves`` and their children's Node objects are never created; ``indexed[k]`` is the
    node group of kind k (0: none) for ``groups``.
    """
    k = root.kind_id
    nodes = [root]
    kinds = [k]
    parent = [-1]
    first = []
    start = [root.start_byte]
    end = [root.end_byte]
    leaves = []
    groups = [[], [], [], [], [], []]  # by node group (languages.IDENTIFIERS ...); 0 unused
    groups[indexed[k]].append(0)
    i = 0
    count = 1
    # Plain `lst.append(x)` calls (not bound-method aliases): the interpreter specializes them.
    for node in nodes:  # the list grows while we iterate: that is the BFS queue
        first.append(count)
        if expand[kinds[i]]:
            # `named_children` drops the anonymous tokens in C (comments stay: `kept` drops them)
            for c in node.named_children:
                k = c.kind_id
                if kept[k]:
                    if indexed[k]:
                        groups[indexed[k]].append(count)
                    nodes.append(c)
                    kinds.append(k)
                    parent.append(i)
                    start.append(c.start_byte)
                    end.append(c.end_byte)
                    count += 1
        else:
            leaves.append(i)
        i += 1
    first.append(count)
    return FlatAst(nodes, kinds, parent, first, start, end, src, leaves, groups)
