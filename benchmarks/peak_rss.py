"""Peak resident memory of a command, measured from a small launcher process.

    python benchmarks/peak_rss.py RSS_FILE COMMAND [ARGS...]

Runs COMMAND, waits for it with ``os.wait4`` and writes its ``ru_maxrss`` in KiB to RSS_FILE, then
exits with COMMAND's exit status. Linux reports ``ru_maxrss`` as the max over the process and the
descendants it waited for, but a process also inherits the high-water mark of the memory map it
was forked from (it is recorded at ``exec``). Measured directly from a big parent (a benchmark
driver, pytest), a 20 MB command would report the parent's hundreds of MB; forked from this
launcher (the interpreter with ``os`` and ``sys`` only, ~10 MB) it reports its own peak.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def measured(argv: list[str], rss_file: str | os.PathLike) -> list[str]:
    """``argv`` wrapped by this launcher; after it exits, :func:`read_peak_mb` gives its peak RSS."""
    return [sys.executable, str(Path(__file__).resolve()), str(rss_file), *argv]


def read_peak_mb(rss_file: str | os.PathLike) -> float | None:
    try:
        return int(Path(rss_file).read_text()) / 1024
    except (OSError, ValueError):
        return None


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    rss_file, cmd = argv[0], argv[1:]
    try:
        pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    except OSError as e:
        print(f"peak_rss: cannot run {cmd[0]!r}: {e}", file=sys.stderr)
        return 127
    _, status, usage = os.wait4(pid, 0)
    with open(rss_file, "w") as f:
        f.write(str(usage.ru_maxrss))
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code  # killed by signal N: exit 128 + N, like a shell


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
