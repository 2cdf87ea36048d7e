"""Data flow: reaching definitions over the CFG, DFG edges from a definition to each use it reaches.

Variables are identifier names, plus access paths ``obj.field`` (Java ``field_access``, Python
``attribute``) whose object is a chain of plain names (``this.x``, ``self.a.b``). A use of a
path also uses its root name (``self.x`` uses ``self``). Writes to an element (``a[i] = v``)
are *weak* definitions: they reach later uses of ``a`` without killing earlier definitions.
Every identifier belongs to its innermost CFG node (statement); within a statement, uses are
evaluated before the definitions the statement makes (``x = x + 1``), by sort key.
Each use/definition is an identifier node, so DFG edges go identifier -> identifier.
Method names (Java ``a.m()``, Python ``a.m()``), labels, keyword-argument names and type
names are not variables. Python comprehension targets are local to their comprehension.
"""
from __future__ import annotations

USE, DEF, WEAK = 0, 1, 2

# Parent kinds under which an identifier child can only be read (fast path before `role`).
_JAVA_PLAIN_USE_PARENTS = (
    "argument_list", "binary_expression", "return_statement", "parenthesized_expression", "ternary_expression",
    "unary_expression", "array_creation_expression", "dimensions_expr", "cast_expression", "instanceof_expression",
    "throw_statement", "array_initializer", "element_value_array_initializer", "expression_statement")
_PYTHON_PLAIN_USE_PARENTS = (
    "argument_list", "binary_operator", "comparison_operator", "boolean_operator", "not_operator", "unary_operator",
    "return_statement", "conditional_expression", "if_statement", "elif_clause", "while_statement",
    "assert_statement", "call", "pair", "interpolation", "await", "yield", "expression_statement",
    "print_statement", "slice")


def _cached(spec, name, make):
    """A per-language constant, computed on first use and kept on the spec."""
    value = getattr(spec, name, None)
    if value is None:
        value = make()
        setattr(spec, name, value)
    return value


def _strip(b: bytes) -> str:
    return b.translate(None, b" \t\r\n\\").decode("utf-8", errors="replace")


class _Ctx:
    __slots__ = ("a", "s", "owner", "events", "k", "par", "first", "start", "end", "src", "comp_defs", "labels")

    def __init__(self, ast, spec, owner, labels):
        self.a, self.s, self.owner = ast, spec, owner
        self.k, self.par, self.first = ast.kinds, ast.parent, ast.first
        self.start, self.end, self.src = ast.start, ast.end, ast.src
        self.events = []
        self.comp_defs = {}
        self.labels = labels

    def add(self, node, var, flag, key):
        # (owner, key, flag, node, var): sorts by statement, then evaluation order
        self.events.append((self.owner[node], key, flag, node, var))

    def name(self, i):
        return self.labels[i]

    def path(self, p, chain_kind, root_kinds):
        """Access-path text of ``p`` if it is names joined by dots, else None."""
        q = p
        k, first = self.k, self.first
        while k[q] == chain_kind:
            q = first[q]
        if k[q] not in root_kinds:
            return None
        return _strip(self.src[self.start[p]:self.end[p]])


def _java_events(c: _Ctx, idents):
    s, k, par, first, end, start = c.s, c.k, c.par, c.first, c.end, c.start
    ev, owner, labels = c.events.append, c.owner, c.labels
    FA, MI, IDK = s.FIELD_ACCESS, s.METHOD_INVOCATION, s.identifier_kinds
    roots, skip, param_like = _cached(s, "dfg_java_sets", lambda: (
        frozenset({s.IDENTIFIER, s.THIS}),
        frozenset({s.LABELED_STATEMENT, s.BREAK_STATEMENT, s.CONTINUE_STATEMENT, s.METHOD_DECLARATION,
                   s.CONSTRUCTOR_DECLARATION, s.CLASS_DECLARATION, s.INTERFACE_DECLARATION, s.ENUM_DECLARATION,
                   s.RECORD_DECLARATION, s.ANNOTATION_TYPE_DECLARATION, s.MARKER_ANNOTATION, s.ANNOTATION,
                   s.ELEMENT_VALUE_PAIR, s.METHOD_REFERENCE, s.SCOPED_IDENTIFIER, s.ENUM_CONSTANT,
                   s.COMPACT_CONSTRUCTOR_DECLARATION}),
        frozenset({s.FORMAL_PARAMETER, s.CATCH_FORMAL_PARAMETER, s.INFERRED_PARAMETERS})))
    ASSIGN, UPDATE, ARRAY = s.ASSIGNMENT_EXPRESSION, s.UPDATE_EXPRESSION, s.ARRAY_ACCESS

    def role(x, var, node):
        q = par[x]
        qk = k[q]
        if qk == ASSIGN and x == first[q]:
            if not labels[q].endswith(" ="):  # compound assignment (+= ...) also reads
                ev((owner[node], start[node], USE, node, var))
            ev((owner[node], end[q], DEF, node, var))
        elif qk == UPDATE:
            ev((owner[node], start[node], USE, node, var))
            ev((owner[node], end[q], DEF, node, var))
        elif qk == ARRAY and x == first[q] and k[par[q]] == ASSIGN and q == first[par[q]]:
            ev((owner[node], start[node], USE, node, var))
            ev((owner[node], end[par[q]], WEAK, node, var))
        else:
            ev((owner[node], start[node], USE, node, var))

    plain = _cached(s, "dfg_plain_uses", lambda: s.ids(*_JAVA_PLAIN_USE_PARENTS))
    for i in idents:
        p = par[i]
        pk = k[p]
        if pk in plain:  # fast path: an identifier directly under these is always a read
            ev((owner[i], start[i], USE, i, labels[i]))
        elif pk == FA:
            if i == first[p]:
                ev((owner[i], start[i], USE, i, labels[i]))
                continue
            g = par[p]
            if k[g] == FA and p == first[g]:
                continue  # inner link of a longer path; the outer one is the variable
            var = c.path(p, FA, roots)
            if var is not None:
                role(p, var, i)
        elif pk == MI:
            nxt = i + 1
            if nxt < c.first[p + 1] and k[nxt] in (s.ARGUMENT_LIST, s.TYPE_ARGUMENTS):
                continue  # the method name
            ev((owner[i], start[i], USE, i, labels[i]))
        elif pk == s.VARIABLE_DECLARATOR:
            if i == first[p]:
                if c.first[p + 1] - first[p] > 1:  # `int b;` declares without defining
                    ev((owner[i], end[p], DEF, i, labels[i]))
            else:
                role(i, labels[i], i)
        elif pk in param_like:
            ev((owner[i], start[i], DEF, i, labels[i]))
        elif pk == s.LAMBDA_EXPRESSION and i == first[p]:
            ev((owner[i], start[i], DEF, i, labels[i]))
        elif pk == s.ENHANCED_FOR_STATEMENT or pk == s.RESOURCE:
            j = first[p]
            if pk == s.RESOURCE:
                j += 1
            else:
                while k[j] not in IDK:
                    j += 1
            if i == j:
                ev((owner[i], end[p], DEF, i, labels[i]))
            else:
                ev((owner[i], start[i], USE, i, labels[i]))
        elif pk in skip:
            continue
        else:
            role(i, labels[i], i)


def _python_events(c: _Ctx, idents):
    s, k, par, first, end, start = c.s, c.k, c.par, c.first, c.end, c.start
    ev, owner, labels = c.events.append, c.owner, c.labels
    ATTR, CALL = s.ATTRIBUTE, s.CALL
    roots = s.identifier_kinds
    containers, binders, params, first_is_param, splats, skip = _cached(s, "dfg_python_sets", lambda: (
        frozenset({s.PATTERN_LIST, s.EXPRESSION_LIST, s.TUPLE, s.LIST, s.PARENTHESIZED_EXPRESSION,
                   s.LIST_SPLAT_PATTERN} | s.ids("tuple_pattern", "list_pattern")),
        frozenset({s.ASSIGNMENT, s.FOR_STATEMENT, s.FOR_IN_CLAUSE, s.NAMED_EXPRESSION}),
        frozenset({s.PARAMETERS, s.LAMBDA_PARAMETERS}),
        frozenset({s.DEFAULT_PARAMETER, s.TYPED_PARAMETER, s.TYPED_DEFAULT_PARAMETER}),
        frozenset({s.LIST_SPLAT_PATTERN, s.DICTIONARY_SPLAT_PATTERN}),
        frozenset({s.GLOBAL_STATEMENT, s.NONLOCAL_STATEMENT})))
    AUG, SUB, FOR_IN = s.AUGMENTED_ASSIGNMENT, s.SUBSCRIPT, s.FOR_IN_CLAUSE

    def role(x, var, node):
        y, q = x, par[x]
        while q >= 0 and k[q] in containers:
            y, q = q, par[q]
        qk = k[q] if q >= 0 else -1
        if qk in binders and y == first[q]:
            if qk == FOR_IN:
                c.comp_defs.setdefault(par[q], set()).add(var)
                c.add(node, (var, par[q]), DEF, end[q])
            else:
                ev((owner[node], end[q], DEF, node, var))
        elif qk == AUG and y == first[q]:
            ev((owner[node], start[node], USE, node, var))
            ev((owner[node], end[q], DEF, node, var))
        elif qk == s.AS_PATTERN_TARGET:
            ev((owner[node], end[q], DEF, node, var))
        elif qk == SUB and y == first[q]:
            # a[i] = v: weak definition of a when the subscript is an assignment target
            z, r = q, par[q]
            while r >= 0 and k[r] in containers:
                z, r = r, par[r]
            ev((owner[node], start[node], USE, node, var))
            if r >= 0 and k[r] in (s.ASSIGNMENT, AUG) and z == first[r]:
                ev((owner[node], end[r], WEAK, node, var))
        else:
            ev((owner[node], start[node], USE, node, var))

    plain = _cached(s, "dfg_plain_uses", lambda: s.ids(*_PYTHON_PLAIN_USE_PARENTS))
    for i in idents:
        p = par[i]
        pk = k[p]
        if pk in plain:  # fast path: an identifier directly under these is always a read
            ev((owner[i], start[i], USE, i, labels[i]))
        elif pk == ATTR:
            if i == first[p]:
                ev((owner[i], start[i], USE, i, labels[i]))
                continue
            g = par[p]
            if k[g] == CALL and p == first[g]:
                continue  # method name: a.m()
            if k[g] == ATTR and p == first[g] and not (k[par[g]] == CALL and g == first[par[g]]):
                continue  # inner link of a longer path
            var = c.path(p, ATTR, roots)
            if var is not None:
                role(p, var, i)
        elif pk in params:
            ev((owner[i], start[i], DEF, i, labels[i]))
        elif pk in first_is_param:
            if i == first[p]:
                ev((owner[i], start[i], DEF, i, labels[i]))
            else:
                ev((owner[i], start[i], USE, i, labels[i]))
        elif pk in splats and (k[par[p]] in params or k[par[p]] in first_is_param):
            ev((owner[i], start[i], DEF, i, labels[i]))
        elif pk == s.KEYWORD_ARGUMENT and i == first[p]:
            continue
        elif (pk == s.FUNCTION_DEFINITION or pk == s.CLASS_DEFINITION) and i == first[p]:
            ev((owner[i], start[i], DEF, i, labels[i]))
        elif pk == s.DOTTED_NAME:
            g = par[p]
            gk = k[g]
            if gk == s.IMPORT_STATEMENT or (gk == s.IMPORT_FROM_STATEMENT and p != first[g]):
                if i == first[p]:
                    ev((owner[i], end[g], DEF, i, labels[i]))
            elif gk not in (s.ALIASED_IMPORT, s.IMPORT_FROM_STATEMENT):
                ev((owner[i], start[i], USE, i, labels[i]))
        elif pk == s.ALIASED_IMPORT:
            ev((owner[i], end[p], DEF, i, labels[i]))
        elif pk in skip:
            continue
        else:
            role(i, labels[i], i)


def _scope_comprehension_uses(c: _Ctx, comp_kinds):
    """Rename uses inside a comprehension that bind to its own targets (Python 3 scoping)."""
    if not c.comp_defs:
        return
    owner, par, k = c.owner, c.a.parent, c.k
    out = []
    for o, key, flag, node, var in c.events:
        if flag == USE and isinstance(var, str):
            comp = o
            while comp >= 0 and k[comp] in comp_kinds:
                if var in c.comp_defs.get(comp, ()):
                    var = (var, comp)
                    break
                comp = owner[par[comp]] if par[comp] >= 0 else -1
        out.append((o, key, flag, node, var))
    c.events = out


def dfg_edges(ast, spec, cfg, labels, comp_kinds=frozenset()):
    """``(src, dst)`` lists of DFG edges (definition identifier -> use identifier).

    ``labels[i]`` must be node i's source text for identifiers (as `build._labels` makes)."""
    k, par = ast.kinds, ast.parent
    ids = spec.identifier_kinds
    idents = [i for i, kind in enumerate(k) if kind in ids]
    if not idents:
        return [], []
    is_cfg = cfg.is_cfg
    n = len(k)
    owner = [-1] * n
    # parents precede children; for the root, par = -1 reads owner[-1], still -1 at that point
    for i, p, flag in zip(range(n), par, is_cfg):
        owner[i] = i if flag else owner[p]
    c = _Ctx(ast, spec, owner, labels)
    (_java_events if spec.name == "java" else _python_events)(c, idents)
    _scope_comprehension_uses(c, comp_kinds)
    events = [e for e in c.events if e[0] >= 0]  # identifiers outside any function body
    if not events:
        return [], []
    events.sort()
    # Number definitions (bit = position among definitions); bitmask of all defs per variable.
    def_node, mask = [], {}
    for ev in events:
        if ev[2] != USE:
            var = ev[4]
            mask[var] = mask.get(var, 0) | (1 << len(def_node))
            def_node.append(ev[3])
    if not def_node:
        return [], []
    # gen/kill per CFG node: the statement's last definition of each variable survives.
    size = cfg.next_id
    gen = [0] * size
    kill = [0] * size
    bit = 0
    for o, _, flag, _, var in events:
        if flag == USE:
            continue
        if flag == DEF:
            gen[o] &= ~mask[var]
            kill[o] |= mask[var]
        gen[o] |= 1 << bit
        bit += 1
    # Monotone fixpoint by edge relaxation; functions share no edges, so one pass serves all.
    inn = [0] * size
    out = gen[:]
    src_, dst_ = cfg.src, cfg.dst
    changed = True
    while changed:
        changed = False
        for s_, d_ in zip(src_, dst_):
            x = out[s_]
            if x & ~inn[d_]:
                inn[d_] |= x
                out[d_] = gen[d_] | (inn[d_] & ~kill[d_])
                changed = True
    src, dst = [], []
    cur_owner, cur, bit = -1, 0, 0
    for o, _, flag, node, var in events:
        if o != cur_owner:
            cur_owner, cur = o, inn[o]
        if flag == USE:
            bits = cur & mask.get(var, 0)
            while bits:
                low = bits & -bits
                src.append(def_node[low.bit_length() - 1])
                dst.append(node)
                bits ^= low
        else:
            if flag == DEF:
                cur &= ~mask[var]
            cur |= 1 << bit
            bit += 1
    return src, dst

