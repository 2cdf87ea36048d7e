"""Readers for the interaction file formats recsys datasets ship in, vectorized with numpy.

Formats (ids are raw: whatever the file uses):

- ``adjacency`` (LightGCN / NGCF / BARS): one line per user, ``user item item ...``, whitespace
  separated integers.
- ``selfrec`` (SELFRec sequential): ``user:item item ...``, items in time order.
- ``table``: one interaction per line, ``user item [rating] [timestamp]``; the separator is one
  of tab, comma, space(s), ``::`` or ``;``; an optional header line (see :func:`_looks_like_header`).
  Ids may be any UTF-8 token without the separator (integer ids up to 2**53 become int64, others
  str); quoted CSV fields are not supported. Ratings must be finite numbers (``nan``/``inf`` are
  malformed lines).

Every reader returns a :class:`RawInteractions`. A bad line raises :class:`MalformedLineError`
naming ``file:line``, showing the line and the expected format.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cptpp.download import MalformedLineError  # the one malformed-line error of every loader

ADJACENCY_FORMAT = "'user item item ...' (whitespace-separated integer ids, one line per user)"
SELFREC_FORMAT = "'user:item item ...' (integer ids, one line per user)"
TABLE_FORMAT = "'user item [rating] [timestamp]' with the same separator and field count on every line"
SEPARATORS = {"\t": "tab", ",": "comma", "::": "'::'", ";": "';'", " ": "whitespace"}

_DIGIT_LO, _DIGIT_HI = ord("0"), ord("9")
_NUMERIC_BYTES = np.zeros(256, dtype=bool)
_NUMERIC_BYTES[[ord(c) for c in "0123456789.-+eE \t\r\n\v\f"]] = True


@dataclass
class RawInteractions:
    """Interactions as read from one file: ``users``, ``items`` ``[n]`` raw ids (int64 or str),
    ``ratings`` ``[n]`` float64 or None."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None
    path: str
    format: str
    header: str | None = None  # the first line, when it was read as column names and skipped

    def __len__(self) -> int:
        return len(self.users)


# ---------------------------------------------------------------------------------------------
# byte-level scanning shared by all readers


@dataclass
class _Scan:
    """Token layout of a file: ``starts`` byte offsets of whitespace-separated tokens ``[t]``,
    ``line`` their 1-based line numbers ``[t]``, ``newlines`` offsets of b'\\n'."""

    data: bytes
    buf: np.ndarray
    newlines: np.ndarray
    starts: np.ndarray
    line: np.ndarray


def _scan(data: bytes) -> _Scan:
    buf = np.frombuffer(data, dtype=np.uint8)
    # The bytes bytes.split() and numpy's parser take as whitespace (\v and \f too), so token counts agree.
    ws = (buf == 32) | (buf == 10) | (buf == 9) | (buf == 13) | (buf == 11) | (buf == 12)
    prev_ws = np.concatenate(([True], ws[:-1]))
    starts = np.flatnonzero(~ws & prev_ws)
    newlines = np.flatnonzero(buf == 10)
    return _Scan(data, buf, newlines, starts, np.searchsorted(newlines, starts) + 1)


def _line_text(data: bytes, lineno: int) -> str:
    """The text of 1-based line ``lineno`` (error path only)."""
    lines = data.split(b"\n")
    return lines[lineno - 1].rstrip(b"\r").decode("utf-8", "replace") if lineno <= len(lines) else ""


def _first_bad_byte(scan: _Scan, allowed: np.ndarray) -> int | None:
    bad = np.flatnonzero(~allowed[scan.buf])
    return None if len(bad) == 0 else int(bad[0])


def _lineno_of(scan: _Scan, pos: int) -> int:
    return int(np.searchsorted(scan.newlines, pos)) + 1


def _read_bytes(path: str | Path) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"cannot read {path}: {e.strerror}") from None
    nul = data.find(b"\x00")
    if nul >= 0:  # UTF-16/32 text (or a binary file): every other byte is NUL
        n = data.count(b"\n", 0, nul) + 1
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        raise MalformedLineError(path, n, _line_text(data, n), "UTF-8 text",
                                 ("the file is UTF-16/32 text" if utf16 else f"a NUL byte at byte {nul}")
                                 + "; interaction files must be UTF-8 (or ASCII) text")
    # A UTF-8 byte-order mark becomes whitespace: offsets and line numbers stay exact.
    return b"   " + data[3:] if data.startswith(b"\xef\xbb\xbf") else data


# ---------------------------------------------------------------------------------------------
# one line per user


def _parse_adjacency_bytes(data: bytes, path, expected: str, fmt: str) -> RawInteractions:
    """``user item item ...`` lines -> one (user, item) pair per item token."""
    scan = _scan(data)
    allowed = np.zeros(256, dtype=bool)
    allowed[_DIGIT_LO:_DIGIT_HI + 1] = True
    allowed[[9, 10, 13, 32]] = True
    bad = _first_bad_byte(scan, allowed)
    if bad is not None:
        n = _lineno_of(scan, bad)
        raise MalformedLineError(path, n, _line_text(data, n), expected,
                                 f"unexpected character {chr(scan.buf[bad])!r}")
    values = np.fromstring(data, dtype=np.int64, sep=" ") if len(scan.starts) else np.zeros(0, np.int64)
    if len(values) != len(scan.starts):  # cannot happen after the byte check; guards numpy quirks
        raise MalformedLineError(path, 1, _line_text(data, 1), expected, "could not parse the integers")
    is_first = np.concatenate(([True], scan.line[1:] != scan.line[:-1])) if len(values) else np.zeros(0, bool)
    user_of_token = values[is_first][np.cumsum(is_first) - 1]
    return RawInteractions(user_of_token[~is_first], values[~is_first], None, str(path), fmt)


def read_adjacency(path: str | Path) -> RawInteractions:
    """LightGCN format: ``user item item ...`` per line -> pairs ``[n]``. A user-only line adds nothing."""
    return _parse_adjacency_bytes(_read_bytes(path), path, ADJACENCY_FORMAT, "adjacency")


def read_selfrec(path: str | Path) -> RawInteractions:
    """SELFRec sequential format: ``user:item item ...`` per line -> pairs (time order is dropped)."""
    data = _read_bytes(path)
    buf = np.frombuffer(data, dtype=np.uint8)
    colons = np.flatnonzero(buf == ord(":"))
    scan = _scan(data)
    if len(scan.starts):
        # Every non-empty line has exactly one colon, right after its first token's digits.
        lines_with_tokens = np.unique(scan.line)
        colon_line = np.searchsorted(scan.newlines, colons) + 1
        first_start = scan.starts[np.concatenate(([True], scan.line[1:] != scan.line[:-1]))]
        ok_count = np.zeros(int(lines_with_tokens.max()) + 2, dtype=np.int64)
        np.add.at(ok_count, colon_line, 1)
        bad_lines = lines_with_tokens[ok_count[lines_with_tokens] != 1]
        if len(bad_lines):
            n = int(bad_lines[0])
            raise MalformedLineError(path, n, _line_text(data, n), SELFREC_FORMAT,
                                     "needs exactly one ':' after the user id")
        # The colon must end the first token: no whitespace between the line's first byte and it.
        first_of_colon_line = first_start[np.searchsorted(lines_with_tokens, colon_line)]
        prev = buf[np.maximum(colons - 1, 0)]
        ws = (buf == 32) | (buf == 9)
        ws_cum = np.concatenate(([0], np.cumsum(ws)))
        ws_before = ws_cum[colons] - ws_cum[first_of_colon_line]
        wrong = (ws_before != 0) | (prev < _DIGIT_LO) | (prev > _DIGIT_HI) | (colons == first_of_colon_line)
        if wrong.any():
            n = int(colon_line[np.flatnonzero(wrong)[0]])
            raise MalformedLineError(path, n, _line_text(data, n), SELFREC_FORMAT,
                                     "the user id must come right before ':'")
    return _parse_adjacency_bytes(data.replace(b":", b" "), path, SELFREC_FORMAT, "selfrec")


# ---------------------------------------------------------------------------------------------
# one interaction per line


def _head_lines(data: bytes, nbytes: int = 1 << 16) -> list[bytes]:
    """Non-empty complete lines in the first ``nbytes`` (a cut-off last line is dropped)."""
    lines = data[:nbytes].split(b"\n")
    if len(data) > nbytes:
        lines = lines[:-1]
    return [ln for ln in lines if ln.strip()]


def sniff_separator(data: bytes, sample_lines: int = 50) -> str:
    """Pick the field separator from the first non-empty lines: ``::``, tab, comma, ``;``, else whitespace."""
    lines = _head_lines(data)[:sample_lines]
    for sep in ("::", "\t", ",", ";"):
        if lines and all(sep.encode() in ln for ln in lines):
            return sep
    return " "


# Column names of ratings files in the wild (MovieLens, Amazon, Yelp, Book-Crossing, RecBole .inter).
_COLUMN_NAMES = frozenset("""
user user_id userid uid u_id reviewer reviewer_id reviewerid customer customer_id customerid visitorid
item item_id itemid iid i_id movie movie_id movieid product product_id productid asin isbn book book_id
bookid business_id track artist_id song
rating ratings score stars star value weight count label feedback preference
timestamp time ts date datetime unix_timestamp unixreviewtime unix_review_time event_time
""".split())


def _is_column_name(tok: bytes) -> bool:
    name = tok.strip().strip(b"\"'").lower().replace(b"-", b"_")
    name = name.split(b":")[0]  # RecBole .inter: 'user_id:token'
    return name.decode("ascii", "replace") in _COLUMN_NAMES


def _looks_like_header(lines: list[list[bytes]]) -> bool:
    """Whether the first of the file's first non-empty ``lines`` (split into fields) names columns.

    Yes when every field of it is a known column name (``userId``, ``item_id``, ``rating``, ...); or a
    rating/timestamp field (3rd or 4th) of it is not a number where the next line has one; or its
    user/item id fields are not numbers while those of every following sampled line are. A first line
    of string ids (``user1,item55,5``) is data.
    """
    if not lines or not lines[0]:
        return False
    first, rest = lines[0], lines[1:]
    if all(_is_column_name(t) for t in first):
        return True
    if not rest:
        return False
    if any(not _is_number(a) and _is_number(b) for a, b in list(zip(first, rest[0]))[2:]):
        return True
    ids = [c for c in range(min(2, len(first))) if not _is_number(first[c])]
    return bool(ids) and all(len(ln) > c and _is_number(ln[c]) for ln in rest for c in ids)


def _is_number(tok: bytes) -> bool:
    try:
        float(tok)
        return True
    except ValueError:
        return False


# Integer ids beyond this do not survive the float64 fast path exactly; they are read as text.
_MAX_EXACT_ID = 2 ** 53


def read_table(path: str | Path, *, sep: str | None = None) -> RawInteractions:
    """``user item [rating] [timestamp]`` per line -> pairs with optional ratings ``[n]``.

    ``sep`` None sniffs it (:func:`sniff_separator`); a header line is detected and skipped.
    The timestamp column is read for validation only (it is not used).
    """
    data = _read_bytes(path)
    sep = sniff_separator(data) if sep is None else sep
    # Replace separators by same-length whitespace so byte offsets and line numbers stay exact.
    body = data if sep == " " else data.replace(sep.encode(), b" " * len(sep))
    head_end, header = 0, None
    sample = [ln.split() for ln in _head_lines(body)[:50]]
    if _looks_like_header(sample):
        first = _head_lines(body)[0]
        head_end = body.index(first) + len(first)
        header = _line_text(data, data.count(b"\n", 0, head_end) + 1)
        body = b" " * head_end + body[head_end:]
    expected = f"{TABLE_FORMAT} ({SEPARATORS.get(sep, repr(sep))}-separated)"
    scan = _scan(body)
    if not len(scan.starts):
        return RawInteractions(np.zeros(0, np.int64), np.zeros(0, np.int64), None, str(path), "table", header)
    lines, counts = np.unique(scan.line, return_counts=True)
    nf = int(counts[0])
    odd = np.flatnonzero((counts != nf) | (counts < 2) | (counts > 4))
    if len(odd):
        n = int(lines[odd[0]])
        c = int(counts[odd[0]])
        fields_ = f"{c} field" + ("s" if c != 1 else "")
        why = f"{fields_}; every line needs 2 to 4" if c < 2 or c > 4 else f"{fields_} (the first line has {nf})"
        raise MalformedLineError(path, n, _line_text(data, n), expected, why)
    if _first_bad_byte(scan, _NUMERIC_BYTES) is None:
        try:
            table = np.fromstring(body, dtype=np.float64, sep=" ").reshape(-1, nf)
        except ValueError:  # e.g. '1-2': numeric bytes but not a number; find the line below
            table = None
        if table is not None and np.abs(table[:, :2]).max() <= _MAX_EXACT_ID:
            ids = table[:, :2]
            frac = np.flatnonzero((ids != np.round(ids)).any(axis=1))
            if len(frac):
                n = int(lines[frac[0]])
                raise MalformedLineError(path, n, _line_text(data, n), expected, "user and item ids must be integers")
            ratings = table[:, 2].copy() if nf >= 3 else None
            _check_finite(ratings, lines, path, data, expected)
            return RawInteractions(ids[:, 0].astype(np.int64), ids[:, 1].astype(np.int64), ratings, str(path),
                                   "table", header)
    # Non-numeric ids (or a bad number): split into tokens as bytes, one row per line.
    tokens = np.array(body.split()).reshape(-1, nf)
    ratings = None
    if nf >= 3:
        for col, what in ((2, "rating"), (3, "timestamp"))[: nf - 2]:
            try:
                vals = tokens[:, col].astype(np.float64)
            except ValueError:
                row = next(i for i, t in enumerate(tokens[:, col]) if not _is_number(t))  # error path only
                n = int(lines[row])
                bad = tokens[row, col].decode(errors="replace")
                raise MalformedLineError(path, n, _line_text(data, n), expected,
                                         f"{what} {bad!r} is not a number") from None
            if col == 2:
                ratings = vals
                _check_finite(ratings, lines, path, data, expected)
    users, items = (_as_ids(tokens[:, c], lines, path, data, expected) for c in (0, 1))
    return RawInteractions(users, items, ratings, str(path), "table", header)


def _check_finite(ratings, lines, path, data, expected) -> None:
    """A NaN or infinite rating would pass or fail any threshold silently: it is a malformed line."""
    if ratings is None:
        return
    bad = np.flatnonzero(~np.isfinite(ratings))
    if len(bad):
        n = int(lines[bad[0]])
        raise MalformedLineError(path, n, _line_text(data, n), expected,
                                 f"rating {ratings[bad[0]]!r} is not a finite number")


def _as_ids(col: np.ndarray, lines, path, data, expected) -> np.ndarray:
    """Byte tokens ``[n]`` -> int64 ids when all are integers up to 2**53, else str ids (UTF-8)."""
    try:
        ids = col.astype(np.int64)
        if np.abs(ids).max(initial=0) <= _MAX_EXACT_ID:
            return ids
    except (ValueError, OverflowError):
        pass
    try:
        return np.char.decode(col, "utf-8")
    except UnicodeDecodeError:
        row = next(i for i, t in enumerate(col) if not _is_utf8(t))  # error path only
        n = int(lines[row])
        raise MalformedLineError(path, n, _line_text(data, n), expected,
                                 "the id is not UTF-8 text; convert the file to UTF-8") from None


def _is_utf8(tok: bytes) -> bool:
    try:
        tok.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def sniff_format(data: bytes) -> str:
    """"adjacency", "selfrec" or "table" for a file whose format is not declared.

    A ``user:item ...`` first line is selfrec. Whitespace-separated integer lines with more than 4
    fields, or a varying field count, are adjacency lines; 2-4 fields on every line are a table
    (for 2 fields both readings give the same pairs).
    """
    first = next(iter(_head_lines(data)), b"")
    head = first.split()[0] if first.split() else b""
    if b":" in head and b"::" not in first and head.split(b":")[0].isdigit():
        return "selfrec"
    if sniff_separator(data) != " ":
        return "table"
    scan = _scan(data)
    if not len(scan.starts):
        return "table"
    _, counts = np.unique(scan.line, return_counts=True)
    if counts.max() > 4 or counts.min() != counts.max():
        return "adjacency"
    return "table"


def read_interactions(path: str | Path, fmt: str | None = None, *, sep: str | None = None) -> RawInteractions:
    """Read ``path`` in format ``fmt`` ("adjacency", "selfrec", "table"; None sniffs it)."""
    if fmt is None:
        fmt = sniff_format(_read_bytes(path))
    if fmt == "adjacency":
        return read_adjacency(path)
    if fmt == "selfrec":
        return read_selfrec(path)
    if fmt == "table":
        return read_table(path, sep=sep)
    raise ValueError(f"unknown interaction file format {fmt!r}; valid: adjacency, selfrec, table")
