"""CodeBLEU (Ren et al. 2020) with syntax and data flow taken from our own code property graph.

    CodeBLEU = 0.25 BLEU + 0.25 weighted-BLEU + 0.25 syntax match + 0.25 dataflow match     (0..100)

* **BLEU**: corpus BLEU-4 on ``code_tokens`` with NLTK's "method1" smoothing as the CodeXGLUE
  script uses it (an order with no match counts 0.1 matches; no unigram match gives 0).
* **weighted BLEU**: the same, but per order the *recall* of reference n-grams (clipped matches /
  reference n-grams), and for unigrams each reference token type weighs 1 if it is a keyword of
  the language and 0.2 otherwise (the script's definition).
* **syntax match**: over the corpus, the fraction of reference AST subtrees (every node with at
  least one child, written as an S-expression of node kinds) that also occur in the candidate's AST.
* **dataflow match**: over the corpus, the fraction of reference DFG edges that the candidate also
  has (clipped counts). An edge is ``(def variable, use variable, def-site kind, use-site kind)``
  with variables renamed ``0, 1, ...`` in order of first appearance, so renaming keeps the score.

Java and Python go through ``graph_tools.cpg`` (its AST and its reaching-definition DFG edges).
C# has no CPG: its syntax match parses with tree-sitter-c-sharp when that package is installed and
its dataflow match is not computed. A part that cannot be computed (no parser, or no reference
subtree / DFG edge in the whole corpus) is None, and CodeBLEU is the weighted mean of the parts
that exist (weights renormalized). docs/code_metrics.md lists every difference from CodeXGLUE.
"""
from __future__ import annotations

import importlib.util
import keyword
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from cptpp.config import check_choice

from .metrics import code_tokens

LANGUAGES = ("java", "python", "csharp")
PARTS = ("ngram", "weighted", "syntax", "dataflow")

_JAVA_WORDS = (
    "abstract assert boolean break byte case catch char class const continue default do double else enum extends "
    "final finally float for goto if implements import instanceof int interface long native new package private "
    "protected public return short static strictfp super switch synchronized this throw throws transient try void "
    "volatile while true false null")
_CSHARP_WORDS = (
    "abstract as base bool break byte case catch char checked class const continue decimal default delegate do "
    "double else enum event explicit extern false finally fixed float for foreach goto if implicit in int interface "
    "internal is lock long namespace new null object operator out override params private protected public readonly "
    "ref return sbyte sealed short sizeof stackalloc static string struct switch this throw true try typeof uint "
    "ulong unchecked unsafe ushort using virtual void volatile while")
JAVA_KEYWORDS = frozenset(_JAVA_WORDS.split())
CSHARP_KEYWORDS = frozenset(_CSHARP_WORDS.split())
KEYWORDS = {"java": JAVA_KEYWORDS, "python": frozenset(keyword.kwlist), "csharp": CSHARP_KEYWORDS}

# A Java reference that is not a method/file (an assert statement) is parsed as the body of this
# method, candidate and reference alike; only nodes inside the snippet count.
_JAVA_BODY = ("void __snippet__() {\n", "\n}")


# --------------------------------------------------------------------------- n-gram parts


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _brevity_penalty(hyp_len: int, ref_len: int) -> float:
    if hyp_len == 0:
        return 0.0
    return 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)


def ngram_match(hyps: Sequence[str], refs: Sequence[str], keywords: frozenset | None = None,
                max_n: int = 4, epsilon: float = 0.1) -> float:
    """CodeBLEU's BLEU part (``keywords=None``: precision) or weighted part (recall, keyword-weighted unigrams).

    On 0..1; see the module docstring. Not sacrebleu's BLEU: the script floors each sentence's n-gram
    total at 1 before summing and smooths a zero match to ``epsilon`` (NLTK method1), which no
    sacrebleu smoothing reproduces, and the weighted part is a recall.
    """
    num, den = [0.0] * max_n, [0.0] * max_n
    hyp_len = ref_len = 0
    for h, r in zip(hyps, refs):
        ht, rt = code_tokens(h), code_tokens(r)
        hyp_len, ref_len = hyp_len + len(ht), ref_len + len(rt)
        for n in range(1, max_n + 1):
            hc, rc = _ngrams(ht, n), _ngrams(rt, n)
            if keywords is None:
                num[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
                den[n - 1] += max(1, sum(hc.values()))
            else:
                weight = {g: (1.0 if n > 1 or g[0] in keywords else 0.2) for g in rc}
                num[n - 1] += sum(min(c, hc[g]) * weight[g] for g, c in rc.items())
                den[n - 1] += max(1.0, sum(c * weight[g] for g, c in rc.items()))
    if num[0] == 0:
        return 0.0
    log_p = sum(math.log((m if m > 0 else epsilon) / d) for m, d in zip(num, den)) / max_n
    return _brevity_penalty(hyp_len, ref_len) * math.exp(log_p)


# --------------------------------------------------------------------------- trees and data flow

@dataclass
class ParsedCode:
    """What the syntax and dataflow parts compare: subtree S-expressions and normalized DFG edges."""

    subtrees: list[str]
    dataflow: list[tuple] | None     # None: no data flow for this language
    errors: int                      # parse errors (ERROR / MISSING nodes)


def subtree_sexps(kinds: Sequence[str], children: Sequence[Sequence[int]]) -> list[str]:
    """S-expressions of every node with at least one child; nodes are ordered parent before child."""
    sexp = [""] * len(kinds)
    for i in range(len(kinds) - 1, -1, -1):
        kids = children[i]
        sexp[i] = f"({kinds[i]} {' '.join(sexp[c] for c in kids)})" if kids else kinds[i]
    return [sexp[i] for i in range(len(kinds)) if children[i]]


def normalize_dataflow(edges: Sequence[tuple[str, str, str, str]]) -> list[tuple]:
    """Rename variables ``0, 1, ...`` in order of first appearance over position-sorted edges."""
    names: dict[str, int] = {}
    out = []
    for d, u, d_site, u_site in edges:
        dv = names.setdefault(d, len(names))
        uv = names.setdefault(u, len(names))
        out.append((dv, uv, d_site, u_site))
    return out


def parse_cpg(code: str, language: str, body: bool = False) -> ParsedCode:
    """Subtrees and DFG edges of ``code`` from ``graph_tools.cpg``; ``body``: parse Java as a method body."""
    from graph_tools.cpg import EdgeType, build_cpg

    prefix, suffix = _JAVA_BODY if body else ("", "")
    g = build_cpg(prefix + code + suffix, language, granularity="method")
    lo = len(prefix.encode())
    hi = lo + len(code.encode())
    inside = [not body or (lo <= s <= e <= hi) for s, e in g.byte_span.tolist()]
    src, dst = g.edge_index
    ast = g.edge_type == int(EdgeType.AST)
    parent = [-1] * g.num_nodes
    children: list[list[int]] = [[] for _ in range(g.num_nodes)]
    for p, c in sorted(zip(src[ast].tolist(), dst[ast].tolist())):
        if inside[p] and inside[c]:
            parent[c] = p
            children[p].append(c)
    keep = [i for i in range(g.num_nodes) if inside[i]]
    index = {old: new for new, old in enumerate(keep)}
    kinds = [g.kind_names[g.node_kind[i]] for i in keep]
    subtrees = subtree_sexps(kinds, [[index[c] for c in children[i]] for i in keep])

    def site(i: int) -> str:
        return g.kind_names[g.node_kind[parent[i]]] if parent[i] >= 0 else ""

    dfg = g.edge_type == int(EdgeType.DFG)
    starts = g.byte_span[:, 0].tolist()
    pairs = sorted(((d, u) for d, u in zip(src[dfg].tolist(), dst[dfg].tolist()) if inside[d] and inside[u]),
                   key=lambda e: (starts[e[1]], starts[e[0]], e))
    edges = [(str(g.node_label[d]), str(g.node_label[u]), site(d), site(u)) for d, u in pairs]
    return ParsedCode(subtrees, normalize_dataflow(edges), len(g.errors))


def csharp_available() -> bool:
    return importlib.util.find_spec("tree_sitter_c_sharp") is not None


_CSHARP_PARSER = None


def parse_csharp(code: str) -> ParsedCode:
    """Subtrees of ``code`` parsed by tree-sitter-c-sharp (named nodes, comments dropped); no data flow."""
    global _CSHARP_PARSER
    if _CSHARP_PARSER is None:
        import tree_sitter
        import tree_sitter_c_sharp

        _CSHARP_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_c_sharp.language()))
    root = _CSHARP_PARSER.parse(code.encode()).root_node
    nodes, children, errors = [root], [], 0
    for node in nodes:  # breadth first: a parent precedes its children
        errors += node.is_error or node.is_missing
        kids = [c for c in node.named_children if c.type != "comment"]
        children.append(list(range(len(nodes), len(nodes) + len(kids))))
        nodes.extend(kids)
    return ParsedCode(subtree_sexps([n.type for n in nodes], children), None, errors)


def parse_pair(hyp: str, ref: str, language: str) -> tuple[ParsedCode, ParsedCode] | None:
    """Parsed candidate and reference, or None when the language has no parser here (C# without its grammar)."""
    if language == "csharp":
        return (parse_csharp(hyp), parse_csharp(ref)) if csharp_available() else None
    ref_parsed = parse_cpg(ref, language)
    if language == "java" and ref_parsed.errors:
        as_body = parse_cpg(ref, language, body=True)
        if as_body.errors < ref_parsed.errors:
            return parse_cpg(hyp, language, body=True), as_body
    return parse_cpg(hyp, language), ref_parsed


# --------------------------------------------------------------------------- CodeBLEU

def codebleu(hyps: Sequence[str], refs: Sequence[str], language: str,
             weights: tuple[float, float, float, float] = (0.25, 0.25, 0.25, 0.25)) -> dict[str, float | None]:
    """``codebleu`` and its parts ``codebleu_ngram``/``_weighted``/``_syntax``/``_dataflow`` (0..100 or None)."""
    check_choice("language", language, LANGUAGES)
    if len(hyps) != len(refs):
        raise ValueError(f"codebleu: {len(hyps)} hypotheses but {len(refs)} references")
    parts: dict[str, float | None] = {"ngram": ngram_match(hyps, refs),
                                      "weighted": ngram_match(hyps, refs, KEYWORDS[language]),
                                      "syntax": None, "dataflow": None}
    syn = [0, 0]
    flow = [0, 0]
    parsed_any = has_flow = False
    for h, r in zip(hyps, refs):
        pair = parse_pair(h, r, language)
        if pair is None:
            break
        parsed_any = True
        cand, ref = pair
        have = set(cand.subtrees)
        syn[0] += sum(s in have for s in ref.subtrees)
        syn[1] += len(ref.subtrees)
        if ref.dataflow is not None:
            has_flow = True
            got = Counter(cand.dataflow)
            flow[0] += sum(min(c, got[e]) for e, c in Counter(ref.dataflow).items())
            flow[1] += len(ref.dataflow)
    if parsed_any and syn[1]:
        parts["syntax"] = syn[0] / syn[1]
    if has_flow and flow[1]:
        parts["dataflow"] = flow[0] / flow[1]
    present = [(w, parts[p]) for w, p in zip(weights, PARTS) if parts[p] is not None]
    total = sum(w for w, _ in present)
    out = {"codebleu": 100.0 * sum(w * v for w, v in present) / total if total else 0.0}
    out.update({f"codebleu_{p}": None if parts[p] is None else 100.0 * parts[p] for p in PARTS})
    return out
