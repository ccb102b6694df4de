"""Files written whole or not at all: atomic writes, the orphans killed writers leave, the
umask read without changing it, and a write failure in a few words. The floor of the
library (it imports nothing from ctnet): checkpoints, bundles, plain exports, runs and the
rate-distortion cache all write through here.

Every write goes to a temporary file in the destination folder and is renamed into place;
temporary files that killed writers left behind are removed by the next write to the folder.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ORPHAN_AGE_S = 15 * 60  # a temporary file untouched this long has no writer left


def umask() -> int:
    """The process umask, read without changing it (``os.umask`` sets it, racing threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
_TMP_TAG = re.compile(r"\.~(?P<host>[A-Za-z0-9-]+)~(?P<pid>\d+)~[^/]*\.tmp$")


def _writer_alive(name: str) -> bool | None:
    """Whether the process that made temporary file ``name`` still runs (None: unknown)."""
    m = _TMP_TAG.search(name)
    if not m or m["host"] != _HOST:
        return None
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_orphans(folder: str | os.PathLike[str], *, max_age: float = ORPHAN_AGE_S) -> list[Path]:
    """Remove the temporary files (``.*.tmp``) that killed writes left in ``folder``: those
    whose writer (on this host) is gone, and any untouched for ``max_age`` seconds. Files
    only; returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            alive = _writer_alive(entry.name)
            if alive is False or (alive is None and now - entry.stat(follow_symlinks=False).st_mtime > max_age):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # another cleaner got there first, or we may not: leave it
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary name carries this host and process id, so the next write to the folder
    can tell a killed writer's leftover from a live one and removes it (see
    :func:`clean_orphans`). The result gets the mode any new file gets (0666 less the
    umask), whatever the writer (safetensors makes its files 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.~{_HOST}~{os.getpid()}~", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_reason(exc: BaseException) -> str:
    text = str(exc)
    if getattr(exc, "errno", None) == 28 or "StorageFull" in text or "No space left" in text:
        return "no space left on device"
    if isinstance(exc, PermissionError) or "PermissionDenied" in text:
        return "permission denied"
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return line[:200]


__all__ = ["ORPHAN_AGE_S", "atomic_path", "atomic_write_text", "clean_orphans", "umask", "write_reason"]
