"""Exact CFG/DFG edge sets of small hand-worked Python functions (see tests/cpg_helpers.py)."""
import pytest

pytest.importorskip("tree_sitter_python")

from cpg_helpers import cfg_set, edge_set  # noqa: E402
from graph_tools.cpg import EdgeType, build_cpg  # noqa: E402

DFG = EdgeType.DFG


def test_if_elif_else_definition_reaches_use_through_branches():
    g = build_cpg(
        "def f(a):\n"           # 1  (the CFG entry is the `parameters` node)
        "    if a > 0:\n"       # 2
        "        b = 1\n"       # 3
        "    elif a < 0:\n"     # 4
        "        b = 2\n"       # 5
        "    else:\n"           # 6
        "        b = 3\n"       # 7
        "    return b\n", "python")  # 8
    assert cfg_set(g) == {
        ("parameters@1", "if_statement@2", "N"),
        ("if_statement@2", "expression_statement@3", "T"),
        ("if_statement@2", "elif_clause@4", "F"),
        ("elif_clause@4", "expression_statement@5", "T"),
        ("elif_clause@4", "expression_statement@7", "F"),
        ("expression_statement@3", "return_statement@8", "N"),
        ("expression_statement@5", "return_statement@8", "N"),
        ("expression_statement@7", "return_statement@8", "N"),
        ("return_statement@8", "<exit>@8", "N"),
    }
    assert edge_set(g, DFG) == {("a@1", "a@2"), ("a@1", "a@4"),
                                ("b@3", "b@8"), ("b@5", "b@8"), ("b@7", "b@8")}


def test_for_else_while_else_break_continue():
    g = build_cpg(
        "def g(xs):\n"              # 1
        "    for x in xs:\n"        # 2
        "        if x:\n"           # 3
        "            break\n"       # 4
        "    else:\n"               # 5
        "        x = None\n"        # 6
        "    while xs:\n"           # 7
        "        xs = xs[1:]\n"     # 8
        "        continue\n"        # 9
        "    else:\n"               # 10
        "        pass\n"            # 11
        "    return x\n", "python")  # 12
    assert cfg_set(g) == {
        ("parameters@1", "for_statement@2", "N"),
        ("for_statement@2", "if_statement@3", "T"),
        ("if_statement@3", "break_statement@4", "T"),
        ("if_statement@3", "for_statement@2", "B"),
        ("for_statement@2", "expression_statement@6", "F"),   # else runs when the loop ends
        ("break_statement@4", "while_statement@7", "N"),      # break skips the else
        ("expression_statement@6", "while_statement@7", "N"),
        ("while_statement@7", "expression_statement@8", "T"),
        ("expression_statement@8", "continue_statement@9", "N"),
        ("continue_statement@9", "while_statement@7", "B"),
        ("while_statement@7", "pass_statement@11", "F"),
        ("pass_statement@11", "return_statement@12", "N"),
        ("return_statement@12", "<exit>@12", "N"),
    }
    # line 8 `xs = xs[1:]`: definition at col 8, use at col 13
    assert edge_set(g, DFG) == {
        ("xs@1", "xs@2"), ("xs@1", "xs@7"), ("xs@1", "xs@8:13"),
        ("xs@8:8", "xs@7"), ("xs@8:8", "xs@8:13"),
        ("x@2", "x@3"), ("x@2", "x@12"), ("x@6", "x@12"),
    }


def test_try_except_else_finally_with_raise():
    g = build_cpg(
        "def h(p):\n"                     # 1
        "    try:\n"                      # 2
        "        with open(p) as fh:\n"   # 3
        "            data = fh.read()\n"  # 4
        "    except OSError as e:\n"      # 5
        "        raise\n"                 # 6
        "    else:\n"                     # 7
        "        p = data\n"              # 8
        "    finally:\n"                  # 9
        "        p = None\n"              # 10
        "    return p\n", "python")       # 11
    assert cfg_set(g) == {
        ("parameters@1", "try_statement@2", "N"),
        ("try_statement@2", "with_statement@3", "N"),
        ("with_statement@3", "except_clause@5", "X"),
        ("with_statement@3", "expression_statement@4", "N"),
        ("expression_statement@4", "except_clause@5", "X"),
        ("expression_statement@4", "expression_statement@8", "N"),   # else after a clean body
        ("expression_statement@8", "finally_clause@9", "N"),
        ("expression_statement@8", "finally_clause@9", "X"),
        ("except_clause@5", "raise_statement@6", "N"),
        ("raise_statement@6", "finally_clause@9", "X"),
        ("finally_clause@9", "expression_statement@10", "N"),
        ("expression_statement@10", "return_statement@11", "N"),
        ("expression_statement@10", "<exit>@11", "X"),
        ("return_statement@11", "<exit>@11", "N"),
    }
    assert edge_set(g, DFG) == {("p@1", "p@3"), ("fh@3", "fh@4"), ("data@4", "data@8"), ("p@10", "p@11")}


def test_comprehension_attribute_path_and_lambda():
    g = build_cpg(
        "def k(self, ys):\n"                   # 1
        "    self.n = len(ys)\n"               # 2
        "    zs = [y * self.n for y in ys]\n"  # 3
        "    f = lambda q: q + 1\n"            # 4
        "    return f(zs)\n", "python")        # 5
    assert cfg_set(g) == {
        ("parameters@1", "expression_statement@2", "N"),
        ("expression_statement@2", "list_comprehension@3", "N"),
        ("list_comprehension@3", "list_comprehension@3", "B"),
        ("list_comprehension@3", "expression_statement@3", "N"),
        ("expression_statement@3", "expression_statement@4", "N"),
        ("expression_statement@4", "return_statement@5", "N"),
        ("return_statement@5", "<exit>@5", "N"),
        ("lambda@4", "binary_operator@4", "N"),   # the lambda's own CFG
        ("binary_operator@4", "<exit>@4", "N"),
    }
    # `self.n` is one variable carried by the `n` identifier; y is local to the comprehension
    # (use at col 10, binding at col 25); q is the lambda's parameter.
    assert edge_set(g, DFG) == {
        ("self@1", "self@2"), ("self@1", "self@3"), ("ys@1", "ys@2"), ("ys@1", "ys@3"),
        ("n@2", "n@3"), ("y@3:25", "y@3:10"), ("zs@3", "zs@5"), ("f@4", "f@5"), ("q@4:15", "q@4:18"),
    }


def test_comprehension_variable_does_not_leak():
    g = build_cpg("def c(y):\n    a = [y for y in range(3)]\n    return y\n", "python")
    assert ("y@1", "y@3") in edge_set(g, DFG)
    assert all(not (s.startswith("y@2") and d == "y@3") for s, d in edge_set(g, DFG))


def test_match_statement_and_module_call_edges():
    g = build_cpg(
        "def a(v):\n"               # 1
        "    match v:\n"            # 2
        "        case 1:\n"         # 3
        "            return b()\n"  # 4
        "def b():\n"                # 5
        "    return 1\n", "python", granularity="file")  # 6
    # three CFGs: the module (its exit is at the end of the text, line 7), a, and b
    assert cfg_set(g) == {
        ("module@1", "function_definition@1", "N"),
        ("function_definition@1", "function_definition@5", "N"),
        ("function_definition@5", "<exit>@7", "N"),
        ("parameters@1", "match_statement@2", "N"),
        ("match_statement@2", "case_clause@3", "T"),
        ("match_statement@2", "<exit>@4", "F"),   # no case matched
        ("case_clause@3", "return_statement@4", "N"),
        ("return_statement@4", "<exit>@4", "N"),
        ("parameters@5", "return_statement@6", "N"),
        ("return_statement@6", "<exit>@6", "N"),
    }
    assert edge_set(g, EdgeType.CALL) == {("call@4", "function_definition@5")}
    assert ("v@1", "v@2") in edge_set(g, DFG)
