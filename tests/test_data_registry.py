"""The one dataset registry and its resolution order (mirror -> cache -> official URL), on tiny generated
files; the registry's hashes against the mirror's files and SOURCE.txt; no absolute machine path in git."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cptpp.code.task_specs import TASKS as CODE_TASKS
from cptpp.config import ConfigError
from cptpp.data_catalog import all_datasets, find_data
from cptpp.download import (DATA, ChecksumError, DataSpec, DownloadError, RemoteFile, data_spec, register_data,
                            resolve_files, sha256_file)
from cptpp.peft.multiple_choice import COMMONSENSE

BODY = b"the quick brown fox\n"
SHA = hashlib.sha256(BODY).hexdigest()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """(mirror root, cache root) as fresh tmp folders, set in the environment."""
    mirror, cache = tmp_path / "mirror", tmp_path / "cache"
    monkeypatch.setenv("CPTPP_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("CPTPP_DATA_HOME", str(cache))
    return mirror, cache


def _put(path: Path, data: bytes = BODY) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- resolution order


def test_mirror_beats_cache_beats_download(dirs, http_dir):
    mirror, cache = dirs
    srv, base = http_dir
    _put(srv / "words.txt")
    spec = DataSpec("text", "toy/set", (RemoteFile("words.txt", f"{base}/words.txt", SHA),))
    # nothing local: downloaded into the cache, verified
    assert spec.path("words.txt", progress=False) == cache / "text" / "toy" / "set" / "words.txt"
    assert (cache / "text/toy/set/words.txt").read_bytes() == BODY
    (srv / "words.txt").unlink()  # from now on a download would fail
    # the cache beats the (now impossible) download
    assert resolve_files("text", "toy/set", spec.files).source == "cache"
    # a mirror copy beats the cache
    _put(mirror / "text" / "toy" / "set" / "words.txt")
    assert spec.path("words.txt") == mirror / "text" / "toy" / "set" / "words.txt"
    assert resolve_files("text", "toy/set", spec.files).source == "mirror"
    # root= is the only place looked in, even with a mirror and a cache present
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(dirs[0].parent / 'elsewhere'))}.*only place"):
        spec.path("words.txt", root=dirs[0].parent / "elsewhere")


def test_checksum_mismatch_names_the_file(dirs):
    mirror, cache = dirs
    spec = DataSpec("code", "toy", (RemoteFile("a.txt", "http://127.0.0.1:9/a.txt", SHA),))
    bad = _put(mirror / "code" / "toy" / "a.txt", b"tampered\n")
    with pytest.raises(ChecksumError, match=rf"{re.escape(str(bad))}: expected sha256 {SHA}, got "
                                            rf"{hashlib.sha256(b'tampered' + bytes([10])).hexdigest()}"):
        spec.path("a.txt")
    assert spec.path("a.txt", verify=False) == bad  # a user's own copy, on request
    bad.unlink()
    cached = _put(cache / "code" / "toy" / "a.txt", b"truncated")
    with pytest.raises(ChecksumError, match=rf"{re.escape(str(cached))}.*delete .* to download it again"):
        spec.path("a.txt")


def test_download_impossible_offline_says_where_to_put_the_file(dirs):
    mirror, cache = dirs
    spec = DataSpec("text", "toy", (RemoteFile("a.txt", "http://127.0.0.1:9/a.txt", SHA),))
    with pytest.raises(DownloadError, match=rf"could not download http://127.0.0.1:9/a.txt.*put a.txt into "
                                            rf"{re.escape(str(mirror / 'text' / 'toy'))} or "
                                            rf"{re.escape(str(cache / 'text' / 'toy'))}"):
        spec.path("a.txt", progress=False)
    with pytest.raises(DownloadError, match="not found locally; put a.txt into"):
        spec.path("a.txt", allow_download=False)
    assert not (cache / "text" / "toy" / "a.txt").exists()


def test_release_without_per_file_url_says_what_to_download(dirs):
    mirror, cache = dirs
    spec = DataSpec("text", "toy", (RemoteFile("x.tsv", None, SHA),), manual="run the official script make.sh")
    with pytest.raises(DownloadError, match=r"text/toy: x.tsv not found locally and has no per-file download; run "
                                            rf"the official script make.sh; then put x.tsv into "
                                            rf"{re.escape(str(mirror / 'text' / 'toy'))} or "):
        spec.path("x.tsv")
    # the real XTREME-produced sets say so too
    with pytest.raises(DownloadError, match="download_data.sh"):
        find_data("text", "wikiann-panx/dev-en.tsv")
    _put(cache / "text" / "toy" / "x.tsv")
    assert spec.path("x.tsv") == cache / "text" / "toy" / "x.tsv"


def test_archive_member_of_an_official_zip(dirs, http_dir):
    import zipfile

    srv, base = http_dir
    with zipfile.ZipFile(srv / "RTE.zip", "w") as zf:
        zf.writestr("RTE/val.jsonl", BODY)
        zf.writestr("RTE/test.jsonl", b"{}\n")
    spec = DataSpec("text", "superglue/RTE", (RemoteFile("val.jsonl", f"{base}/RTE.zip", SHA, member="RTE/val.jsonl"),))
    path = spec.path("val.jsonl", progress=False)
    assert path.read_bytes() == BODY and sorted(p.name for p in path.parent.iterdir()) == ["val.jsonl"]


# ---------------------------------------------------------------- the registry


def test_registry_holds_every_family():
    keys = {s.key for s in all_datasets()}
    assert {"recsys/gowalla", "recsys/ml-100k", "text/superglue/RTE", "text/fewglue/BoolQ", "text/wikiann-panx",
            "text/udpos", "text/udpos/de_gsd", "text/tncc-title"} <= keys
    assert {f"code/{t.folder}" for t in CODE_TASKS.values()} <= keys
    assert {f"text/commonsense-llm-adapters/{f}" for f in COMMONSENSE.values()} <= keys
    assert all(f.url or s.manual for s in all_datasets() for f in s.files), "a file without URL needs a manual note"
    from cptpp.recsys.datasets import get_spec

    gowalla = get_spec("gowalla")  # the recsys catalog's entry and the registry's are the same files
    assert gowalla.data.files == gowalla.files and gowalla.data.key == "recsys/gowalla"
    with pytest.raises(ConfigError, match=r"unknown dataset 'text/superglue/XYZ'.*text/superglue/RTE"):
        data_spec("text", "superglue/XYZ")
    with pytest.raises(ValueError, match="registered twice"):
        register_data(DATA.get("text/tncc-title"))


def test_one_malformed_line_error_for_every_family():
    import cptpp.code.tasks as code_tasks
    import cptpp.peft.multiple_choice as mc
    import cptpp.peft.superglue as superglue
    import cptpp.peft.tagging_data as tagging
    import cptpp.peft.tncc as tncc
    from cptpp.download import MalformedLineError
    from cptpp.recsys.datasets import formats

    for module in (code_tasks, mc, superglue, tagging, tncc, formats):
        assert module.MalformedLineError is MalformedLineError, module.__name__
    err = MalformedLineError("a/b.tsv", 7, "x y", "'token<TAB>tag'", "no tab")
    assert isinstance(err, ValueError) and (err.path, err.lineno, err.line) == ("a/b.tsv", 7, "x y")
    assert str(err) == "a/b.tsv:7: malformed line 'x y': no tab; expected 'token<TAB>tag'"


def _source_txt(folder: Path, area_root: Path) -> str:
    """Text of SOURCE.txt in ``folder`` or the nearest parent below the area root ('' when none)."""
    while folder != area_root.parent:
        if (folder / "SOURCE.txt").is_file():
            return (folder / "SOURCE.txt").read_text(encoding="utf-8")
        folder = folder.parent
    return ""


def test_registered_hashes_match_the_mirror_files_and_their_source_txt():
    root = os.environ.get("CPTPP_DATA_MIRROR")
    if not root or not Path(root).is_dir():
        pytest.skip("needs $CPTPP_DATA_MIRROR")
    checked = 0
    for spec in all_datasets():
        folder = Path(root) / spec.area / (spec.mirror_dir or spec.name)
        source = _source_txt(folder, Path(root) / spec.area)
        for f in spec.files:
            if f.sha256 is None or not (folder / f.name).is_file():
                continue
            assert sha256_file(folder / f.name) == f.sha256, f"{spec.key}/{f.name}"
            assert f.sha256 in source, f"{spec.key}/{f.name}: hash not in its SOURCE.txt"
            checked += 1
    if checked == 0:
        pytest.skip("the mirror holds none of the registered files")


# ---------------------------------------------------------------- no absolute machine path in git

# a path rooted in a machine's work area or a user's home (w-o-r-k, h-o-m-e, U-s-e-r-s under the root; spelled
# apart so that this file does not match itself), not preceded by a word, '.', '~', '/' or '-' (URLs, ~/...)
_UNIX = re.compile(r"(?<![\w.~/-])/(?:" + "|".join(["wo" + "rk", "ho" + "me", "Us" + "ers", "ro" + "ot"]) + r")/[\w.-]")
_WINDOWS = re.compile(r"(?<![\w])[A-Z]:\\{1,2}(?:Users|Documents and Settings|ProgramData|Program Files)\b")
_TMP_DEFAULT = re.compile(r"""["']/t""" + r"""mp/""")  # a /t-m-p path as a string literal in code: a machine default


def _absolute_paths(rel: str, text: str) -> list[str]:
    hits = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if _UNIX.search(line) or _WINDOWS.search(line) or (rel.endswith(".py") and _TMP_DEFAULT.search(line)):
            hits.append(f"{rel}:{lineno}: {line.strip()[:120]}")
    return hits


def test_the_path_pattern_catches_and_spares():
    home = "/" + "home" + "/ann/data"
    assert _absolute_paths("a.md", f"set DATA={home}\n") == [f"a.md:1: set DATA={home}"]
    cache = "/" + "root" + "/.cache/cptpp/models/m"
    assert _absolute_paths("a.json", f'"model": "{cache}"\n') == [f'a.json:1: "model": "{cache}"']
    assert _absolute_paths("a.py", "x = 1\nroot = '/" + "tmp/peer'\n") == ["a.py:2: root = '/" + "tmp/peer'"]
    drive = "C:" + "\\"
    assert _absolute_paths("a.md", drive + "Users" + "\\ann") and _absolute_paths("a.py", f'"{drive}\\Users"')
    assert _absolute_paths("a.py", 'src = "class C:\\n    x = 1\\n"\n') == []  # a newline escape is no drive
    assert _absolute_paths("a.md", "https://github.com/x/y/tree/main/home/z ~/.cache/cptpp data/text\n") == []
    assert _absolute_paths("a.md", "use --peer /" + "tmp/venv in docs\n") == []


def _tracked_hits() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    hits = []
    for rel in files.decode().split("\0"):
        path = REPO / rel
        if not rel or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        hits += _absolute_paths(rel, data.decode("utf-8", "replace"))
    return hits


_HOW = "absolute machine paths (use $CPTPP_DATA_MIRROR, a path relative to the checkout, or ~):\n"


def test_no_absolute_machine_path_in_tracked_files():
    hits = _tracked_hits()
    assert not hits, _HOW + "\n".join(hits)
