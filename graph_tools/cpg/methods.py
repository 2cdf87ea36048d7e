"""Split a source file into its methods (Java) / functions (Python)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from .languages import get_spec


@dataclass(frozen=True)
class Method:
    """One method/function of a file.

    ``qualname`` joins enclosing class/function names with dots (``Outer.Inner.run``);
    ``start_byte``/``end_byte`` index the UTF-8 bytes of the file, lines are 0-based;
    ``text`` is the method's own source (Java: modifiers and annotations included; Python:
    from ``def``, decorators excluded, later lines keep their file indentation).
    """

    name: str
    qualname: str
    start_byte: int
    end_byte: int
    start_line: int
    end_line: int
    text: str


def split_methods(source, language: str) -> Iterator[Method]:
    """Every method/constructor (Java) or function/method (Python, nested ones too), in
    source order. Malformed files yield what tree-sitter recovered; nothing raises."""
    spec = get_spec(language)
    data = source.encode("utf-8") if isinstance(source, str) else bytes(source)
    root = spec.parser.parse(data).root_node
    if language == "java":
        funcs = {spec.METHOD_DECLARATION, spec.CONSTRUCTOR_DECLARATION, spec.COMPACT_CONSTRUCTOR_DECLARATION}
        scopes = funcs | {spec.CLASS_DECLARATION, spec.INTERFACE_DECLARATION, spec.ENUM_DECLARATION,
                          spec.RECORD_DECLARATION, spec.ANNOTATION_TYPE_DECLARATION}
    else:
        funcs = {spec.FUNCTION_DEFINITION}
        scopes = funcs | {spec.CLASS_DEFINITION}
    ident = spec.identifier_kinds
    stack = [(root, ())]
    found = []
    while stack:
        node, outer = stack.pop()
        kind = node.kind_id
        name = None
        if kind in scopes:
            for c in node.named_children:
                if c.kind_id in ident:
                    name = c.text.decode("utf-8", errors="replace")
                    break
            if name is None:
                name = "<anonymous>"
        if kind in funcs:
            found.append(Method(name=name, qualname=".".join(outer + (name,)), start_byte=node.start_byte,
                                end_byte=node.end_byte, start_line=node.start_point[0],
                                end_line=node.end_point[0],
                                text=data[node.start_byte:node.end_byte].decode("utf-8", errors="replace")))
        inner = outer + (name,) if name is not None else outer
        stack.extend((c, inner) for c in reversed(node.named_children))
    found.sort(key=lambda m: m.start_byte)
    yield from found
