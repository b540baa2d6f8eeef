"""Run folders of training: a fresh run never writes into a folder that holds another run's outputs, and a live run
holds a lock in its ``weights/`` that resume (and a second trainer) respects.

The lock is an advisory ``flock`` on ``weights/train.lock``: the operating system drops it when the process ends,
however it ends, so a lock file left behind by a killed run never blocks anything. Where ``fcntl`` is missing
(Windows) runs are not locked.
"""
from __future__ import annotations

import contextlib
import os
import socket
import weakref
from pathlib import Path

from ghostdet.utils.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = "train.lock"
# what tools/train.py (Hydra) writes into a fresh run dir before the trainer starts
TOOL_FILES = (".hydra", "train.log")
# what tells a run dir holds something worth keeping: the checkpoints resume continues from
RESUMABLE = ("last.pt", "interrupted.pt")


def check_new_run_dir(run_dir: str | os.PathLike, allowed: tuple[str, ...] = TOOL_FILES) -> None:
    """Refuse (ConfigError) a run dir that holds anything but ``allowed``: training into it would replace
    another run's checkpoints and results."""
    run_dir = Path(run_dir)
    found = sorted(p.name for p in run_dir.iterdir() if p.name not in allowed) if run_dir.is_dir() else []
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise ConfigError(f"run dir {run_dir} is not empty ({shown}); train into a new folder (leave hydra.run.dir "
                          f"out, or name a new one) or continue that run with resume={run_dir}")


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    return any((Path(run_dir) / "weights" / name).is_file() for name in RESUMABLE)


def lock_holder(weights_dir: str | os.PathLike) -> str | None:
    """``"pid N on HOST"`` when a live process holds ``weights_dir``'s lock, else None."""
    path = Path(weights_dir) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # released meanwhile
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return (os.read(fd, 200).decode(errors="replace").strip() or "another process")
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refuse_locked(run_dir: str | os.PathLike) -> None:
    """ConfigError when a live training run holds ``run_dir``."""
    holder = lock_holder(Path(run_dir) / "weights")
    if holder:
        raise ConfigError(f"run {run_dir} is still training ({holder} holds weights/{LOCK_NAME}); "
                          "wait for it to finish or stop it, then resume")


class RunLock:
    """The lock a live run holds on its ``weights/`` (``acquire`` raises ConfigError when another holds it).
    ``release`` removes the file and whatever ``acquire`` created that is still empty."""

    def __init__(self, weights_dir: str | os.PathLike):
        self.path = Path(weights_dir) / LOCK_NAME
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self) -> "RunLock":
        probe = self.path.parent
        while not probe.exists():
            self._created.append(probe)
            probe = probe.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
                os.close(fd)
                self._remove_created()
                raise ConfigError(f"run {self.path.parent.parent} is still training ({holder} holds "
                                  f"weights/{LOCK_NAME}); wait for it to finish or stop it first") from None
            try:  # the holder before us may have unlinked the file we opened: lock the one at the path
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        self._closer = weakref.finalize(self, os.close, fd)  # a lock never released: its fd closes with it
        return self

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # before closing: nobody locks a file that is about to vanish
            self._closer()
            self._fd = None
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:  # innermost first, only while empty: a failed start leaves nothing
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []


__all__ = ["LOCK_NAME", "RESUMABLE", "RunLock", "TOOL_FILES", "check_new_run_dir", "has_checkpoint", "lock_holder",
           "refuse_locked"]
