"""Label text normalization for embedding: split identifiers into lower-case subtokens."""
from __future__ import annotations

import functools
import re

# camelCase / PascalCase / ACRONYMWord / digits boundaries, after splitting on non-alphanumerics.
_PIECES = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_NON_WORD = re.compile(r"[^0-9A-Za-z\u00C0-\uFFFF]+")
_WORD = re.compile(r"[0-9A-Za-z\u00C0-\uFFFF]")


@functools.lru_cache(maxsize=1 << 16)
def normalize_label(text: str) -> tuple[str, ...]:
    """Subtokens of a node label, lower-cased: ``"getHTTPResponse_code2"`` ->
    ``("get", "http", "response", "code", "2")``.

    Splits on whitespace, then inside each chunk on anything that is not a letter or digit
    (``_``, ``.``, quotes), on lower->upper case changes, before the last capital of an acronym
    run, and around digit runs. Words with non-ASCII letters are kept whole (lower-cased).
    Whitespace-separated chunks without any letter or digit (operators such as ``+``, ``==``,
    ``not in`` is two words) are kept unchanged, so ``"binary_expression +"`` gives
    ``("binary", "expression", "+")``.
    """
    out = []
    for chunk in text.split():
        if _WORD.search(chunk) is None:  # an operator / punctuation token: keep it whole
            out.append(chunk)
            continue
        for w in _NON_WORD.split(chunk):
            if not w:
                continue
            pieces = _PIECES.findall(w)
            if "".join(pieces) != w:  # non-ASCII letters: keep the word whole
                pieces = [w]
            out.extend(p.lower() for p in pieces)
    return tuple(out)
