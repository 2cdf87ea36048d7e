"""`build_cpg`: source text -> `ProgramGraph` (AST + CFG + DFG + call edges)."""
from __future__ import annotations

import gc
import re
import struct
import sys
from operator import itemgetter

import numpy as np

from .ast import flatten
from .cfg import build_cfgs
from .dfg import dfg_edges
from .graph import EdgeType, ProgramGraph
from .labels import normalize_label
from .languages import CALLS, ERROR_KIND, FUNCTIONS, OPERATORS, get_spec
from .truncate import truncate

GRANULARITIES = ("method", "file")
_AST, _DFG, _CALL = int(EdgeType.AST), int(EdgeType.DFG), int(EdgeType.CALL)

# Wrapper that makes a bare Java method a compilation unit. The prefix ends with a newline so
# the snippet keeps its columns and every line number shifts by exactly one.
_JAVA_PREFIX = b"class _CpgWrapper_ {\n"
_JAVA_SUFFIX = b"\n}\n"
# A Java text is a file (not a bare method) when its first declaration is a type or a
# package/import line; annotations, modifiers and comments may come first. The comments are
# skipped by an atomic group (no backtracking into them), in the same regex.
_JAVA_FILE_RE = re.compile(
    rb"(?>(?:\s*(?://[^\n]*|/\*.*?\*/))*)"
    rb"\s*(?:(?:@\w[\w.]*(?:\([^)]*\))?|public|protected|private|abstract|final|static|strictfp|sealed"
    rb"|non-sealed)\s+)*"
    rb"(?:package|import|class|interface|enum|record|@interface)\b", re.S)


def _is_java_file(src: bytes) -> bool:
    return _JAVA_FILE_RE.match(src) is not None


def _function_kinds(spec):
    """Kinds that make a unit for granularity="method" (cached on the spec)."""
    kinds = getattr(spec, "_unit_kinds", None)
    if kinds is None:
        if spec.name == "java":
            kinds = frozenset({spec.METHOD_DECLARATION, spec.CONSTRUCTOR_DECLARATION,
                               spec.COMPACT_CONSTRUCTOR_DECLARATION})
        else:
            kinds = frozenset({spec.FUNCTION_DEFINITION})
        spec._unit_kinds = kinds
    return kinds


def _find_unit(root, kinds, body_field):
    """First node of one of ``kinds`` in breadth-first order (the unit for granularity=method)."""
    # Fast path for the usual shapes: wrapper class -> body -> method, or module -> def.
    top = root.named_child(0) if root.named_child_count else None
    if top is not None:
        if top.kind_id in kinds:
            return top
        body = top.child_by_field_id(body_field)  # the "body" field
        first = body.named_child(0) if body is not None and body.named_child_count else None
        if first is not None and first.kind_id in kinds:
            return first
    queue = [root]
    i = 0
    while i < len(queue):
        n = queue[i]
        if n.kind_id in kinds:
            return n
        queue.extend(n.named_children)
        i += 1
    return None


def _errors(root, offset: int, limit: int, in_unit) -> list:
    """(node, start, end, what) for ERROR nodes and MISSING tokens under ``root``; spans are
    shifted by ``-offset`` and clamped to ``[0, limit]`` (the wrapper is not the user's text)."""
    out = []
    cursor = root.walk()
    while True:
        n = cursor.node
        if n.is_error or n.is_missing:
            what = "ERROR" if n.is_error else f"MISSING {n.type}"
            out.append((in_unit.get(n.id, -1), min(max(n.start_byte - offset, 0), limit),
                        min(max(n.end_byte - offset, 0), limit), what))
        if n.has_error and cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return out


def build_cpg(source, language: str = "java", granularity: str = "method", max_nodes: int | None = None,
              normalize_labels: bool = False) -> ProgramGraph:
    """Code property graph of one method/function (``granularity="method"``) or one file.

    Args:
        source: code as ``str`` (or UTF-8 ``bytes``; invalid UTF-8 is a ValueError, see
            `decode_source`). Java given as a bare method (no class
            around it, as in code-task datasets) is parsed inside a dummy class; spans still
            refer to ``source``.
        language: ``"java"`` or ``"python"``.
        granularity: ``"method"`` builds the first method/function found (breadth first) and
            falls back to the whole text when there is none (a statement snippet);
            ``"file"`` builds the whole compilation unit / module.
        max_nodes: keep at most this many nodes (policy in `truncate`); None keeps all.
        normalize_labels: replace labels by ``normalize_label`` subtokens joined by spaces.

    Returns:
        A `ProgramGraph`. Never raises on malformed code: the graph covers what parsed and
        ``graph.errors`` lists tree-sitter's ERROR / MISSING nodes.
    """
    # Building allocates many short-lived tree-sitter Node objects and small lists; the cyclic
    # GC would rescan the caller's whole heap every few hundred of them (measured: flatten 3x
    # slower inside the benchmark). Nothing here creates reference cycles, so pause it.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _build(source, language, granularity, max_nodes, normalize_labels)
    finally:
        if paused:
            gc.enable()


def decode_source(data: bytes, name: str = "source") -> str:
    """UTF-8 ``data`` as text; invalid UTF-8 is a ValueError naming the byte, line and column.

    Graph spans are byte offsets into the UTF-8 text. Decoding with replacement characters would
    shift every offset after a bad byte (one bad byte -> a 3-byte U+FFFD), so it is refused instead.
    """
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{name}: not UTF-8 at byte {e.start} (line {line}, column {col}: byte "
                         f"0x{data[e.start]:02x}); code property graph spans are byte offsets of UTF-8 text, "
                         "so convert the file to UTF-8 first (e.g. iconv -f latin1 -t utf-8)") from None


def _build(source, language, granularity, max_nodes, normalize_labels):
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")
    if max_nodes is not None and max_nodes < 1:
        raise ValueError(f"max_nodes must be >= 1 (or None for no limit), got {max_nodes}")
    spec = get_spec(language)
    text = decode_source(source) if isinstance(source, (bytes, bytearray)) else source
    raw = text.encode("utf-8")
    offset = 0
    if language == "java" and not _is_java_file(raw):
        data = _JAVA_PREFIX + raw + _JAVA_SUFFIX
        offset = len(_JAVA_PREFIX)
    else:
        data = raw
    tree = spec.parser.parse(data)
    root = tree.root_node
    unit = None
    if granularity == "method" or offset:
        unit = _find_unit(root, _function_kinds(spec), spec.body_field)
    if unit is None:
        unit = root
    ast = flatten(unit, data, spec.kept, spec.expand, spec.indexed)
    comp_kinds = spec.comprehension_kinds
    cfg, notes = _cfgs_any_depth(ast, spec, comp_kinds)
    label_list = _labels(ast, spec, normalize=False)
    dsrc, ddst = dfg_edges(ast, spec, cfg, label_list, comp_kinds)
    csrc, cdst = _call_edges(ast, spec, label_list)
    if normalize_labels:
        label_list = [" ".join(normalize_label(x)) or x for x in label_list]
    has_error = unit.has_error
    errors = []
    if has_error:
        in_unit = {node.id: i for i, node in enumerate(ast.nodes)}
        errors = _errors(unit, offset, len(raw), in_unit)
    graph = _assemble(spec, ast, cfg, label_list, (dsrc, ddst), (csrc, cdst), has_error, offset,
                      len(raw) if unit is root else -1, text, errors + notes)
    if max_nodes is not None and graph.num_nodes > max_nodes:
        graph = truncate(graph, max_nodes)
    return graph


def _assemble(spec, ast, cfg, labels, dfg, calls, has_error, offset, clamp, source, errors):
    """`ProgramGraph` from the layers' lists. Spans are shifted by ``-offset`` and, when
    ``clamp >= 0``, clipped to ``[0, clamp]`` (the wrapper is not the user's text)."""
    dsrc, ddst = dfg
    csrc, cdst = calls
    kinds, starts, ends = ast.kinds, ast.start, ast.end
    if has_error:
        kinds = [spec.ERROR_REMAP if k == ERROR_KIND else k for k in kinds]
    n_ast = len(kinds)
    n = cfg.next_id
    n_exit = n - n_ast
    exit_at = [ends[decl] for _, decl in cfg.exits]
    n_dfg, n_call = len(dsrc), len(csrc)
    n_edges = n_ast - 1 + len(cfg.src) + n_dfg + n_call
    # Every node and edge array is a view into one int64 buffer, filled by a single C-level
    # pack (several times cheaper than np.array on lists of Python ints):
    # [kinds | starts | ends | edge sources | edge targets | edge types].
    values = [*kinds, *[spec.EXIT] * n_exit, *starts, *exit_at, *ends, *exit_at,
              *ast.parent[1:], *cfg.src, *dsrc, *csrc,
              *range(1, n_ast), *cfg.dst, *ddst, *cdst,
              *[_AST] * (n_ast - 1), *cfg.typ, *[_DFG] * n_dfg, *[_CALL] * n_call]
    buf = np.empty(len(values), dtype=np.int64)
    struct.pack_into(f"{len(values)}q", buf, 0, *values)
    edge_type = buf[3 * n + 2 * n_edges:]
    if offset:  # spans refer to the snippet, not the wrapper
        spans = buf[n:3 * n]
        spans -= offset
        if clamp >= 0:  # fell back to the whole wrapped text: clamp the wrapper's own spans
            np.clip(spans, 0, clamp, out=spans)
    if n_exit:
        labels = labels + ["<exit>"] * n_exit
    node_label = np.fromiter(labels, dtype=object, count=n)
    return ProgramGraph(spec.name, buf[:n], node_label, buf[n:3 * n].reshape(2, n).T,
                        buf[3 * n:3 * n + 2 * n_edges].reshape(2, n_edges), edge_type, spec.kind_names, source,
                        errors, n)


def _cfgs_any_depth(ast, spec, comp_kinds):
    """`build_cfgs`, retried with a higher recursion limit for deeply nested statements
    (hundreds of `else if` levels); if even that fails, no CFG (and so no DFG) and a note."""
    try:
        return build_cfgs(ast, spec, comp_kinds), []
    except RecursionError:
        pass
    old = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(old, 20 * len(ast.kinds) + 1000, 100_000))
        return build_cfgs(ast, spec, comp_kinds), []
    except RecursionError:
        from .cfg import CfgBuilder
        return CfgBuilder(ast, spec), [(-1, 0, 0, "CFG skipped: statements nested too deeply")]
    finally:
        sys.setrecursionlimit(old)


def _labels(ast, spec, normalize=False):
    """Per AST node: source text for token-like nodes (identifiers, literals, type names), the
    kind name for other nodes, with the operator appended for operator nodes
    (``"binary_expression +"``). Exits are labelled ``<exit>`` by the caller."""
    names, first, src, kinds = spec.label_names, ast.first, ast.src, ast.kinds
    start, end = ast.start, ast.end
    # kind names, gathered in C (a list comprehension costs more per node)
    out = list(itemgetter(*kinds)(names)) if len(kinds) > 1 else [names[kinds[0]]]
    if src.isascii():  # the usual case: str slices by byte offset, no decode per token
        text = src.decode("ascii")
        for i in ast.leaves:
            out[i] = text[start[i]:end[i]]
    else:
        for i in ast.leaves:
            out[i] = src[start[i]:end[i]].decode("utf-8", errors="replace")
    for i in ast.where(OPERATORS):
        # operator = the node's text outside its named children, e.g. "+", "+=", "not in":
        # the gap(s) between children, or the prefix/suffix of a one-operand node
        a, b = first[i], first[i + 1]
        if b - a == 2:
            op = src[end[a]:start[b - 1]].strip()
        elif b - a > 2:
            op = b" ".join(src[end[c]:start[c + 1]].strip() for c in range(a, b - 1))
        elif b - a == 1:
            op = (src[start[i]:start[a]] + src[end[a]:end[i]]).strip()
        else:
            op = src[start[i]:end[i]].strip()
        out[i] = out[i] + " " + op.decode("utf-8", errors="replace")
    if normalize:
        out = [" ".join(normalize_label(x)) or x for x in out]
    return out


def _call_edges(ast, spec, labels):
    """Call site -> declaration of a same-named function/method in the unit.

    ``labels[i]`` is node i's text for identifiers (as `_labels` makes, before normalization)."""
    k, first = ast.kinds, ast.first
    ids = spec.identifier_kinds
    calls = ast.where(CALLS)
    if not calls:
        return [], []
    decls: dict[str, list[int]] = {}
    decl_kind = spec.decl_kind
    for i in ast.where(FUNCTIONS):
        if k[i] != decl_kind:
            continue
        for c in ast.children(i):
            if k[c] in ids:
                decls.setdefault(labels[c], []).append(i)
                break
    if not decls:
        return [], []
    java = spec.name == "java"
    src, dst = [], []
    for i in calls:
        f = first[i]
        if f >= first[i + 1]:
            continue
        name = None
        if java:
            if k[f] in ids and (f + 1 >= first[i + 1] or k[f + 1] == spec.ARGUMENT_LIST):
                name = labels[f]
            elif k[f] == spec.THIS and f + 1 < first[i + 1] and k[f + 1] in ids:
                name = labels[f + 1]
        else:
            if k[f] in ids:
                name = labels[f]
            elif k[f] == spec.ATTRIBUTE:
                obj, attr = first[f], first[f] + 1
                if attr < first[f + 1] and k[obj] in ids and labels[obj] in ("self", "cls"):
                    name = ast.text(attr)
        for d in decls.get(name, ()):
            src.append(i)
            dst.append(d)
    return src, dst
