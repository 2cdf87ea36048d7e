"""Label text normalization for embedding: split identifiers into lower-case subtokens."""
from __future__ import annotations

import functools
import re

# camelCase / PascalCase / ACRONYMWord / digits boundaries, after splitting on non-alphanumerics.
_PIECES = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


@functools.lru_cache(maxsize=1 << 16)
def normalize_label(text: str) -> tuple[str, ...]:
    """Subtokens of a node label, lower-cased: ``"getHTTPResponse_code2"`` ->
    ``("get", "http", "response", "code", "2")``.

    Splits on anything that is not a letter or digit (``_``, ``.``, spaces, quotes), on
    lower->upper case changes, before the last capital of an acronym run, and around digit
    runs. Non-ASCII letters are kept as whole words. Operators and punctuation-only labels
    (``"+"``, ``"=="``) come back unchanged as one token so they still embed distinctly.
    """
    words = re.split(r"[^0-9A-Za-z\u00C0-\uFFFF]+", text)
    out = []
    for w in words:
        if not w:
            continue
        pieces = _PIECES.findall(w)
        if "".join(pieces) != w:  # non-ASCII letters: keep the word whole
            pieces = [w]
        out.extend(p.lower() for p in pieces)
    if not out and text.strip():
        return (text.strip(),)
    return tuple(out)
