"""Statement-level control flow graphs over a `FlatAst` (Java and Python).

One CFG per function-like unit: entry node -> statements -> a synthetic ``<exit>`` node.
Compound statements are CFG nodes themselves and stand for their header (condition, loop
test, switch subject); the statements in their bodies are nodes of their own. Builders work
on dangling edges: ``stmt(i, preds)`` links ``preds`` (``(src, EdgeType)`` pairs) into
statement ``i`` and returns the edges leaving it, so empty blocks and unreachable code fall
out without special cases.

Conventions (pinned by tests/test_cpg_java.py and tests/test_cpg_python.py):
  * an edge into a loop header from inside its body (end of body, ``continue``) is CFG_BACK;
  * a statement inside ``try`` gets a CFG_EXCEPTION edge to every catch/except clause (to the
    ``finally`` clause when there is none); ``throw``/``raise`` outside any ``try`` goes to
    ``<exit>`` with CFG_EXCEPTION; the end of a ``finally`` body also gets CFG_EXCEPTION
    edges to the enclosing handlers (or ``<exit>``), since ``finally`` re-raises;
  * ``break``/``continue``/``return`` leaving a ``try`` with ``finally`` go to the
    ``finally`` clause, and the end of the finally body continues to their real targets;
  * switch/match: header -CFG_TRUE-> each case group/clause, header -CFG_FALSE-> after the
    switch unless a ``default`` label exists (Java; Python match always has the FALSE edge);
    Java case groups fall through (end of a group -> first statement of the next);
  * a Python comprehension is a CFG node of its own placed before the statement that holds
    it (with a CFG_BACK self loop for its iteration), so its variables get local flow.
"""
from __future__ import annotations

from .graph import EdgeType
from .languages import COMPREHENSIONS, FUNCTIONS

NEXT, TRUE, FALSE, BACK, EXC = (int(EdgeType.CFG_NEXT), int(EdgeType.CFG_TRUE), int(EdgeType.CFG_FALSE),
                                int(EdgeType.CFG_BACK), int(EdgeType.CFG_EXCEPTION))


class _Frame:
    """A jump target: loop / switch / labelled block / finally / function."""

    __slots__ = ("kind", "label", "header", "breaks", "through", "cont_type")

    def __init__(self, kind, label=None, header=-1, cont_type=BACK):
        self.kind = kind
        self.label = label
        self.header = header
        self.breaks = []
        self.through = []
        self.cont_type = cont_type


# The frame every function starts with; `jump` never changes it (returns go to the exit,
# breaks/continues never target it), so one instance serves all functions.
_FUNC_FRAME = _Frame("func")


class CfgBuilder:
    """Builds the CFGs of every function-like node in a `FlatAst`.

    After ``build()``: ``is_cfg[i]`` marks CFG nodes, ``src/dst/typ`` hold the CFG edges, ``exits`` lists the
    synthetic exit ids (numbered from ``len(ast.kinds)``) with their declaration nodes, and
    ``entries[decl]`` is the entry node of each function.
    """

    def __init__(self, ast, spec):
        self.a = ast
        self.s = spec
        n = len(ast.kinds)
        self.is_cfg = [0] * n
        self.src, self.dst, self.typ = [], [], []
        self.exits = []
        self.entries = {}
        self.next_id = n
        self.fid = -1
        self.exit = -1
        self.frames = []
        self.handlers = []
        self.exc = ()  # the innermost handler list (handlers[-1]) or () when there is none
        self.label = None
        self.dispatch = _dispatch(spec)

    # ---- primitives -------------------------------------------------------------------------
    def edge(self, s, d, t):
        self.src.append(s)
        self.dst.append(d)
        self.typ.append(t)

    def link(self, preds, d, force_type=None):
        src, dst, typ = self.src, self.dst, self.typ
        for s, t in preds:
            src.append(s)
            dst.append(d)
            typ.append(t if force_type is None else force_type)

    def push_handlers(self, targets):
        self.handlers.append(targets)
        self.exc = targets

    def pop_handlers(self):
        self.handlers.pop()
        self.exc = self.handlers[-1] if self.handlers else ()

    def reg(self, i):
        self.is_cfg[i] = 1
        for h in self.exc:
            self.src.append(i)
            self.dst.append(h)
            self.typ.append(EXC)

    def simple(self, i, preds):
        self.reg(i)
        self.link(preds, i)
        return [(i, NEXT)]

    def stmt(self, i, preds):
        h = self.dispatch.get(self.a.kinds[i])
        return h(self, i, preds) if h is not None else self.simple(i, preds)

    def seq(self, idxs, preds):
        get, kinds, is_cfg = self.dispatch.get, self.a.kinds, self.is_cfg
        src, dst, typ = self.src, self.dst, self.typ
        exc = self.exc  # handlers restore it before they return
        for c in idxs:
            h = get(kinds[c])
            if h is not None:
                preds = h(self, c, preds)
            elif exc:
                preds = self.simple(c, preds)
            else:  # inlined `simple` for the common case: a plain statement outside try
                is_cfg[c] = 1
                for s, t in preds:
                    src.append(s)
                    dst.append(c)
                    typ.append(t)
                preds = [(c, NEXT)]
        return preds

    def block(self, i, preds):
        return self.seq(self.a.children(i), preds)

    def take_label(self):
        label, self.label = self.label, None
        return label

    # ---- functions ----------------------------------------------------------------------------
    def function(self, decl, entry, body, body_is_expr=False):
        """CFG of one function: ``entry`` -> ``body`` -> new ``<exit>`` node."""
        self.fid = decl
        self.exit = self.next_id
        self.next_id += 1
        self.exits.append((self.exit, decl))
        self.entries[decl] = entry
        self.frames = [_FUNC_FRAME]
        self.handlers = []
        self.exc = ()
        self.label = None
        self.reg(entry)
        preds = [(entry, NEXT)]
        if body is not None:
            preds = self.simple(body, preds) if body_is_expr else self.stmt(body, preds)
        self.link(preds, self.exit)

    # ---- jumps --------------------------------------------------------------------------------
    def jump(self, kind, label, preds):
        """Route a break/continue/return from ``preds`` to its target (via enclosing finally)."""
        for fr in reversed(self.frames):
            if fr.kind == "finally":
                self.link(preds, fr.header, NEXT)
                fr.through.append((kind, label))
                return
            if kind == "return":
                if fr.kind == "func":
                    self.link(preds, self.exit, NEXT)
                    return
            elif kind == "break":
                if (label is None and fr.kind in ("loop", "switch")) or (label is not None and fr.label == label):
                    fr.breaks.extend(preds)
                    return
            elif kind == "continue":
                if fr.kind == "loop" and (label is None or fr.label == label):
                    self.link(preds, fr.header, fr.cont_type)
                    return
        # break/continue with no enclosing target (malformed code): leave it dangling.

    def raise_from(self, preds):
        """Exceptional exit: to the innermost handlers, else to ``<exit>``."""
        targets = self.exc or [self.exit]
        for t in targets:
            self.link(preds, t, EXC)

    def jump_stmt(self, kind, i, preds, label_child=True):
        self.reg(i)
        self.link(preds, i)
        label = None
        if label_child:
            kids = self.a.children(i)
            if len(kids) and self.a.kinds[kids[0]] in self.s.identifier_kinds:
                label = self.a.text(kids[0])
        self.jump(kind, label, [(i, NEXT)])
        return []

    def throw(self, i, preds):
        self.reg(i)
        self.link(preds, i)
        if not self.exc:
            self.edge(i, self.exit, EXC)
        return []

    # ---- loops --------------------------------------------------------------------------------
    def loop(self, i, preds, body, else_body=None):
        """Header-tested loop (while/for/foreach): header -T-> body -BACK-> header -F-> after."""
        fr = _Frame("loop", self.take_label(), header=i)
        self.reg(i)
        self.link(preds, i)
        self.frames.append(fr)
        out = self.stmt(body, [(i, TRUE)]) if body is not None else [(i, TRUE)]
        self.frames.pop()
        self.link(out, i, BACK)
        after = [(i, FALSE)]
        if else_body is not None:
            after = self.stmt(else_body, after)
        return after + fr.breaks

    def for_loop(self, i, preds, inits, updates, body):
        """C-style for: init nodes -> header (the condition) -T-> body -> update nodes -BACK->
        header; ``continue`` goes to the first update."""
        label = self.take_label()
        for c in inits:
            preds = self.simple(c, preds)
        fr = _Frame("loop", label, header=i)
        if updates:
            fr.header, fr.cont_type = updates[0], NEXT
        self.reg(i)
        self.link(preds, i)
        self.frames.append(fr)
        out = self.stmt(body, [(i, TRUE)]) if body is not None else [(i, TRUE)]
        self.frames.pop()
        for u in updates:
            out = self.simple(u, out)
        self.link(out, i, BACK)
        return [(i, FALSE)] + fr.breaks

    def do_loop(self, i, preds, body):
        """Java do-while: body first; the do node is the test at the bottom."""
        fr = _Frame("loop", self.take_label(), header=i, cont_type=NEXT)
        self.frames.append(fr)
        out = self.stmt(body, preds + [(i, BACK)]) if body is not None else preds
        self.frames.pop()
        self.reg(i)
        self.link(out, i)
        return [(i, FALSE)] + fr.breaks

    # ---- try ----------------------------------------------------------------------------------
    def try_(self, i, preds, body, handlers, handler_body, else_body, fin, fin_body):
        """try/catch(except)/else/finally; ``handler_body(h)`` gives a handler's block."""
        self.reg(i)
        self.link(preds, i)
        fr = None
        if fin is not None:
            fr = _Frame("finally", header=fin)
            self.frames.append(fr)
        self.push_handlers(list(handlers) if handlers else ([fin] if fin is not None else []))
        outs = self.stmt(body, [(i, NEXT)]) if body is not None else [(i, NEXT)]
        self.pop_handlers()
        for h in handlers:  # clause nodes come before `finally` takes over as the handler
            self.reg(h)
        if fin is not None:  # exceptions in handlers/else still run finally first
            self.push_handlers([fin])
        if else_body is not None:
            outs = self.stmt(else_body, outs)
        for h in handlers:
            hb = handler_body(h)
            outs += self.stmt(hb, [(h, NEXT)]) if hb is not None else [(h, NEXT)]
        if fin is None:
            return outs
        self.pop_handlers()
        self.frames.pop()
        self.reg(fin)
        self.link(outs, fin)
        fin_out = self.stmt(fin_body, [(fin, NEXT)]) if fin_body is not None else [(fin, NEXT)]
        self.raise_from(fin_out)
        seen = set()
        for kind, label in fr.through:
            if (kind, label) not in seen:
                seen.add((kind, label))
                self.jump(kind, label, fin_out)
        return fin_out


def _kids(b, i):
    return list(b.a.children(i))


def _first_of(b, i, kinds):
    for c in b.a.children(i):
        if b.a.kinds[c] in kinds:
            return c
    return None


def _java_dispatch(s):

    def if_(b, i, preds):
        ch = _kids(b, i)
        b.reg(i)
        b.link(preds, i)
        t = b.stmt(ch[1], [(i, TRUE)]) if len(ch) > 1 else [(i, TRUE)]
        f = b.stmt(ch[2], [(i, FALSE)]) if len(ch) > 2 else [(i, FALSE)]
        return t + f

    def last_body(b, i, preds):
        ch = _kids(b, i)
        return b.loop(i, preds, ch[-1] if ch else None)  # the body is always the last child

    def for_(b, i, preds):
        node, kept = b.a.nodes[i], b.s.kept
        kids = iter(b.a.children(i))
        inits, updates, body = [], [], None
        for pos, c in enumerate(node.children):
            if not kept[c.kind_id]:
                continue
            me = next(kids)
            field = node.field_name_for_child(pos)
            if field == "init":
                inits.append(me)
            elif field == "update":
                updates.append(me)
            elif field == "body":
                body = me
        return b.for_loop(i, preds, inits, updates, body)

    def do_(b, i, preds):
        ch = _kids(b, i)
        return b.do_loop(i, preds, ch[0] if ch else None)

    def labeled(b, i, preds):
        k = b.a.kinds
        ch = _kids(b, i)
        if len(ch) < 2:
            return b.simple(i, preds)
        name = b.a.text(ch[0])
        if k[ch[1]] in loops:
            b.label = name
            return b.stmt(ch[1], preds)
        fr = _Frame("label", name)
        b.frames.append(fr)
        out = b.stmt(ch[1], preds)
        b.frames.pop()
        return out + fr.breaks

    def switch(b, i, preds):
        k = b.a.kinds
        b.reg(i)
        b.link(preds, i)
        blk = _first_of(b, i, {s.SWITCH_BLOCK})
        fr = _Frame("switch")
        b.frames.append(fr)
        fall, outs, has_default = [], [], False
        src = b.a.src
        for g in (b.a.children(blk) if blk is not None else ()):
            b.reg(g)
            b.edge(i, g, TRUE)
            kids = b.a.children(g)
            labels = [c for c in kids if k[c] == s.SWITCH_LABEL]
            has_default |= any(src.startswith(b"default", b.a.start[c]) for c in labels)
            body = [c for c in kids if k[c] != s.SWITCH_LABEL]
            if k[g] == s.SWITCH_RULE:
                outs += b.seq(body, [(g, NEXT)])
            else:
                fall = b.seq(body, fall + [(g, NEXT)])
        b.frames.pop()
        return outs + fall + fr.breaks + ([] if has_default else [(i, FALSE)])

    def try_(b, i, preds):
        k = b.a.kinds
        body = _first_of(b, i, {s.BLOCK})
        catches = [c for c in b.a.children(i) if k[c] == s.CATCH_CLAUSE]
        fin = _first_of(b, i, {s.FINALLY_CLAUSE})
        return b.try_(i, preds, body, catches, lambda h: _first_of(b, h, {s.BLOCK}), None,
                      fin, _first_of(b, fin, {s.BLOCK}) if fin is not None else None)

    def sync(b, i, preds):
        b.reg(i)
        b.link(preds, i)
        body = _first_of(b, i, {s.BLOCK})
        return b.stmt(body, [(i, NEXT)]) if body is not None else [(i, NEXT)]

    loops = {s.WHILE_STATEMENT, s.FOR_STATEMENT, s.ENHANCED_FOR_STATEMENT, s.DO_STATEMENT}
    return {
        s.BLOCK: CfgBuilder.block, s.CONSTRUCTOR_BODY: CfgBuilder.block, s.IF_STATEMENT: if_,
        s.WHILE_STATEMENT: last_body, s.FOR_STATEMENT: for_, s.ENHANCED_FOR_STATEMENT: last_body,
        s.DO_STATEMENT: do_, s.LABELED_STATEMENT: labeled, s.SWITCH_EXPRESSION: switch,
        s.TRY_STATEMENT: try_, s.TRY_WITH_RESOURCES_STATEMENT: try_, s.SYNCHRONIZED_STATEMENT: sync,
        s.BREAK_STATEMENT: lambda b, i, p: b.jump_stmt("break", i, p),
        s.CONTINUE_STATEMENT: lambda b, i, p: b.jump_stmt("continue", i, p),
        s.RETURN_STATEMENT: lambda b, i, p: b.jump_stmt("return", i, p, label_child=False),
        s.THROW_STATEMENT: CfgBuilder.throw,
    }


def _python_dispatch(s):
    blocks = s.block_kinds

    def else_block(b, e):
        return _first_of(b, e, blocks) if e is not None else None

    def if_(b, i, preds):
        k = b.a.kinds
        ch = _kids(b, i)
        b.reg(i)
        b.link(preds, i)
        out = b.stmt(ch[1], [(i, TRUE)]) if len(ch) > 1 and k[ch[1]] in blocks else [(i, TRUE)]
        prev = [(i, FALSE)]
        for c in ch[2:]:
            if k[c] == s.ELIF_CLAUSE:
                b.reg(c)
                b.link(prev, c)
                body = _first_of(b, c, blocks)
                out += b.stmt(body, [(c, TRUE)]) if body is not None else [(c, TRUE)]
                prev = [(c, FALSE)]
            elif k[c] == s.ELSE_CLAUSE:
                body = else_block(b, c)
                prev = b.stmt(body, prev) if body is not None else prev
        return out + prev

    def loop(b, i, preds):
        return b.loop(i, preds, _first_of(b, i, blocks), else_block(b, _first_of(b, i, {s.ELSE_CLAUSE})))

    def try_(b, i, preds):
        k = b.a.kinds
        ch = b.a.children(i)
        handlers = [c for c in ch if k[c] == s.EXCEPT_CLAUSE]
        fin = _first_of(b, i, {s.FINALLY_CLAUSE})
        return b.try_(i, preds, _first_of(b, i, blocks), handlers, lambda h: _first_of(b, h, blocks),
                      else_block(b, _first_of(b, i, {s.ELSE_CLAUSE})), fin, else_block(b, fin))

    def with_(b, i, preds):
        b.reg(i)
        b.link(preds, i)
        body = _first_of(b, i, blocks)
        return b.stmt(body, [(i, NEXT)]) if body is not None else [(i, NEXT)]

    def match(b, i, preds):
        k = b.a.kinds
        b.reg(i)
        b.link(preds, i)
        outs = [(i, FALSE)]
        body = _first_of(b, i, blocks)
        for c in (b.a.children(body) if body is not None else ()):
            if k[c] != s.CASE_CLAUSE:
                continue
            b.reg(c)
            b.edge(i, c, TRUE)
            cons = _first_of(b, c, blocks)
            outs += b.stmt(cons, [(c, NEXT)]) if cons is not None else [(c, NEXT)]
        return outs

    def class_(b, i, preds):
        b.reg(i)
        b.link(preds, i)
        body = _first_of(b, i, blocks)
        return b.stmt(body, [(i, NEXT)]) if body is not None else [(i, NEXT)]

    table = {
        s.IF_STATEMENT: if_, s.WHILE_STATEMENT: loop, s.FOR_STATEMENT: loop, s.TRY_STATEMENT: try_,
        s.WITH_STATEMENT: with_, s.MATCH_STATEMENT: match, s.CLASS_DEFINITION: class_,
        s.BREAK_STATEMENT: lambda b, i, p: b.jump_stmt("break", i, p, label_child=False),
        s.CONTINUE_STATEMENT: lambda b, i, p: b.jump_stmt("continue", i, p, label_child=False),
        s.RETURN_STATEMENT: lambda b, i, p: b.jump_stmt("return", i, p, label_child=False),
        s.RAISE_STATEMENT: CfgBuilder.throw,
    }
    for kid in blocks:
        table[kid] = CfgBuilder.block
    return table


_DISPATCH = {}


def _dispatch(spec):
    """Kind id -> statement handler ``(builder, i, preds) -> preds``, built once per language."""
    table = _DISPATCH.get(spec.name)
    if table is None:
        table = _DISPATCH[spec.name] = (_java_dispatch if spec.name == "java" else _python_dispatch)(spec)
    return table


def build_cfgs(ast, spec, comprehension_kinds=frozenset()):
    """Build every function-like unit's CFG; returns the `CfgBuilder` holding the result."""
    b = CfgBuilder(ast, spec)
    k = ast.kinds
    s = spec
    funcs = ast.where(FUNCTIONS)
    if s.name == "java":
        for i in funcs:
            kind = k[i]
            ch = ast.children(i)
            if kind == s.LAMBDA_EXPRESSION:
                body = ch[-1] if len(ch) > 1 else None
                b.function(i, i, body, body_is_expr=body is not None and k[body] != s.BLOCK)
            else:
                body = ch[-1] if len(ch) and k[ch[-1]] in (s.BLOCK, s.CONSTRUCTOR_BODY) else None
                b.function(i, i, body)
    else:
        blocks = s.block_kinds
        for i in funcs:
            kind = k[i]
            if kind == s.FUNCTION_DEFINITION:
                params = _first_of(b, i, {s.PARAMETERS})
                b.function(i, params if params is not None else i, _first_of(b, i, blocks))
            elif kind == s.MODULE:
                b.function(i, i, None)
                # Module body: entry -> top-level statements -> exit (replace the empty link).
                b.src.pop(), b.dst.pop(), b.typ.pop()
                b.link(b.seq(ast.children(i), [(i, NEXT)]), b.exit)
            else:  # lambda
                ch = ast.children(i)
                body = ch[-1] if len(ch) and k[ch[-1]] != s.LAMBDA_PARAMETERS else None
                b.function(i, i, body, body_is_expr=True)
        if ast.where(COMPREHENSIONS):
            _place_comprehensions(b, ast, comprehension_kinds)
    return b


def _place_comprehensions(b, ast, comp_kinds):
    """Insert comprehension nodes before the statement that holds them (see module doc)."""
    comps = ast.where(COMPREHENSIONS)
    if not comps:
        return
    by_owner = {}
    for c in comps:
        p = ast.parent[c]
        while p >= 0 and not b.is_cfg[p]:
            p = ast.parent[p]
        if p >= 0:
            by_owner.setdefault(p, []).append(c)
    for owner, cs in by_owner.items():
        cs.sort(key=lambda c: (ast.start[c], c))
        head = cs[0]
        b.dst[:] = [head if d == owner else d for d in b.dst]
        chain = cs + [owner]
        for c, nxt in zip(chain, chain[1:]):
            b.is_cfg[c] = 1
            b.edge(c, c, BACK)
            b.edge(c, nxt, NEXT)
