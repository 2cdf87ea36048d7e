"""Seeded fuzzing of `cptpp train` and `cptpp cpg` with malformed inputs (issue 18).

Inputs: random bytes, truncations and byte mutations of valid files, wrong encodings (UTF-16,
Latin-1), huge fields, odd separators. For every case: exit code 0 or 2, no traceback on stderr,
and nothing outside ``--out`` is created, changed or removed. The commands run in-process
(``cptpp.cli.main``); a handful also run as real subprocesses.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from cptpp.cli import main

N_RATINGS = 160  # generated ratings files
N_SOURCES = 160  # generated source files (java + python)
TRAIN = ["--epochs", "1", "--recommender", "mf", "--layers", "0", "--dim", "2", "--batch-size", "512",
         "--no-progress", "--ks", "5"]


def _valid_ratings(rng: random.Random) -> bytes:
    sep = rng.choice([",", "\t", " ", "::", ";"])
    rows = ["user,item,rating,timestamp".replace(",", sep)] if rng.random() < 0.3 else []
    for u in range(rng.randint(1, 8)):
        for i in rng.sample(range(12), rng.randint(1, 5)):
            rows.append(sep.join([rng.choice([f"u{u}", str(u)]), str(i), str(rng.randint(-1, 5)), "100"]))
    return ("\n".join(rows) + "\n").encode()


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op, pos = rng.randrange(4), rng.randrange(len(b) + 1)
        if op == 0:
            b[pos:pos] = bytes([rng.randrange(256)])
        elif op == 1 and b:
            del b[pos:pos + rng.randint(1, 4)]
        elif op == 2 and b:
            b[min(pos, len(b) - 1)] = rng.choice(b"\x00\n\r\t ,:;.-+eE9\xff\xc3")
        else:
            b[pos:pos] = rng.choice([b"nan", b"inf", b"1e999", b"-0", b"\xef\xbb\xbf", b",,", b"\n\n"])
    return bytes(b)


def _ratings_case(rng: random.Random, k: int) -> bytes:
    kind = k % 9
    valid = _valid_ratings(rng)
    if kind == 8:  # valid, with benign variations: these should train
        return rng.choice([b"\xef\xbb\xbf", b"", b"\n"]) + valid.replace(b"\n", rng.choice([b"\r\n", b"\n", b"\n\n"]))
    if kind == 0:
        return rng.randbytes(rng.randint(0, 200))  # seeded: a failure reproduces
    if kind == 1:
        return valid[:rng.randint(0, len(valid))]  # truncation
    if kind == 2:
        return valid.decode().encode(rng.choice(["utf-16", "utf-16-le", "utf-32"]))
    if kind == 3:
        return valid.replace(b"u1", "ü\u00e9".encode("latin-1"))  # Latin-1 ids
    if kind == 4:  # huge fields
        field = rng.choice([b"9" * 400, b"x" * 20000, b"1e400", b"-" * 50, b"1" * 30])
        return valid + field + rng.choice([b",3,5\n", b"\t3\t5\n", b"\n"])
    if kind == 5:
        return rng.choice([b"", b"\n\n\n", b"user,item,rating\n", b"\xef\xbb\xbf", b"1,2\n", b"1 2 3 4 5 6\n1\n",
                           b"1:2 3\n4:\n", b"1::2::3\n", b'"a","b","5"\n"c","d","4"\n'])
    return _mutate(rng, valid)


_JAVA = b"""package p;
import java.util.*;
class A {
  int f(int a, int b) {
    int s = 0;
    for (int i = 0; i < a; i++) { if (i % 2 == 0) s += i; else continue; }
    while (b > 0) { b--; s = s * 2; }
    try { s = g(s); } catch (Exception e) { return -1; } finally { s++; }
    switch (s) { case 1: return 1; default: break; }
    return s > 3 ? s : b;
  }
  static int g(int x) { return x + 1; }
}
"""
_PY = b"""import os
def f(a, b=2, *args, **kw):
    s = 0
    for i in range(a):
        if i % 2:
            s += i
        elif i > 5:
            break
    while b:
        b -= 1
    try:
        s = g(s)
    except ValueError as e:
        return -1
    finally:
        s += 1
    return [x for x in args if x] or s

class C:
    def m(self):
        return lambda y: y + 1
"""


def _source_case(rng: random.Random, k: int) -> tuple[bytes, str]:
    suffix = ".java" if k % 2 else ".py"
    valid = _JAVA if suffix == ".java" else _PY
    kind = (k // 2) % 7
    if kind == 0:
        data = rng.randbytes(rng.randint(0, 300))
    elif kind == 1:
        data = valid[:rng.randint(0, len(valid))]
    elif kind == 2:
        data = valid.decode().encode(rng.choice(["utf-16", "latin-1", "cp1252"])) + "é".encode("latin-1")
    elif kind == 3:
        data = valid.replace(b"s", b"s" * rng.choice([1000, 20000]), 1)  # a huge identifier
    elif kind == 4:
        depth = rng.choice([50, 500, 3000])
        data = (b"x = " + b"(" * depth + b"1" + b")" * depth + b"\n") if suffix == ".py" else (
            b"class A { int f() { return " + b"(" * depth + b"1" + b")" * depth + b"; } }\n")
    elif kind == 5:
        data = rng.choice([b"", b"\n", b"\x00" * 10, b"\xef\xbb\xbf", b"\xff\xfe", b"class", b"def"])
    else:
        data = _mutate(rng, valid)
    return data, suffix


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` except ``skip``: (size, mtime_ns) for files."""
    snap = {}
    for p in root.rglob("*"):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.stat()
        snap[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns) if p.is_file() else (-1, 0)
    return snap


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse usage errors
            rc = e.code
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("CPTPP_DATA_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fuzz_train_on_malformed_ratings_files(sandbox):
    rng = random.Random(18)
    codes = {0: 0, 2: 0}
    for k in range(N_RATINGS):
        data = _ratings_case(rng, k)
        path = sandbox / f"r{k}.{rng.choice(['csv', 'tsv', 'txt', 'dat'])}"
        path.write_bytes(data)
        out = sandbox / f"run{k}"
        before = _snapshot(sandbox, skip=out)
        rc, _, err = _run(["train", "--dataset", str(path), "--out", str(out), *TRAIN])
        assert rc in (0, 2) and "Traceback" not in err, (k, data[:200], rc, err[-2000:])
        assert _snapshot(sandbox, skip=out) == before, (k, data[:200])
        if rc == 2:
            assert "error:" in err and not out.exists(), (k, data[:200], err[-500:])
        codes[rc] += 1
    assert codes[0] > 10 and codes[2] > 10, codes  # both outcomes are exercised


def test_fuzz_cpg_on_malformed_sources(sandbox):
    pytest.importorskip("tree_sitter_java")
    pytest.importorskip("tree_sitter_python")
    rng = random.Random(1818)
    codes = {0: 0, 2: 0}
    for k in range(N_SOURCES):
        data, suffix = _source_case(rng, k)
        path = sandbox / f"s{k}{suffix}"
        path.write_bytes(data)
        before = _snapshot(sandbox)
        extra = rng.choice([[], ["--format", "dot"], ["--max-nodes", "7"], ["--function", "f"], ["--normalize-labels"]])
        rc, out, err = _run(["cpg", str(path), *extra])
        assert rc in (0, 2) and "Traceback" not in err, (k, data[:200], extra, rc, err[-2000:])
        assert _snapshot(sandbox) == before, (k, data[:200])
        if not _is_utf8(data):  # spans are byte offsets of UTF-8 text: anything else is refused, not shifted
            assert rc == 2 and "not UTF-8 at byte" in err, (k, data[:200], rc, err[-500:])
        elif rc == 0 and extra in ([], ["--max-nodes", "7"], ["--normalize-labels"]):
            spans = [n["bytes"] for n in json.loads(out)["nodes"]]
            assert all(0 <= s <= e <= len(data) for s, e in spans), (k, data[:200])
        codes[rc] += 1
    assert codes[0] > 10 and codes[2] > 10, codes


def test_fuzz_a_few_cases_as_real_processes(tmp_path):
    """The same contract through the real entry point: exit code and stderr of a process."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "CPTPP_DATA_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cases = [
        ("r.csv", b"user1,item55,nan\nuser2,item3,4\n", ["train"], 2),
        ("s.java", b"class A { // \xff\n int f() { return 1; } }\n", ["cpg"], 2),
    ]
    for name, data, cmd, expect in cases:
        path = tmp_path / name
        path.write_bytes(data)
        argv = [*cmd, str(path)] if cmd == ["cpg"] else [*cmd, "--dataset", str(path), "--out",
                                                         str(tmp_path / "run"), *TRAIN]
        proc = subprocess.run([sys.executable, "-m", "cptpp.cli", *argv], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)
        assert proc.returncode == expect and "Traceback" not in proc.stderr, (name, proc.returncode, proc.stderr)
