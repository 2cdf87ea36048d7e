"""Atomic file writes: a crash never leaves a half-written checkpoint or result file."""
from __future__ import annotations

import json
import os
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
