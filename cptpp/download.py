"""Find a data file locally or fetch it: mirror -> cache -> official URL, each checked by sha256.

Resolution order for the files of one named dataset (``area`` is ``"recsys"``, ``"code"``, ...):

1. ``$CPTPP_DATA_MIRROR/<area>/<mirror_dir>/`` -- a read-only local copy; files are used in place.
2. ``$CPTPP_DATA_HOME/<area>/<name>/`` (default ``~/.cache/cptpp``) -- earlier downloads.
3. The official URL, streamed with a progress bar, verified, written atomically; files that live
   inside an archive are extracted and the archive is removed.

Every file is hashed before use. A file whose sha256 is not known in advance (``sha256=None``) is
trusted on first download: its hash is recorded in ``<cache>/SHA256SUMS`` and checked on every
later use, so a truncated or replaced cache file is still caught. A file with no per-file URL
(``url=None``: the official release is a script or a big archive) cannot be fetched; the error
says what to download and where to put the result (:attr:`DataSpec.manual`).

Every named dataset of every family is one :class:`DataSpec` in :data:`DATA` (area, name, files with
URL and sha256); ``cptpp.data_catalog`` registers the text and code sets, and
``cptpp.recsys.datasets.catalog`` the recommendation sets. A data file with a bad line raises
:class:`MalformedLineError` naming ``path:line`` and what was expected, whatever the family.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

from cptpp.config import ConfigError
from cptpp.io import _atomic_write
from cptpp.registry import Registry

_CHUNK = 1 << 20
CHECKSUMS_FILE = "SHA256SUMS"


class ChecksumError(ValueError):
    """A file's sha256 differs from the recorded one; the message names the file and both hashes."""


class DownloadError(FileNotFoundError):
    """A file is not available locally and could not be downloaded; the message says what to do."""


def numbered_lines(path: str | Path, expected_sha256: str | None = None) -> Iterator[tuple[int, str]]:
    """``(line number, line without its end)`` for each non-blank line of a UTF-8 text file, after checking
    its sha256 when one is given: the one reading loop of every line-based loader."""
    path = Path(path)
    if expected_sha256 is not None:
        verify_sha256(path, expected_sha256, hint="not the published copy")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield lineno, line


class MalformedLineError(ValueError):
    """A line of a data file does not match its format; the message names ``path:line``, shows the
    line and says what was expected. Every loader (recsys, text, code) raises this one type."""

    def __init__(self, path, lineno: int, line: str, expected: str, why: str = ""):
        shown = line if len(line) <= 200 else line[:200] + "..."
        super().__init__(f"{path}:{lineno}: malformed line {shown!r}{': ' + why if why else ''}; expected {expected}")
        self.path, self.lineno, self.line = str(path), lineno, line


@dataclass(frozen=True)
class RemoteFile:
    """One file a dataset needs.

    ``name`` is the file name in the resolved folder; ``url`` where it is published (None: no
    per-file download exists, see :attr:`DataSpec.manual`); ``member`` the path inside the archive
    at ``url`` (None: the URL is the file itself); ``sha256`` the hash of the file ``name`` itself
    (after extraction), None to record it on first download.
    """

    name: str
    url: str | None
    sha256: str | None = None
    member: str | None = None


@dataclass(frozen=True)
class Resolved:
    """Where a dataset's files were found: ``source`` is "mirror", "cache" or "download"."""

    folder: Path
    paths: dict[str, Path]
    source: str


def data_home() -> Path:
    """The download cache root: ``$CPTPP_DATA_HOME`` or ``~/.cache/cptpp``."""
    return Path(os.environ.get("CPTPP_DATA_HOME") or Path.home() / ".cache" / "cptpp").expanduser()


def mirror_root() -> Path | None:
    """The local mirror root ``$CPTPP_DATA_MIRROR``, or None when unset/empty."""
    root = os.environ.get("CPTPP_DATA_MIRROR")
    return Path(root).expanduser() if root else None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(path, expected: str, actual: str, hint: str) -> ChecksumError:
    return ChecksumError(
        f"checksum mismatch for {path}: expected sha256 {expected}, got {actual}"
        f" (the file is truncated, corrupted or a different version{'; ' + hint if hint else ''})"
    )


def verify_sha256(path: str | Path, expected: str, *, hint: str = "") -> None:
    """Raise :class:`ChecksumError` naming ``path``, the expected and the actual hash on mismatch."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise _mismatch(path, expected, actual, hint)


def read_checksums(path: str | Path) -> dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hash>  <name>`` lines); missing file -> {}."""
    path = Path(path)
    if not path.exists():
        return {}
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise ValueError(f"{path}:{lineno}: expected '<sha256>  <file name>', got {line!r}")
        out[parts[1].strip()] = parts[0].lower()
    return out


def write_checksums(path: str | Path, sums: dict[str, str]) -> None:
    text = "".join(f"{h}  {n}\n" for n, h in sorted(sums.items())).encode()
    _atomic_write(path, lambda f: f.write(text))


def _copy_hashing(src: BinaryIO, dst: BinaryIO, update: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: src.read(_CHUNK), b""):
        h.update(chunk)
        dst.write(chunk)
        if update:
            update(len(chunk))
    return h.hexdigest()


def _write_verified(dest: Path, fill: Callable[[BinaryIO], str], expected: str | None, what: str,
                    hint: str = "") -> str:
    """Write ``dest`` atomically via ``fill(f) -> sha256``; on a mismatch nothing is left behind."""
    result = {}

    def write(f):
        actual = fill(f)
        if expected is not None and actual != expected.lower():
            raise _mismatch(what, expected, actual, "nothing was written; " + (hint or "try again later"))
        result["sha"] = actual

    _atomic_write(dest, write)
    return result["sha"]


def download_url(url: str, dest: str | Path, *, sha256: str | None = None, progress: bool = True,
                 timeout: float = 60.0, hint: str = "") -> str:
    """Stream ``url`` into ``dest`` (atomic; tqdm bar when ``progress``); return the file's sha256.

    With ``sha256`` given, a mismatch raises :class:`ChecksumError` and ``dest`` is not created.
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    try:
        response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 -- official dataset URLs
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"could not download {url}: {getattr(e, 'reason', e)}") from None
    with response:
        total = response.headers.get("Content-Length")
        with tqdm(total=int(total) if total else None, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=f"download {dest.name}", disable=None if progress else True, leave=False) as bar:
            return _write_verified(dest, lambda f: _copy_hashing(response, f, bar.update), sha256,
                                   f"{dest.name} downloaded from {url}", hint)


def extract_member(archive: str | Path, member: str, dest: str | Path, *, sha256: str | None = None,
                   hint: str = "") -> str:
    """Copy ``member`` of a .zip / .tar(.gz|.bz2|.xz) ``archive`` to ``dest`` atomically; return its sha256."""
    archive, dest = Path(archive), Path(dest)
    what = f"{member} in {archive.name}"
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(member)
            except KeyError:
                listing = ", ".join(zf.namelist()[:20])
                raise DownloadError(f"{archive}: no member {member!r}; it has: {listing}") from None
            with zf.open(info) as src:
                return _write_verified(dest, lambda f: _copy_hashing(src, f), sha256, what, hint)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            try:
                src = tf.extractfile(member)
            except KeyError:
                src = None
            if src is None:
                raise DownloadError(f"{archive}: no regular file {member!r}; it has: {', '.join(tf.getnames()[:20])}")
            with src:
                return _write_verified(dest, lambda f: _copy_hashing(src, f), sha256, what, hint)
    raise DownloadError(f"{archive}: not a zip or tar archive, cannot extract {member!r}")


def _missing_help(files: Iterable[RemoteFile], cache: Path, mirror: Path | None,
                  mirror_rel: str = "<area>/<name>") -> str:
    names = ", ".join(f.name for f in files)
    if mirror:
        return f"put {names} into {mirror} or {cache}"
    return (f"CPTPP_DATA_MIRROR is not set: if you have a local copy of the data, point at it with "
            f"`export CPTPP_DATA_MIRROR=DIR` (DIR/{mirror_rel}/ holding {names}), or put {names} into {cache}")


def resolve_files(area: str, name: str, files: tuple[RemoteFile, ...] | list[RemoteFile], *,
                  mirror_dir: str | None = None, progress: bool = True, allow_download: bool = True,
                  verify: bool = True, manual: str = "") -> Resolved:
    """Find (or fetch) every file of dataset ``name``; return their verified paths.

    A mirror folder is used only when it holds all ``files`` (a partial mirror, e.g. one lacking
    a big ratings file, falls through to the cache). A mirror or cache file with the wrong hash is
    an error, never silently replaced. ``verify=False`` skips every hash check (a user's own copy
    of a file, e.g. full-size XTREME files where the mirror holds subsamples). ``manual`` says how
    to obtain files that have no per-file URL; it goes into the error when one is missing.
    """
    mroot = mirror_root()
    mfolder = mroot / area / (mirror_dir or name) if mroot else None
    rel = f"{area}/{mirror_dir or name}"
    if mfolder is not None and all((mfolder / f.name).is_file() for f in files):
        for f in files:
            if f.sha256 and verify:
                verify_sha256(mfolder / f.name, f.sha256,
                              hint=f"the mirror copy differs from the published file {f.url or f.name}; "
                              "pass verify=False to use it anyway")
        return Resolved(mfolder, {f.name: mfolder / f.name for f in files}, "mirror")

    cache = data_home() / area / name
    sums_path = cache / CHECKSUMS_FILE
    recorded = read_checksums(sums_path)
    missing = [f for f in files if not (cache / f.name).is_file()]
    no_url = [f for f in missing if f.url is None]
    if no_url:
        raise DownloadError(f"{area}/{name}: {', '.join(f.name for f in no_url)} not found locally and has no "
                            f"per-file download; {manual or 'see the dataset homepage'}; then "
                            + _missing_help(no_url, cache, mfolder, rel))
    if missing and not allow_download:
        raise DownloadError(f"{name}: {', '.join(f.name for f in missing)} not found locally; "
                            + _missing_help(missing, cache, mfolder, rel))
    fresh: dict[str, str] = {}
    # Files from the same archive share one download.
    by_url: dict[str, list[RemoteFile]] = {}
    for f in missing:
        by_url.setdefault(f.url, []).append(f)
    # A hash recorded by an earlier download is enforced on re-download too (reproducibility);
    # accepting a new upstream version means deleting the SHA256SUMS line on purpose.
    want = {f.name: (f.sha256 or recorded.get(f.name)) if verify else None for f in files}
    tofu_hint = f"the hash was recorded at first download in {sums_path}; remove its line there to accept the new file"
    hints = {f.name: "" if f.sha256 else tofu_hint for f in files}
    for url, group in by_url.items():
        try:
            if all(f.member is None for f in group):
                for f in group:
                    fresh[f.name] = download_url(url, cache / f.name, sha256=want[f.name], progress=progress,
                                                 hint=hints[f.name])
                continue
            cache.mkdir(parents=True, exist_ok=True)
            tmpdir = Path(tempfile.mkdtemp(dir=cache, prefix=".download-"))
            try:
                archive = tmpdir / url.rstrip("/").rsplit("/", 1)[-1]
                download_url(url, archive, progress=progress)
                for f in group:
                    fresh[f.name] = extract_member(archive, f.member, cache / f.name, sha256=want[f.name],
                                                   hint=hints[f.name])
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
        except DownloadError as e:
            raise DownloadError(f"{e}; {_missing_help(group, cache, mfolder, rel)}") from None
    if fresh and verify:
        new = {n: h for n, h in fresh.items() if want[n] is None}
        if new:
            write_checksums(sums_path, {**recorded, **new})
            recorded.update(new)
    for f in files:
        path = cache / f.name
        if f.name in fresh:
            continue  # hashed while being written
        if want[f.name]:
            verify_sha256(path, want[f.name], hint=f"delete {path} to download it again"
                          + (f" from {f.url}" if f.url else ""))
    return Resolved(cache, {f.name: cache / f.name for f in files}, "download" if fresh else "cache")


def locate(area: str, name: str, files, *, mirror_dir: str | None = None) -> str:
    """Where ``resolve_files`` would find the files now: "mirror", "cache" or "download" (no I/O beyond stat)."""
    mroot = mirror_root()
    if mroot and all((mroot / area / (mirror_dir or name) / f.name).is_file() for f in files):
        return "mirror"
    if all((data_home() / area / name / f.name).is_file() for f in files):
        return "cache"
    return "download"


# ---------------------------------------------------------------- the dataset registry


@dataclass(frozen=True)
class DataSpec:
    """One named dataset of any family: its files, where they are published and their sha256.

    It lives at ``$CPTPP_DATA_MIRROR/<area>/<mirror_dir or name>/`` in a mirror and at
    ``$CPTPP_DATA_HOME/<area>/<name>/`` in the cache (``name`` may hold a ``/``, e.g.
    ``"superglue/RTE"``). ``manual`` says how to obtain files with ``url=None`` (a release that is
    a script or an archive of a different layout): what to download and what to produce.
    """

    area: str
    name: str
    files: tuple[RemoteFile, ...]
    mirror_dir: str | None = None
    homepage: str = ""
    manual: str = ""

    @property
    def key(self) -> str:
        return f"{self.area}/{self.name}"

    def remote(self, file: str) -> RemoteFile:
        """The registered file ``file``; an unregistered name (a user's own extra file, e.g. another
        language) is looked up locally only, without a checksum."""
        for f in self.files:
            if f.name == file:
                return f
        return RemoteFile(file, None)

    def path(self, file: str, *, root: str | Path | None = None, verify: bool = True, progress: bool = True,
             allow_download: bool = True) -> Path:
        """Path of one file, checked against its sha256 (``verify``).

        ``root`` given: look only in ``<root>/<mirror_dir or name>/`` (``root`` is laid out like
        ``$CPTPP_DATA_MIRROR/<area>``); otherwise mirror -> cache -> download (:func:`resolve_files`).
        """
        f = self.remote(file)
        if root is None:
            return resolve_files(self.area, self.name, (f,), mirror_dir=self.mirror_dir, progress=progress,
                                 allow_download=allow_download, verify=verify, manual=self._how()).paths[file]
        path = Path(root) / (self.mirror_dir or self.name) / file
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found (root={str(root)!r} is the only place looked in); registered files of "
                f"{self.key}: {', '.join(x.name for x in self.files) or 'none'}; {self._how(f)}")
        if verify and f.sha256:
            verify_sha256(path, f.sha256, hint="not the published copy; pass verify=False to use it anyway")
        return path

    def _how(self, f: RemoteFile | None = None) -> str:
        if f is not None and f.url:
            return f"it is published at {f.url}" + (f" (member {f.member})" if f.member else "")
        return self.manual or (f"see {self.homepage}" if self.homepage else "")


DATA: Registry[DataSpec] = Registry("dataset")


def register_data(spec: DataSpec) -> DataSpec:
    """Add ``spec`` to :data:`DATA` under ``"<area>/<name>"`` (twice is an error)."""
    return DATA.register(spec.key)(spec)


def data_spec(area: str, name: str) -> DataSpec:
    """The registered dataset ``<area>/<name>``; an unknown one is an error listing the valid names."""
    key = f"{area}/{name}"
    if key not in DATA:
        valid = ", ".join(n for n in DATA.names() if n.startswith(area + "/")) or "none"
        raise ConfigError(f"unknown dataset {key!r}; registered in area {area!r}: {valid}")
    return DATA.get(key)
