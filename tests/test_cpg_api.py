"""build_cpg contract: wrapping, spans, errors, truncation, labels, batching, splitting, CLI."""
import argparse
import json

import numpy as np
import pytest

pytest.importorskip("tree_sitter_java")
pytest.importorskip("tree_sitter_python")

from graph_tools.cpg import EdgeType, build_cpg, normalize_label, split_methods, to_pyg  # noqa: E402

METHOD = "public int add(int a, int b) {\n    int c = a + b;\n    return c;\n}"


def test_bare_java_method_is_wrapped_and_spans_map_back_to_the_snippet():
    g = build_cpg(METHOD, "java")
    assert g.node_type[0] == "method_declaration"
    assert g.byte_span[0].tolist() == [0, len(METHOD)]
    assert g.node_text(0) == METHOD
    assert g.line_span[0].tolist() == [0, 0, 3, 1]
    c_decl = [i for i in range(g.num_nodes) if g.node_type[i] == "identifier" and g.node_label[i] == "c"]
    assert sorted(g.line_span[i][:2].tolist() for i in c_decl) == [[1, 8], [2, 11]]
    assert all(g.node_text(i) == "c" for i in c_decl)
    assert "_CpgWrapper_" not in set(g.node_label.tolist())
    assert g.errors == []


def test_java_file_is_not_wrapped_and_file_granularity_keeps_every_method():
    src = "package p;\nimport java.util.List;\nclass A {\n  void f() {}\n  void g() { f(); }\n}\n"
    g = build_cpg(src, "java", granularity="file")
    assert g.node_type[0] == "program"
    assert g.node_type.count("<exit>") == 2
    assert g.byte_span[0].tolist() == [0, len(src)]
    # method granularity on a file picks its first method
    assert build_cpg(src, "java").node_type[0] == "method_declaration"


@pytest.mark.parametrize("lang,src", [
    ("java", "int f( { return ; "),
    ("java", "}}}{{ class"),
    ("java", ""),
    ("python", "def f(:\n    x = \n"),
    ("python", "print 'py2 style'\nexec code in ns\n"),
    ("python", ""),
])
def test_malformed_code_never_raises_and_records_errors(lang, src):
    g = build_cpg(src, lang)
    assert g.num_nodes >= 1
    assert g.edge_index.shape == (2, g.num_edges)
    assert int(g.edge_index.max(initial=0)) < g.num_nodes
    if src.strip() and not src.startswith("print"):
        assert g.errors, "tree-sitter ERROR/MISSING nodes must be reported"
        for node, start, end, what in g.errors:
            assert what == "ERROR" or what.startswith("MISSING")
            assert 0 <= start <= end <= len(src.encode())


def test_error_nodes_are_kept_in_the_graph_with_their_position():
    g = build_cpg("void f() { int x = ; y = 2; }", "java")
    assert g.errors
    kinds = {what for _, _, _, what in g.errors}
    assert kinds <= {"ERROR"} | {k for k in kinds if k.startswith("MISSING")}


def test_labels_keep_identifier_text_and_operator():
    g = build_cpg(METHOD, "java")
    labels = g.node_label.tolist()
    assert "binary_expression +" in labels
    assert {"add", "a", "b", "c"} <= set(labels)
    assert labels[-1] == "<exit>"
    gp = build_cpg("def f(x):\n    x += 1\n    return x not in y\n", "python")
    assert {"augmented_assignment +=", "comparison_operator not in"} <= set(gp.node_label.tolist())


def test_non_ascii_source_spans_are_utf8_bytes_and_labels_text():
    g = build_cpg('def f(é):\n    s = "ü" + é\n    return s\n', "python")
    ids = [i for i in range(g.num_nodes) if g.node_type[i] == "identifier"]
    assert sorted(g.node_label[i] for i in ids) == sorted(["f", "é", "s", "é", "s"])
    assert all(g.node_text(i) == g.node_label[i] for i in ids)
    names = {(g.node_label[s], g.line_span[s][0], g.node_label[d], g.line_span[d][0]) for s, d in g.edges(EdgeType.DFG)}
    assert names == {("é", 0, "é", 1), ("s", 1, "s", 2)}


def test_normalize_label_splits_identifiers():
    assert normalize_label("getHTTPResponse_code2") == ("get", "http", "response", "code", "2")
    assert normalize_label("snake_case_name") == ("snake", "case", "name")
    assert normalize_label("XMLParser") == ("xml", "parser")
    assert normalize_label("this.fieldName") == ("this", "field", "name")
    assert normalize_label("+=") == ("+=",)
    assert normalize_label("naïveVar") == ("naïvevar",)
    g = build_cpg(METHOD, "java", normalize_labels=True)
    assert normalize_label("binary_expression +") == ("binary", "expression", "+")
    assert normalize_label('"a.b" ==') == ("a", "b", "==")
    assert normalize_label("") == ()
    assert "binary expression +" in g.node_label.tolist()


def test_max_nodes_keeps_statements_first_and_a_valid_tree():
    src = ("int f(int a) {\n" + "".join(f"    a = a * {i} + g(a, {i});\n" for i in range(20))
           + "    return a;\n}")
    full = build_cpg(src, "java")
    cfg_nodes = {d for kind in EdgeType if kind.is_cfg for s, d in full.edges(kind)} | \
                {s for kind in EdgeType if kind.is_cfg for s, d in full.edges(kind)}
    g = build_cpg(src, "java", max_nodes=len(cfg_nodes) + 10)
    assert g.num_nodes == len(cfg_nodes) + 10
    assert g.num_nodes_before_truncation == full.num_nodes
    # every statement survives, with its control flow
    assert g.node_type.count("expression_statement") == 20
    assert len(g.edges(EdgeType.CFG_NEXT)) == len(full.edges(EdgeType.CFG_NEXT))
    # the kept AST is a tree: every node but the root (and the synthetic exit) has one AST parent
    ast = np.array(g.edges(EdgeType.AST))
    parents = np.bincount(ast[:, 1], minlength=g.num_nodes)
    is_exit = np.array([t == "<exit>" for t in g.node_type])
    assert parents[0] == 0 and (parents[1:][~is_exit[1:]] == 1).all() and (parents[is_exit] == 0).all()
    assert g.edge_index.max() < g.num_nodes
    assert build_cpg(src, "java", max_nodes=10 ** 6).num_nodes == full.num_nodes
    with pytest.raises(ValueError, match="max_nodes"):
        build_cpg(src, "java", max_nodes=0)


def test_bad_arguments_name_valid_choices():
    with pytest.raises(ValueError, match="java, python"):
        build_cpg("x", "cobol")
    with pytest.raises(ValueError, match="method, file"):
        build_cpg("x", "java", granularity="class")


def test_to_pyg_batches_with_offsets_and_edge_types():
    g1 = build_cpg(METHOD, "java")
    g2 = build_cpg("def f(x):\n    return x\n", "python")
    batch = to_pyg([g1, g2])
    assert batch.num_graphs == 2
    assert batch.num_nodes == g1.num_nodes + g2.num_nodes
    assert batch.edge_type.tolist() == g1.edge_type.tolist() + g2.edge_type.tolist()
    expected = np.concatenate([g1.edge_index, g2.edge_index + g1.num_nodes], axis=1)
    assert batch.edge_index.numpy().tolist() == expected.tolist()
    assert batch.batch.tolist() == [0] * g1.num_nodes + [1] * g2.num_nodes
    assert batch.node_label[1] == list(g2.node_label)
    with pytest.raises(ValueError):
        to_pyg([])


def test_split_methods_java_and_python():
    java = ("class A {\n  A() {}\n  int f() { return 1; }\n"
            "  static class B { void g() { Runnable r = new Runnable() { public void run() {} }; } }\n}\n")
    ms = list(split_methods(java, "java"))
    assert [m.qualname for m in ms] == ["A.A", "A.f", "A.B.g", "A.B.g.run"]
    assert ms[1].text == "int f() { return 1; }" and ms[1].start_line == 2
    py = "def top():\n    def inner():\n        pass\nclass C:\n    @staticmethod\n    def m(self):\n        return 1\n"
    ps = list(split_methods(py, "python"))
    assert [m.qualname for m in ps] == ["top", "top.inner", "C.m"]
    assert ps[2].text.startswith("def m(self):")
    g = build_cpg(ps[2].text, "python")
    assert g.node_type[0] == "function_definition" and not g.errors


def test_json_and_dot_renderings():
    g = build_cpg(METHOD, "java")
    data = json.loads(g.dumps())
    assert len(data["nodes"]) == g.num_nodes and len(data["edges"]) == g.num_edges
    assert {e["type"] for e in data["edges"]} == {"AST", "CFG_NEXT", "DFG"}
    assert data["nodes"][0]["kind"] == "method_declaration"
    dot = g.to_dot("add")
    assert dot.startswith('digraph "add" {') and dot.rstrip().endswith("}")
    assert "color=blue" in dot and "color=black" in dot  # DFG and CFG_NEXT colours
    assert dot.count("->") == g.num_edges


def _cli(argv):
    from cptpp.code.commands import add_commands
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_json_dot_and_method(tmp_path, capsys):
    f = tmp_path / "A.java"
    f.write_text("class A {\n  int f(int x) { return x; }\n  int g() { return f(1); }\n}\n")
    assert _cli(["cpg", str(f)]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["nodes"][0]["kind"] == "program"
    assert _cli(["cpg", str(f), "--function", "f"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["nodes"][0]["kind"] == "method_declaration"
    dfg = [(one["nodes"][e["src"]], one["nodes"][e["dst"]]) for e in one["edges"] if e["type"] == "DFG"]
    assert [(a["label"], a["span"][:2], b["label"], b["span"][:2]) for a, b in dfg] == [("x", [0, 10], "x", [0, 22])]
    assert _cli(["cpg", str(f), "--format", "dot", "--function", "A.g"]) == 0
    assert capsys.readouterr().out.startswith('digraph "A.g"')
    with pytest.raises(ValueError, match="found: A.f, A.g"):
        _cli(["cpg", str(f), "--function", "nope"])
    with pytest.raises(ValueError, match="--language"):
        _cli(["cpg", str(tmp_path / "x.txt")])


def test_deeply_nested_statements_do_not_hit_the_recursion_limit():
    n = 1500  # an else-if chain nests one level per `else if`
    src = "void f(int x) {" + " else ".join(f"if (x == {i}) {{ y = {i}; }}" for i in range(n)) + " }"
    g = build_cpg(src, "java")
    assert len(g.edges(EdgeType.CFG_TRUE)) == n and len(g.edges(EdgeType.CFG_FALSE)) == n
    assert g.errors == []


@pytest.mark.parametrize("src,is_file", [
    ("@Deprecated public final class A {}", True),
    ("/* header */ package a;", True),
    ("// x\n// y\nimport a.b;", True),
    ('@SuppressWarnings("x") class B {}', True),
    ("public int f() { return 0; }", False),
    ("  /** doc */\n public void f() {}", False),
    ("@Override\npublic void run() {}", False),
])
def test_java_file_or_bare_method_detection(src, is_file):
    g = build_cpg(src, "java", granularity="file")
    # a file stays whole; a bare method is wrapped, and its method (not the wrapper) is the root
    assert g.node_type[0] == ("program" if is_file else "method_declaration")
    assert g.byte_span[0, 0] >= 0 and g.byte_span[0, 1] <= len(src.encode())
