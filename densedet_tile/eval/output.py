"""Atomic file output shared by the ``eval`` and ``audit`` commands."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping

__all__ = ["write_atomic", "write_all_atomic"]


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and
    ``os.replace``, so readers never see a half-written file. Returns the path."""
    return write_all_atomic({Path(path): data})[0]


def write_all_atomic(files: Mapping[Path, bytes | str]) -> list[Path]:
    """Write several files: all are staged as temporaries first, then renamed into place.

    If staging any of them fails, no target is touched and the temporaries are removed.
    """
    staged: list[tuple[str, Path]] = []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for target, data in files.items():
            target = Path(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            staged.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    for tmp, target in staged:
        os.replace(tmp, target)
    return [t for _, t in staged]
