"""Atomic file writes: the one way ghostdet replaces a file (checkpoints, scan caches)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                 file_mode: int | None = None):
    """Write through a temporary file in ``path``'s folder; on a clean exit it is flushed, fsynced and renamed
    onto ``path`` (``file_mode``: its permissions, else mkstemp's 0600), on an error removed. A crash at any
    point leaves either the old file or the new one, never half of one. Raises OSError as ``open`` does."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if file_mode is not None:
            os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["atomic_write"]
