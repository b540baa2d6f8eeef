"""What the exporters that hand the model to another program share (ncnn's pnnx, MNNConvert / MNN's quantization tool,
litert-torch / ai-edge-quantizer): a work folder beside the output, the converter run as a subprocess there, and the
versions of the converter packages for the metadata.

The result is published with ``ghostdet.utils.atomic.staged_path``, so a failed conversion leaves nothing behind.
"""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError, ExportMismatchError

log = logging.getLogger(__name__)

CONVERTER_TIMEOUT = 1800  # seconds; a conversion of a small detector takes seconds to a few minutes


@contextlib.contextmanager
def converter_work(out: str | os.PathLike, is_dir: bool = False) -> Iterator[tuple[Path, Path]]:
    """``(staged, work)``: the staging path of ``out`` (``staged_path``: published on a clean exit, removed on an
    error) and an empty work folder beside it for the converter's inputs and outputs (removed with it)."""
    with staged_path(out, is_dir=is_dir) as staged:
        work = staged.parent / "work"
        work.mkdir()
        yield staged, work


def run_converter(command: Sequence[str | os.PathLike], what: str, cwd: str | os.PathLike,
                  timeout: float = CONVERTER_TIMEOUT, expect: Sequence[str | os.PathLike] = (),
                  env: dict | None = None) -> str:
    """Run a converter (``command``, argv) in ``cwd``; its output is captured (never printed) and returned. A non-zero
    exit, a crash, a time-out or a missing ``expect``ed file is an ``ExportMismatchError`` naming ``what`` and the
    converter's last informative line."""
    started = time.perf_counter()
    try:
        proc = subprocess.run([str(c) for c in command], cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, text=True, errors="replace", timeout=timeout,
                              env=None if env is None else {**os.environ, **env})
    except subprocess.TimeoutExpired:
        raise ExportMismatchError(f"{what} did not finish within {timeout:.0f} s; nothing was written") from None
    except OSError as e:
        raise ConfigError(f"{what} could not be started ({e.strerror or e}); reinstall it") from None
    output = proc.stdout or ""
    missing = [str(p) for p in expect if not (Path(cwd) / p).exists()]
    if proc.returncode != 0 or missing:
        why = f"exit status {proc.returncode}" if proc.returncode > 0 else (
            f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"it wrote no {Path(missing[0]).name}")
        raise ExportMismatchError(f"{what} failed ({why}: {last_line(output)}); nothing was written")
    log.debug("%s took %.1f s:\n%s", what, time.perf_counter() - started, output[-4000:])
    return output


def last_line(output: str, limit: int = 200) -> str:
    """The last line of a converter's output that says something (progress bars and blank lines skipped)."""
    lines = [ln.strip() for ln in output.replace("\r", "\n").splitlines() if ln.strip() and "%" not in ln[-8:]]
    return (lines[-1] if lines else "no output")[:limit]


def package_version(name: str) -> str:
    """The installed version of the distribution ``name`` (e.g. ``pnnx``, ``MNN``, ``litert-torch``), ``?`` if none."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


__all__ = ["CONVERTER_TIMEOUT", "converter_work", "last_line", "package_version", "run_converter"]
