"""Publishing outputs: the one way ghostdet writes a file or folder the user will see (checkpoints, caches, exports,
results, run folders). Every output is staged beside its destination and renamed into place, so a crash leaves the
old output or the new one, never half of one; a destination that existed before the command is replaced only where
the caller says it may be (``overwrite=True``), and a new run folder is created exclusively."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

DEFAULT_FILE_MODE = 0o644   # what open() gives under the usual umask; mkstemp's 0600 surprises users sharing runs


def missing_folders(path: str | os.PathLike) -> list[Path]:
    """``path`` and those of its ancestors that do not exist yet, innermost first: what a command that creates
    ``path`` must remove again when it fails."""
    missing, probe = [], Path(path)
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    return missing


def _existing_parent(path: Path) -> tuple[Path, list[Path]]:
    """Create ``path.parent`` (and its missing ancestors); return it with the folders created, innermost first."""
    created = missing_folders(path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent, created


def _remove_created(created: list[Path]) -> None:
    for folder in created:   # innermost first; only folders this call made, and only while empty
        with contextlib.suppress(OSError):
            folder.rmdir()


def _check_replace(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; choose another output path (nothing was replaced)")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                 file_mode: int | None = DEFAULT_FILE_MODE, overwrite: bool = True):
    """Write through a temporary file in ``path``'s folder; on a clean exit it is flushed, fsynced and renamed
    onto ``path`` (``file_mode``: its permissions), on an error removed together with any folder this call created.
    ``overwrite=False`` refuses (FileExistsError) a ``path`` that already exists, before and after writing."""
    path = Path(path)
    _check_replace(path, overwrite)
    parent, created = _existing_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if file_mode is not None:
            os.chmod(tmp, file_mode)
        _check_replace(path, overwrite)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        _remove_created(created)
        raise


@contextlib.contextmanager
def staged_path(path: str | os.PathLike, overwrite: bool = True, is_dir: bool = False):
    """Yield a staging path beside ``path`` (a fresh empty folder when ``is_dir``, else a name not yet created) for
    a writer that takes a path (``onnx.save``, OpenVINO, converters). On a clean exit the staged file or folder
    replaces ``path``; on an error it is removed with any folder this call created, and ``path`` is untouched. A
    folder being replaced is moved aside first and deleted only after the new one is in place."""
    path = Path(path)
    _check_replace(path, overwrite)
    parent, created = _existing_parent(path)
    holder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent))
    staged = holder / path.name
    if is_dir:
        staged.mkdir()
    try:
        yield staged
        if not staged.exists():
            raise FileNotFoundError(f"{staged}: the writer produced nothing")
        _check_replace(path, overwrite)
        if staged.is_file():
            os.chmod(staged, DEFAULT_FILE_MODE)
        old = None
        if path.is_dir() and not path.is_symlink():
            old = holder / (path.name + ".old")
            os.replace(path, old)
        os.replace(staged, path)
    except BaseException:
        shutil.rmtree(holder, ignore_errors=True)
        _remove_created(created)
        raise
    shutil.rmtree(holder, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """``Path.write_text`` done atomically (see ``atomic_write``)."""
    with atomic_write(path, "w", encoding="utf-8", overwrite=overwrite) as f:
        f.write(text)
    return Path(path)


def new_numbered_dir(base: str | os.PathLike, name: str = "exp", exist_ok: bool = False) -> Path:
    """Create and return a run folder ``base/name`` exclusively: ``name``, then ``name2``, ``name3`` … (ultralytics'
    project/name convention). ``exist_ok=True`` reuses ``base/name`` as it is. Two processes never get one folder."""
    base = Path(base)
    first = base / name
    if exist_ok:
        first.mkdir(parents=True, exist_ok=True)
        return first
    base.mkdir(parents=True, exist_ok=True)
    stem, start = name, 2
    match = re.fullmatch(r"(.*?)(\d+)", name)
    if match and match.group(1):
        stem, start = match.group(1), int(match.group(2)) + 1
    candidate, n = first, start
    while True:
        try:
            candidate.mkdir()   # exclusive: fails if another process made it first
            return candidate
        except FileExistsError:
            candidate = base / f"{stem}{n}"
            n += 1


__all__ = ["DEFAULT_FILE_MODE", "atomic_write", "missing_folders", "new_numbered_dir", "staged_path", "write_text"]
