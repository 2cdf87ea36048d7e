"""Per-language tables: tree-sitter parser, kind ids of the node kinds the builder cares about.

Everything here is computed once per language and cached, so the hot path compares ints.
"""
from __future__ import annotations

import functools

LANGUAGES = ("java", "python")
ERROR_KIND = 65535  # tree-sitter's ts_builtin_sym_error
# Node groups of `FlatAst.where` (values of ``spec.indexed``).
IDENTIFIERS, FUNCTIONS, CALLS, OPERATORS, COMPREHENSIONS = 1, 2, 3, 4, 5

# Kind names each language needs; each becomes an attribute (kind id) on the spec.
_JAVA_KINDS = """
program class_declaration class_body interface_body enum_body_declarations record_declaration
method_declaration constructor_declaration compact_constructor_declaration constructor_body
lambda_expression static_initializer block identifier this field_access method_invocation
argument_list type_arguments variable_declarator assignment_expression update_expression
array_access formal_parameter catch_formal_parameter spread_parameter resource
inferred_parameters enhanced_for_statement labeled_statement break_statement continue_statement
return_statement throw_statement yield_statement if_statement while_statement for_statement
do_statement switch_expression switch_block switch_block_statement_group switch_rule
switch_label try_statement try_with_resources_statement resource_specification catch_clause
finally_clause synchronized_statement expression_statement local_variable_declaration
binary_expression unary_expression formal_parameters line_comment block_comment
method_reference scoped_identifier marker_annotation annotation element_value_pair
enum_constant interface_declaration enum_declaration annotation_type_declaration
""".split()

_PY_KINDS = """
module function_definition class_definition decorated_definition lambda parameters
lambda_parameters default_parameter typed_parameter typed_default_parameter list_splat_pattern
dictionary_splat_pattern block identifier attribute call keyword_argument assignment
augmented_assignment pattern_list tuple_pattern list_pattern expression_list tuple list
parenthesized_expression as_pattern_target named_expression subscript for_in_clause
list_comprehension set_comprehension dictionary_comprehension generator_expression
if_statement elif_clause else_clause while_statement for_statement try_statement except_clause
finally_clause with_statement match_statement case_clause break_statement
continue_statement return_statement raise_statement global_statement nonlocal_statement
import_statement import_from_statement aliased_import dotted_name binary_operator
unary_operator comparison_operator boolean_operator not_operator comment expression_statement
""".split()

# Operator-carrying kinds whose label gets the operator token appended ("binary_expression +").
_OPERATOR_KINDS = {
    "java": ("binary_expression", "unary_expression", "assignment_expression", "update_expression"),
    "python": ("binary_operator", "unary_operator", "augmented_assignment", "comparison_operator",
               "boolean_operator"),
}
_COMMENT_KINDS = {"java": ("line_comment", "block_comment"), "python": ("comment",)}


class LanguageSpec:
    """Attribute bag of one language's tables (filled by `get_spec`). A plain class rather
    than ``types.SimpleNamespace``: the interpreter reads its attributes about twice as fast,
    and the builder reads them on every call."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


@functools.lru_cache(maxsize=None)
def get_spec(language: str) -> LanguageSpec:
    """Parser + kind-id tables for ``language`` (``"java"`` or ``"python"``)."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; valid: {', '.join(LANGUAGES)}")
    try:
        import tree_sitter as ts
        grammar = __import__(f"tree_sitter_{language}")
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            f"building code property graphs needs tree-sitter and tree-sitter-{language}; "
            "install the [code] extra: pip install 'cptpp[code]' (from a checkout: pip install -e '.[code]')") from e
    lang = ts.Language(grammar.language())
    spec = LanguageSpec(name=language, language=lang, parser=ts.Parser(lang))
    n = lang.node_kind_count
    names = [lang.node_kind_for_id(k) or "" for k in range(n)]
    names += ["<exit>", "ERROR"]
    spec.EXIT = n          # synthetic exit node kind
    spec.ERROR_REMAP = n + 1  # ERROR nodes are stored with this id so kinds fit in [0, n+2)
    spec.kind_names = tuple(names)
    # Per-kind tables are lists indexed by the raw kind id (ERROR=65535 included): the
    # interpreter indexes a list of ints faster than a bytearray.
    # kept[k]: named, visible, not a comment.
    kept = [0] * 65536
    for k in range(n):
        kept[k] = 1 if (lang.node_kind_is_named(k) and lang.node_kind_is_visible(k)) else 0
    spec.comment_kinds = frozenset(lang.id_for_node_kind(c, True) for c in _COMMENT_KINDS[language])
    for c in spec.comment_kinds:
        kept[c] = 0
    kept[ERROR_KIND] = 1
    spec.kept = kept
    # kind id -> label for inner nodes, indexable by the raw ERROR id too
    spec.label_names = names[:n] + [""] * (65536 - n)
    spec.label_names[ERROR_KIND] = "ERROR"
    for name in (_JAVA_KINDS if language == "java" else _PY_KINDS):
        kid = lang.id_for_node_kind(name, True)
        if kid is None:  # pragma: no cover - grammar drift
            raise RuntimeError(f"tree-sitter-{language} has no node kind {name!r}; grammar version unsupported")
        setattr(spec, name.upper(), kid)
    # Several grammars reuse one name under different ids (aliases); map all ids of a name.
    by_name: dict[str, set[int]] = {}
    for k, nm in enumerate(names[:n]):
        if kept[k]:
            by_name.setdefault(nm, set()).add(k)
    spec.ids = lambda *kinds: frozenset(i for nm in kinds for i in by_name.get(nm, ()))
    spec.operator_kinds = spec.ids(*_OPERATOR_KINDS[language])
    # Kinds whose label is their source text (when they have no named children): grammar
    # terminals (ids below the root rule's), plus aliases/type keywords that are tokens.
    root_id = lang.id_for_node_kind("program" if language == "java" else "module", True)
    token_like = {"type_identifier", "integral_type", "floating_point_type", "boolean_type", "void_type"}
    spec.text_label = [0] * 65536
    for k in range(n):
        spec.text_label[k] = 1 if (k < root_id or names[k] in token_like) else 0
    # expand[k]: `flatten` walks the children of kind k (not token-like, not a comment)
    spec.expand = [1 - x for x in spec.text_label]
    for c in spec.comment_kinds:
        spec.expand[c] = 0
    spec.body_field = lang.field_id_for_name("body")
    spec.identifier_kinds = spec.ids("identifier")
    spec.block_kinds = spec.ids("block")
    spec.comprehension_kinds = spec.ids("list_comprehension", "set_comprehension", "dictionary_comprehension",
                                        "generator_expression")  # empty for Java
    # function-like kinds (each gets its own CFG), and the call/declaration pair of call edges
    if language == "java":
        spec.function_kinds = frozenset({spec.METHOD_DECLARATION, spec.CONSTRUCTOR_DECLARATION,
                                         spec.COMPACT_CONSTRUCTOR_DECLARATION, spec.STATIC_INITIALIZER,
                                         spec.LAMBDA_EXPRESSION})
        spec.call_kind, spec.decl_kind = spec.METHOD_INVOCATION, spec.METHOD_DECLARATION
    else:
        spec.function_kinds = frozenset({spec.FUNCTION_DEFINITION, spec.MODULE} | spec.ids("lambda"))
        spec.call_kind, spec.decl_kind = spec.CALL, spec.FUNCTION_DEFINITION
    # Node groups the CFG/DFG/label/call passes look nodes up by: `flatten` lists the nodes of
    # each group as it walks (see `FlatAst.where`), so no pass scans every node for them.
    # indexed[k] is the group of kind k (0: none). The declarations of call edges are
    # function kinds, found among the FUNCTIONS group.
    spec.indexed = [0] * 65536
    for group, kinds in ((FUNCTIONS, spec.function_kinds), (CALLS, {spec.call_kind}),
                         (OPERATORS, spec.operator_kinds), (COMPREHENSIONS, spec.comprehension_kinds),
                         (IDENTIFIERS, spec.identifier_kinds)):
        for k in kinds:
            spec.indexed[k] = group
    # Identifiers are labelled by their text, which the DFG and call passes read as the name.
    if not all(spec.text_label[k] for k in spec.identifier_kinds):  # pragma: no cover - grammar drift
        raise RuntimeError(f"tree-sitter-{language}: identifier is not a token kind; grammar version unsupported")
    return spec
