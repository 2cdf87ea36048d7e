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

from .languages import IDENTIFIERS

USE, DEF, WEAK = 0, 1, 2

# Parent kinds under which an identifier child can only be read (the fast path).
_JAVA_PLAIN_USE_PARENTS = (
    "argument_list", "binary_expression", "return_statement", "parenthesized_expression", "ternary_expression",
    "unary_expression", "array_creation_expression", "dimensions_expr", "cast_expression", "instanceof_expression",
    "throw_statement", "array_initializer", "element_value_array_initializer", "expression_statement")
_PYTHON_PLAIN_USE_PARENTS = (
    "argument_list", "binary_operator", "comparison_operator", "boolean_operator", "not_operator", "unary_operator",
    "return_statement", "conditional_expression", "if_statement", "elif_clause", "while_statement",
    "assert_statement", "call", "pair", "interpolation", "await", "yield", "expression_statement",
    "print_statement", "slice")

# What an identifier is, by the kind of its parent: one table look-up instead of a chain of
# tests. The cases are checked in the order listed in `_java_events` / `_python_events`;
# a kind in several groups belongs to the first (tables are filled last-to-first).
_OTHER, _READ, _FIELD, _CALLEE, _DECLARATOR, _PARAM, _LAMBDA, _FOREACH, _RESOURCE, _SKIP = range(10)
_P_PARAMS, _P_FIRST_PARAM, _P_SPLAT, _P_KEYWORD, _P_DEFINITION, _P_DOTTED, _P_ALIASED = range(10, 17)


def _java_tables(s):
    """(parent-kind case table, path root kinds) for Java, cached on the spec."""
    tables = getattr(s, "_dfg_tables", None)
    if tables is None:
        case = [_OTHER] * 65536
        groups = (
            (_SKIP, (s.LABELED_STATEMENT, s.BREAK_STATEMENT, s.CONTINUE_STATEMENT, s.METHOD_DECLARATION,
                     s.CONSTRUCTOR_DECLARATION, s.CLASS_DECLARATION, s.INTERFACE_DECLARATION, s.ENUM_DECLARATION,
                     s.RECORD_DECLARATION, s.ANNOTATION_TYPE_DECLARATION, s.MARKER_ANNOTATION, s.ANNOTATION,
                     s.ELEMENT_VALUE_PAIR, s.METHOD_REFERENCE, s.SCOPED_IDENTIFIER, s.ENUM_CONSTANT,
                     s.COMPACT_CONSTRUCTOR_DECLARATION)),
            (_RESOURCE, (s.RESOURCE,)),
            (_FOREACH, (s.ENHANCED_FOR_STATEMENT,)),
            (_LAMBDA, (s.LAMBDA_EXPRESSION,)),
            (_PARAM, (s.FORMAL_PARAMETER, s.CATCH_FORMAL_PARAMETER, s.INFERRED_PARAMETERS)),
            (_DECLARATOR, (s.VARIABLE_DECLARATOR,)),
            (_CALLEE, (s.METHOD_INVOCATION,)),
            (_FIELD, (s.FIELD_ACCESS,)),
            (_READ, tuple(s.ids(*_JAVA_PLAIN_USE_PARENTS))),
        )
        for value, kinds in groups:
            for kind in kinds:
                case[kind] = value
        tables = s._dfg_tables = (case, frozenset({s.IDENTIFIER, s.THIS}))
    return tables


def _python_tables(s):
    """(parent-kind case table, assignment-target container kinds, binder kinds) for Python."""
    tables = getattr(s, "_dfg_tables", None)
    if tables is None:
        case = [_OTHER] * 65536
        groups = (
            (_SKIP, (s.GLOBAL_STATEMENT, s.NONLOCAL_STATEMENT)),
            (_P_ALIASED, (s.ALIASED_IMPORT,)),
            (_P_DOTTED, (s.DOTTED_NAME,)),
            (_P_DEFINITION, (s.FUNCTION_DEFINITION, s.CLASS_DEFINITION)),
            (_P_KEYWORD, (s.KEYWORD_ARGUMENT,)),
            (_P_SPLAT, (s.LIST_SPLAT_PATTERN, s.DICTIONARY_SPLAT_PATTERN)),
            (_P_FIRST_PARAM, (s.DEFAULT_PARAMETER, s.TYPED_PARAMETER, s.TYPED_DEFAULT_PARAMETER)),
            (_P_PARAMS, (s.PARAMETERS, s.LAMBDA_PARAMETERS)),
            (_FIELD, (s.ATTRIBUTE,)),
            (_READ, tuple(s.ids(*_PYTHON_PLAIN_USE_PARENTS))),
        )
        for value, kinds in groups:
            for kind in kinds:
                case[kind] = value
        containers = frozenset({s.PATTERN_LIST, s.EXPRESSION_LIST, s.TUPLE, s.LIST, s.PARENTHESIZED_EXPRESSION,
                                s.LIST_SPLAT_PATTERN} | s.ids("tuple_pattern", "list_pattern"))
        binders = frozenset({s.ASSIGNMENT, s.FOR_STATEMENT, s.FOR_IN_CLAUSE, s.NAMED_EXPRESSION})
        tables = s._dfg_tables = (case, containers, binders)
    return tables


def _path(ast, p, chain_kind, root_kinds):
    """Access-path text of ``p`` (whitespace and line continuations removed) if it is names
    joined by dots, else None."""
    k, first = ast.kinds, ast.first
    q = p
    while k[q] == chain_kind:
        q = first[q]
    if k[q] not in root_kinds:
        return None
    return ast.src[ast.start[p]:ast.end[p]].translate(None, b" \t\r\n\\").decode("utf-8", errors="replace")


# Events are tuples ``(owner, position, flag, node, var)``: a use or a definition of ``var``
# by identifier ``node`` in CFG node ``owner``, at byte ``position`` (where the use is read
# or the definition takes effect). Sorted, they run statement by statement in evaluation
# order; no two events agree on the first four fields.


def _java_events(ast, s, stmt, labels, idents):
    k, par, first, end, start = ast.kinds, ast.parent, ast.first, ast.end, ast.start
    case, roots = _java_tables(s)
    FA, IDK = s.FIELD_ACCESS, s.identifier_kinds
    ASSIGN, UPDATE, ARRAY = s.ASSIGNMENT_EXPRESSION, s.UPDATE_EXPRESSION, s.ARRAY_ACCESS
    ARGS, TYPE_ARGS = s.ARGUMENT_LIST, s.TYPE_ARGUMENTS
    events = []
    for i in idents:
        p = par[i]
        c = case[k[p]]
        # First the identifiers that are not variables (no need to find their statement).
        if c == _SKIP:
            continue
        if c == _CALLEE:
            nxt = i + 1
            if nxt < first[p + 1] and (k[nxt] == ARGS or k[nxt] == TYPE_ARGS):
                continue  # the method name
        elif c == _FIELD and i != first[p]:
            g = par[p]
            if k[g] == FA and p == first[g]:
                continue  # inner link of a longer path; the outer one is the variable
            var = _path(ast, p, FA, roots)
            if var is None:
                continue
        elif c == _DECLARATOR and i == first[p] and first[p + 1] - first[p] < 2:
            continue  # `int b;` declares without defining
        o = i
        while not stmt[o]:  # innermost CFG node; the table's trailing 1 stops at index -1
            o = par[o]
        if o < 0:  # outside every CFG node: no data flow
            continue
        if c == _READ or c == _CALLEE:  # an identifier directly under these is always a read
            events.append((o, start[i], USE, i, labels[i]))
            continue
        # The cases that `continue` decide alone; the others fall through to the role of
        # expression `x` (the identifier or its access path) as variable `var`.
        if c == _FIELD:
            if i == first[p]:
                events.append((o, start[i], USE, i, labels[i]))
                continue
            x = p
        elif c == _DECLARATOR and i == first[p]:
            events.append((o, end[p], DEF, i, labels[i]))
            continue
        elif c == _PARAM or (c == _LAMBDA and i == first[p]):
            events.append((o, start[i], DEF, i, labels[i]))
            continue
        elif c == _FOREACH or c == _RESOURCE:
            j = first[p]
            if c == _RESOURCE:
                j += 1
            else:
                while k[j] not in IDK:
                    j += 1
            if i == j:
                events.append((o, end[p], DEF, i, labels[i]))
            else:
                events.append((o, start[i], USE, i, labels[i]))
            continue
        else:
            x, var = i, labels[i]
        # role of x: assignment target, update operand, array element target, or a read
        q = par[x]
        qk = k[q]
        if qk == ASSIGN and x == first[q]:
            if not labels[q].endswith(" ="):  # compound assignment (+= ...) also reads
                events.append((o, start[i], USE, i, var))
            events.append((o, end[q], DEF, i, var))
        elif qk == UPDATE:
            events.append((o, start[i], USE, i, var))
            events.append((o, end[q], DEF, i, var))
        elif qk == ARRAY and x == first[q] and k[par[q]] == ASSIGN and q == first[par[q]]:
            events.append((o, start[i], USE, i, var))
            events.append((o, end[par[q]], WEAK, i, var))
        else:
            events.append((o, start[i], USE, i, var))
    return events, None


def _python_events(ast, s, stmt, labels, idents):
    k, par, first, end, start = ast.kinds, ast.parent, ast.first, ast.end, ast.start
    case, containers, binders = _python_tables(s)
    ATTR, CALL = s.ATTRIBUTE, s.CALL
    roots = s.identifier_kinds
    AUG, SUB, FOR_IN, AS_TARGET = s.AUGMENTED_ASSIGNMENT, s.SUBSCRIPT, s.FOR_IN_CLAUSE, s.AS_PATTERN_TARGET
    events = []
    comp_defs = {}
    for i in idents:
        p = par[i]
        c = case[k[p]]
        # First the identifiers that are not variables (no need to find their statement).
        if c == _SKIP or (c == _P_KEYWORD and i == first[p]):
            continue
        if c == _FIELD and i != first[p]:
            g = par[p]
            if k[g] == CALL and p == first[g]:
                continue  # method name: a.m()
            if k[g] == ATTR and p == first[g] and not (k[par[g]] == CALL and g == first[par[g]]):
                continue  # inner link of a longer path
            var = _path(ast, p, ATTR, roots)
            if var is None:
                continue
        o = i
        while not stmt[o]:  # innermost CFG node; the table's trailing 1 stops at index -1
            o = par[o]
        if o < 0:  # outside every CFG node (a function's own name): no data flow
            continue
        if c == _READ:  # an identifier directly under these is always a read
            events.append((o, start[i], USE, i, labels[i]))
            continue
        # The cases that `continue` decide alone; the others fall through to the role of
        # expression `x` (the identifier or its access path) as variable `var`.
        if c == _FIELD:
            if i == first[p]:
                events.append((o, start[i], USE, i, labels[i]))
                continue
            x = p
        elif c == _P_PARAMS:
            events.append((o, start[i], DEF, i, labels[i]))
            continue
        elif c == _P_FIRST_PARAM:
            if i == first[p]:
                events.append((o, start[i], DEF, i, labels[i]))
            else:
                events.append((o, start[i], USE, i, labels[i]))
            continue
        elif c == _P_SPLAT and (case[k[par[p]]] == _P_PARAMS or case[k[par[p]]] == _P_FIRST_PARAM):
            events.append((o, start[i], DEF, i, labels[i]))
            continue
        elif c == _P_DEFINITION and i == first[p]:
            events.append((o, start[i], DEF, i, labels[i]))
            continue
        elif c == _P_DOTTED:
            g = par[p]
            gk = k[g]
            if gk == s.IMPORT_STATEMENT or (gk == s.IMPORT_FROM_STATEMENT and p != first[g]):
                if i == first[p]:
                    events.append((o, end[g], DEF, i, labels[i]))
            elif gk != s.ALIASED_IMPORT and gk != s.IMPORT_FROM_STATEMENT:
                events.append((o, start[i], USE, i, labels[i]))
            continue
        elif c == _P_ALIASED:
            events.append((o, end[p], DEF, i, labels[i]))
            continue
        else:
            x, var = i, labels[i]
        # role of x: binding target (through tuples/lists), augmented assignment target,
        # `as` target, subscript target (weak definition), or a read
        y, q = x, par[x]
        while q >= 0 and k[q] in containers:
            y, q = q, par[q]
        qk = k[q] if q >= 0 else -1
        if qk in binders and y == first[q]:
            if qk == FOR_IN:
                comp_defs.setdefault(par[q], set()).add(var)
                events.append((o, end[q], DEF, i, (var, par[q])))
            else:
                events.append((o, end[q], DEF, i, var))
        elif qk == AUG and y == first[q]:
            events.append((o, start[i], USE, i, var))
            events.append((o, end[q], DEF, i, var))
        elif qk == AS_TARGET:
            events.append((o, end[q], DEF, i, var))
        elif qk == SUB and y == first[q]:
            # a[i] = v: weak definition of a when the subscript is an assignment target
            z, r = q, par[q]
            while r >= 0 and k[r] in containers:
                z, r = r, par[r]
            events.append((o, start[i], USE, i, var))
            if r >= 0 and (k[r] == s.ASSIGNMENT or k[r] == AUG) and z == first[r]:
                events.append((o, end[r], WEAK, i, var))
        else:
            events.append((o, start[i], USE, i, var))
    return events, comp_defs


def _scope_comprehension_uses(events, comp_defs, stmt, par, k, comp_kinds):
    """Rename uses inside a comprehension that bind to its own targets (Python 3 scoping)."""
    out = []
    for e in events:
        o, pos, flag, node, var = e
        if flag == USE and isinstance(var, str):
            comp = o
            while comp >= 0 and k[comp] in comp_kinds:
                if var in comp_defs.get(comp, ()):
                    e = (o, pos, flag, node, (var, comp))
                    break
                comp = par[comp]
                while not stmt[comp]:  # owner of the parent (-1 when there is none)
                    comp = par[comp]
        out.append(e)
    return out


def dfg_edges(ast, spec, cfg, labels, comp_kinds=frozenset()):
    """``(src, dst)`` lists of DFG edges (definition identifier -> use identifier).

    ``labels[i]`` must be node i's source text for identifiers (as `build._labels` makes)."""
    idents = ast.where(IDENTIFIERS)
    if not idents:
        return [], []
    # stmt[i]: 1 for CFG nodes, with a trailing 1 so that walks up from the root stop at -1
    stmt = cfg.is_cfg + [1]
    events, comp_defs = (_java_events if spec.name == "java" else _python_events)(ast, spec, stmt, labels, idents)
    if comp_defs:
        events = _scope_comprehension_uses(events, comp_defs, stmt, ast.parent, ast.kinds, comp_kinds)
    if not events:
        return [], []
    events.sort()
    # Number the definitions in statement order (bit b = b-th definition); per statement,
    # gen = the definitions that survive its end, kill = all definitions of what it defines.
    size = cfg.next_id
    gen = [0] * size
    def_node, mask, killed = [], {}, []
    for o, _, flag, node, var in events:
        if flag == USE:
            continue
        bit = 1 << len(def_node)
        m = mask.get(var, 0)
        if flag == DEF:  # a strong definition replaces the statement's earlier ones of var
            gen[o] = (gen[o] & ~m) | bit
            killed.append((o, var))
        else:
            gen[o] |= bit
        mask[var] = m | bit
        def_node.append(node)
    if not def_node:
        return [], []
    kill = [0] * size
    for o, var in killed:
        kill[o] |= mask[var]
    inn = _reaching(cfg.src, cfg.dst, gen, kill)
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


def _reaching(src, dst, gen, kill):
    """Definitions reaching the entry of each CFG node (bitsets): the least fixpoint of
    ``in[d] |= out[s]`` over edges ``s -> d``, ``out = gen | (in & ~kill)``, by passes of
    edge relaxation; functions share no edges, so one run serves all.

    A pass has reached the fixpoint unless it changed ``out`` of a node whose out-edges it
    had already relaxed (edges mostly run forward, so one pass usually suffices).
    """
    inn = [0] * len(gen)
    out = gen[:]
    done = [0] * len(gen)  # done[s] == pass number: edges out of s relaxed in this pass
    again, p = True, 0
    while again:
        again = False
        p += 1
        for s_, d_ in zip(src, dst):
            done[s_] = p
            x = out[s_]
            if x & ~inn[d_]:
                inn[d_] |= x
                y = gen[d_] | (inn[d_] & ~kill[d_])
                if y != out[d_]:
                    out[d_] = y
                    if done[d_] == p:
                        again = True
    return inn
