"""Atomic file writes: a crash never leaves a half-written checkpoint or result file."""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    try:  # Linux reports it without changing it
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o22)  # elsewhere reading it means setting it; set it straight back
    os.umask(mask)
    return mask


def _atomic_write(path: str | Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600; give the file the mode open() would (0666 & ~umask) like every other run file
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    data = (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
    _atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> None:
    data = text.encode()
    _atomic_write(path, lambda f: f.write(data))


def save_torch(path: str | Path, obj: Any) -> None:
    import torch

    _atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: str | Path, obj: Any) -> None:
    """Append one record; a line is written with a single write() so readers never see half a line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(obj, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


class CorruptFileError(ValueError):
    """A run file (checkpoint, saved model) cannot be read; the message names it and what to do."""


def load_torch(path: str | Path, *, weights_only: bool, remedy: str) -> Any:
    """``torch.load(path)`` on CPU; a truncated, corrupt or empty file is a :class:`CorruptFileError`
    naming ``path`` and ``remedy`` (what to do about it) instead of torch's unpickling traceback."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except OSError as e:
        if e.strerror:
            raise CorruptFileError(f"cannot read {path}: {e.strerror}; {remedy}") from None
        raise CorruptFileError(f"{path} is truncated or corrupt ({type(e).__name__}); {remedy}") from None
    except Exception as e:  # noqa: BLE001 -- torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise CorruptFileError(f"{path} is truncated or corrupt (torch.load failed: {type(e).__name__}); "
                               f"{remedy}") from None


_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what _atomic_write's mkstemp names look like


def remove_stale_temp_files(folder: str | Path) -> list[str]:
    """Delete temp files an interrupted :func:`_atomic_write` left in ``folder``; returns their names.

    Call it only where no other writer is active (a run folder, when its run starts or resumes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in sorted(folder.iterdir()):
        if _TEMP_NAME.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed
