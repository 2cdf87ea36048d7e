"""Exact CFG/DFG edge sets of small hand-worked Java methods (see tests/cpg_helpers.py for names)."""
import pytest

pytest.importorskip("tree_sitter_java")

from cpg_helpers import cfg_set, edge_set  # noqa: E402
from graph_tools.cpg import EdgeType, build_cpg  # noqa: E402

DFG = EdgeType.DFG


def test_if_else_definition_reaches_use_through_both_branches():
    g = build_cpg(
        "int f(int a) {\n"        # 1
        "    int b;\n"            # 2
        "    if (a > 0) {\n"      # 3
        "        b = 1;\n"        # 4
        "    } else {\n"          # 5
        "        b = 2;\n"        # 6
        "    }\n"                 # 7
        "    return b;\n"         # 8
        "}\n", "java")            # 9
    assert cfg_set(g) == {
        ("method_declaration@1", "local_variable_declaration@2", "N"),
        ("local_variable_declaration@2", "if_statement@3", "N"),
        ("if_statement@3", "expression_statement@4", "T"),
        ("if_statement@3", "expression_statement@6", "F"),
        ("expression_statement@4", "return_statement@8", "N"),
        ("expression_statement@6", "return_statement@8", "N"),
        ("return_statement@8", "<exit>@9", "N"),
    }
    # `int b;` declares without defining, so only the two branch definitions reach `return b`.
    assert edge_set(g, DFG) == {("a@1", "a@3"), ("b@4", "b@8"), ("b@6", "b@8")}


def test_while_break_continue_back_edges_and_loop_carried_flow():
    g = build_cpg(
        "int g(int n) {\n"          # 1
        "    int s = 0;\n"          # 2
        "    while (n > 0) {\n"     # 3
        "        if (n == 3) {\n"   # 4
        "            break;\n"      # 5
        "        }\n"               # 6
        "        if (n == 5)\n"     # 7
        "            continue;\n"   # 8
        "        s += n;\n"         # 9
        "        n--;\n"            # 10
        "    }\n"                   # 11
        "    return s;\n"           # 12
        "}", "java")                # 13
    assert cfg_set(g) == {
        ("method_declaration@1", "local_variable_declaration@2", "N"),
        ("local_variable_declaration@2", "while_statement@3", "N"),
        ("while_statement@3", "if_statement@4", "T"),
        ("while_statement@3", "return_statement@12", "F"),
        ("if_statement@4", "break_statement@5", "T"),
        ("if_statement@4", "if_statement@7", "F"),
        ("break_statement@5", "return_statement@12", "N"),
        ("if_statement@7", "continue_statement@8", "T"),
        ("if_statement@7", "expression_statement@9", "F"),
        ("continue_statement@8", "while_statement@3", "B"),
        ("expression_statement@9", "expression_statement@10", "N"),
        ("expression_statement@10", "while_statement@3", "B"),
        ("return_statement@12", "<exit>@13", "N"),
    }
    n_uses = {"n@3", "n@4", "n@7", "n@9", "n@10"}
    assert edge_set(g, DFG) == (
        {("n@1", u) for u in n_uses} | {("n@10", u) for u in n_uses}  # n-- reaches around the loop
        | {("s@2", "s@9"), ("s@2", "s@12"), ("s@9", "s@9"), ("s@9", "s@12")}
    )


def test_for_foreach_do_while():
    g = build_cpg(
        "void h(int[] xs) {\n"                  # 1
        "    for (int i = 0; i < 3; i++) {\n"   # 2
        "        use(i);\n"                     # 3
        "    }\n"                               # 4
        "    for (int x : xs) {\n"              # 5
        "        use(x);\n"                     # 6
        "    }\n"                               # 7
        "    do {\n"                            # 8
        "        xs = null;\n"                  # 9
        "    } while (xs != null);\n"           # 10
        "}\n", "java")                          # 11
    assert cfg_set(g) == {
        ("method_declaration@1", "local_variable_declaration@2", "N"),  # init runs once
        ("local_variable_declaration@2", "for_statement@2", "N"),       # header = condition
        ("for_statement@2", "expression_statement@3", "T"),
        ("expression_statement@3", "update_expression@2", "N"),         # then the update
        ("update_expression@2", "for_statement@2", "B"),
        ("for_statement@2", "enhanced_for_statement@5", "F"),
        ("enhanced_for_statement@5", "expression_statement@6", "T"),
        ("expression_statement@6", "enhanced_for_statement@5", "B"),
        ("enhanced_for_statement@5", "expression_statement@9", "F"),
        ("expression_statement@9", "do_statement@8", "N"),
        ("do_statement@8", "expression_statement@9", "B"),
        ("do_statement@8", "<exit>@11", "F"),
    }
    # line 2: i declared at col 13, tested at col 20, updated (use+def) at col 27
    assert edge_set(g, DFG) == {
        ("i@2:13", "i@2:20"), ("i@2:13", "i@3"), ("i@2:13", "i@2:27"),
        ("i@2:27", "i@2:20"), ("i@2:27", "i@3"), ("i@2:27", "i@2:27"),
        ("xs@1", "xs@5"), ("x@5", "x@6"), ("xs@9", "xs@10"),
    }


def test_switch_fallthrough_break_default():
    g = build_cpg(
        "int sw(int k) {\n"     # 1
        "    int r = 0;\n"      # 2
        "    switch (k) {\n"    # 3
        "        case 1:\n"     # 4
        "            r = 1;\n"  # 5
        "        case 2:\n"     # 6
        "            r = 2;\n"  # 7
        "            break;\n"  # 8
        "        default:\n"    # 9
        "            r = 3;\n"  # 10
        "    }\n"               # 11
        "    return r;\n"       # 12
        "}\n", "java")          # 13
    assert cfg_set(g) == {
        ("method_declaration@1", "local_variable_declaration@2", "N"),
        ("local_variable_declaration@2", "switch_expression@3", "N"),
        ("switch_expression@3", "switch_block_statement_group@4", "T"),
        ("switch_expression@3", "switch_block_statement_group@6", "T"),
        ("switch_expression@3", "switch_block_statement_group@9", "T"),
        ("switch_block_statement_group@4", "expression_statement@5", "N"),
        ("expression_statement@5", "expression_statement@7", "N"),  # fall through
        ("switch_block_statement_group@6", "expression_statement@7", "N"),
        ("expression_statement@7", "break_statement@8", "N"),
        ("break_statement@8", "return_statement@12", "N"),
        ("switch_block_statement_group@9", "expression_statement@10", "N"),
        ("expression_statement@10", "return_statement@12", "N"),
        ("return_statement@12", "<exit>@13", "N"),
    }
    # r = 1 is overwritten by the fall-through; default exists so r = 0 never reaches return
    assert edge_set(g, DFG) == {("k@1", "k@3"), ("r@7", "r@12"), ("r@10", "r@12")}


def test_switch_without_default_has_false_edge():
    g = build_cpg("void s(int k) {\n  switch (k) {\n    case 1 -> a();\n  }\n}\n", "java")
    assert cfg_set(g) == {
        ("method_declaration@1", "switch_expression@2", "N"),
        ("switch_expression@2", "switch_rule@3", "T"),
        ("switch_rule@3", "expression_statement@3", "N"),
        ("expression_statement@3", "<exit>@5", "N"),
        ("switch_expression@2", "<exit>@5", "F"),
    }


def test_try_catch_finally_throw():
    g = build_cpg(
        "void t(int a) {\n"           # 1
        "    try {\n"                 # 2
        "        a = f(a);\n"         # 3
        "        throw new E();\n"    # 4
        "    } catch (E e) {\n"       # 5
        "        g(e);\n"             # 6
        "    } finally {\n"           # 7
        "        h(a);\n"             # 8
        "    }\n"                     # 9
        "    return;\n"               # 10
        "}\n", "java")                # 11
    assert cfg_set(g) == {
        ("method_declaration@1", "try_statement@2", "N"),
        ("try_statement@2", "expression_statement@3", "N"),
        ("expression_statement@3", "catch_clause@5", "X"),
        ("expression_statement@3", "throw_statement@4", "N"),
        ("throw_statement@4", "catch_clause@5", "X"),
        ("catch_clause@5", "expression_statement@6", "N"),
        ("expression_statement@6", "finally_clause@7", "X"),  # an exception in catch runs finally
        ("expression_statement@6", "finally_clause@7", "N"),
        ("finally_clause@7", "expression_statement@8", "N"),
        ("expression_statement@8", "return_statement@10", "N"),
        ("expression_statement@8", "<exit>@11", "X"),  # finally re-raises a pending exception
        ("return_statement@10", "<exit>@11", "N"),
    }
    # line 3 `a = f(a)`: use at col 14, definition at col 8
    assert edge_set(g, DFG) == {("a@1", "a@3:14"), ("a@3:8", "a@8"), ("e@5", "e@6")}


def test_return_inside_try_goes_through_finally_and_throw_outside_try_exits():
    g = build_cpg(
        "int r(int a) {\n"          # 1
        "    try {\n"               # 2
        "        return a;\n"       # 3
        "    } finally {\n"         # 4
        "        a = 0;\n"          # 5
        "    }\n"                   # 6
        "}\n", "java")              # 7
    assert cfg_set(g) == {
        ("method_declaration@1", "try_statement@2", "N"),
        ("try_statement@2", "return_statement@3", "N"),
        ("return_statement@3", "finally_clause@4", "X"),
        ("return_statement@3", "finally_clause@4", "N"),
        ("finally_clause@4", "expression_statement@5", "N"),
        ("expression_statement@5", "<exit>@7", "X"),
        ("expression_statement@5", "<exit>@7", "N"),  # the routed return continues to exit
    }
    g = build_cpg("void z() {\n    throw new E();\n}\n", "java")
    assert cfg_set(g) == {("method_declaration@1", "throw_statement@2", "N"),
                          ("throw_statement@2", "<exit>@3", "X")}


def test_labeled_break_and_field_access_paths():
    g = build_cpg(
        "void p(int n) {\n"                 # 1
        "    outer: while (n > 0) {\n"      # 2
        "        for (;;) {\n"              # 3
        "            break outer;\n"        # 4
        "        }\n"                       # 5
        "    }\n"                           # 6
        "    this.size = n;\n"              # 7
        "    q(this.size, other.size);\n"   # 8
        "}\n", "java")                      # 9
    assert cfg_set(g) == {
        ("method_declaration@1", "while_statement@2", "N"),
        ("while_statement@2", "for_statement@3", "T"),
        ("for_statement@3", "break_statement@4", "T"),
        ("for_statement@3", "while_statement@2", "B"),   # for's exit is the while body's end
        ("break_statement@4", "expression_statement@7", "N"),
        ("while_statement@2", "expression_statement@7", "F"),
        ("expression_statement@7", "expression_statement@8", "N"),
        ("expression_statement@8", "<exit>@9", "N"),
    }
    # `this.size` is one variable (the `size` identifier carries it); other.size is another.
    assert edge_set(g, DFG) == {("n@1", "n@2"), ("n@1", "n@7"), ("size@7", "size@8:11")}


def test_call_edges_inside_file_and_lambda_scope():
    g = build_cpg(
        "class A {\n"                                       # 1
        "  int f(int x) { return g(x) + this.g(1); }\n"     # 2
        "  int g(int y) { return y; }\n"                    # 3
        "  void h() { run(v -> v + 1); }\n"                 # 4
        "}\n", "java", granularity="file")
    # g(x) and this.g(1) on line 2 both call g (line 3); run(...) has no declaration here
    assert edge_set(g, EdgeType.CALL) == {("method_invocation@2", "method_declaration@3")}
    assert len(g.edges(EdgeType.CALL)) == 2
    # the lambda is its own CFG: entry -> body expression -> its exit; v flows inside it
    assert edge_set(g, DFG) == {("x@2:12", "x@2:26"), ("y@3:12", "y@3:24"), ("v@4:17", "v@4:22")}
    assert ("lambda_expression@4", "binary_expression@4", "N") in cfg_set(g)
    assert sum(t == "<exit>" for t in g.node_type) == 4  # f, g, h, lambda


def test_try_with_resources_and_weak_array_element_definition():
    g = build_cpg(
        "void w(int[] a, int i) {\n"        # 1
        "    try (R r = open(a)) {\n"       # 2
        "        a[i] = r.read();\n"        # 3
        "    }\n"                           # 4
        "    use(a);\n"                     # 5
        "}\n", "java")                      # 6
    assert cfg_set(g) == {
        ("method_declaration@1", "try_with_resources_statement@2", "N"),
        ("try_with_resources_statement@2", "expression_statement@3", "N"),
        ("expression_statement@3", "expression_statement@5", "N"),
        ("expression_statement@5", "<exit>@6", "N"),
    }
    # a[i] = ... reaches use(a) without killing the parameter's definition; `read` is a method
    assert edge_set(g, DFG) == {
        ("a@1", "a@2"), ("a@1", "a@3"), ("a@1", "a@5"), ("a@3", "a@5"), ("i@1", "i@3"), ("r@2", "r@3"),
    }
