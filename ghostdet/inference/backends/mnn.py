"""MNN backend for the ``.mnn`` files ``tools/export.py --format mnn`` writes (fp32, fp16 weights, or int8). The file
takes one 1 x 3 x H x W image (``images``) and outputs ``boxes`` / ``scores``; a batch is run image by image, so any
batch size is accepted (``fixed_batch`` None). The metadata is the file's ``bizCode`` (JSON).

Runs on MNN's CPU backend through ``MNN.nn`` (the module API; the old session API is deprecated) with a runtime manager
that owns the threads and the precision: ``fp32`` -> MNN precision ``high`` (fp32 arithmetic), ``fp16`` -> ``low``
(fp16 arithmetic where the CPU has it: ARMv8.2; x86 stays fp32), ``None`` follows the file (an fp16 file runs
``low``, an int8 file ``normal``).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from ghostdet.inference.backends import first_line, run_image_by_image
from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import INPUT_NAME, OUTPUT_NAMES, parse_metadata

PRECISIONS = ("fp32", "fp16", "int8")
MNN_PRECISION = {"fp32": "high", "fp16": "low", "int8": "normal"}


@contextlib.contextmanager
def quiet_native_output(*fds: int):
    """Runtimes' C++ cores print to the process's stdout / stderr (MNN: "MNN use high precision", the CPU features;
    LiteRT: "Created TensorFlow Lite XNNPACK delegate"); library code does not print, so the file descriptors ``fds``
    (default 1) go to /dev/null while they set up. Python's own sys.stdout / sys.stderr objects are untouched."""
    import sys

    fds = fds or (1,)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(fd) for fd in fds]
    except (OSError, ValueError, AttributeError):  # no real descriptors (embedded interpreters): nothing to hide
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, copy in zip(fds, saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


quiet_native_stdout = quiet_native_output  # fd 1 only


def import_mnn():
    try:
        with quiet_native_stdout():  # the import prints the CPU's features ("The device supports: ...")
            import MNN
    except ImportError:
        raise ConfigError("MNN models need the MNN package: pip install 'ghostdet[mnn]' (or pip install MNN)") from None
    return MNN


def _module(path: Path, inputs: list[str], outputs: list[str], runtime=None):
    MNN = import_mnn()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such MNN file; check the path or export one with tools/export.py --format mnn")
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path}: not an MNN model (empty or truncated); re-export it with tools/export.py --format mnn")
    try:
        with quiet_native_stdout():
            module = MNN.nn.load_module_from_file(str(path), inputs, outputs, runtime_manager=runtime) if runtime \
                else MNN.nn.load_module_from_file(str(path), inputs, outputs)
    except Exception as e:
        raise CheckpointError(f"{path}: not a loadable MNN model ({first_line(e)}); re-export it with tools/export.py "
                              "--format mnn") from None
    if module is None:
        raise CheckpointError(f"{path}: not a loadable MNN model; re-export it with tools/export.py --format mnn")
    return module


def read_metadata(path: str | os.PathLike) -> dict:
    """The record in the file's bizCode (validated); ``{}`` when the bizCode is not ghostdet's JSON."""
    path = Path(path)
    info = _module(path, [], []).get_info()
    raw = (info or {}).get("bizCode") or ""
    return parse_metadata(raw, path) if raw.lstrip().startswith("{") else {}


class MnnBackend:
    """An ``MNN.nn`` module of an export from ``ghostdet.export.mnn`` (see the module docstring)."""

    kind = "mnn"
    nms = False
    fixed_batch = None

    def __init__(self, path: Path, precision: str | None = None, threads: int | None = None):
        MNN = import_mnn()
        self._expr = MNN.expr
        self.path = Path(path)
        self.meta = read_metadata(self.path)
        own = self.meta.get("precision") or "fp32"
        chosen = (precision or own).lower()
        if chosen == "auto":
            chosen = own
        if chosen not in PRECISIONS or (chosen == "int8") != (own == "int8"):
            raise ConfigError(f"precision {precision}: this MNN file is {own}; run it as {own}"
                              f"{' or fp16 (fp16 arithmetic)' if own != 'int8' else ''}, or export another")
        self.precision = chosen
        self.threads = int(threads) if threads else max(1, min(4, os.cpu_count() or 1))
        config = {"backend": "CPU", "precision": MNN_PRECISION[chosen], "numThread": self.threads}
        with quiet_native_stdout():
            runtime = MNN.nn.create_runtime_manager((config,))
        info = _module(self.path, [], []).get_info() or {}
        inputs, outputs = list(info.get("inputNames") or []), list(info.get("outputNames") or [])
        if len(inputs) != 1 or sorted(outputs) != sorted(OUTPUT_NAMES):
            raise CheckpointError(f"{self.path}: has inputs {inputs} and outputs {outputs}; expected {INPUT_NAME} -> "
                                  f"{', '.join(OUTPUT_NAMES)} (an MNN export from tools/export.py)")
        self.module = _module(self.path, inputs, list(OUTPUT_NAMES), runtime)
        size = self.meta.get("imgsz")
        self.fixed_imgsz = (int(size[0]), int(size[1])) if size else None
        names = self.meta.get("names")
        self.num_classes = len(names) if names else None

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return run_image_by_image(batch, "MNN", self._run_one)

    def _run_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._expr.const(image[None], [1, *image.shape], self._expr.NCHW)
        try:
            out_boxes, out_scores = self.module.forward([x])
        except Exception as e:
            raise CheckpointError(f"{self.path}: MNN could not run it ({first_line(e)}); the input must be "
                                  f"1 x 3 x {self.fixed_imgsz or 'H x W'}") from None
        # read() is a view of MNN's output buffer, reused by the next forward: copy
        return np.array(out_boxes.read(), dtype=np.float32), np.array(out_scores.read(), dtype=np.float32)

    def describe(self) -> str:
        return f"MNN {self.precision} (CPU, precision {MNN_PRECISION[self.precision]}, {self.threads} threads)"


def load(path: str | os.PathLike, *, device: str = "cpu", precision: str | None = None, threads: int | None = None):
    """An ``MnnBackend`` on the ``.mnn`` at ``path`` (CPU; ``precision`` fp32 / fp16, None: the file's own)."""
    if str(device).lower() not in ("cpu", ""):
        raise ConfigError(f"device {device!r}: ghostdet runs MNN models on the CPU only; use --device cpu")
    return MnnBackend(Path(path), precision, threads)


def unavailable(precision: str | None) -> str | None:
    if precision not in (None, *PRECISIONS):
        return f"MNN runs fp32, fp16 or int8 files, not {precision}"
    return None


__all__ = ["MnnBackend", "import_mnn", "load", "quiet_native_output", "quiet_native_stdout", "read_metadata", "unavailable"]
