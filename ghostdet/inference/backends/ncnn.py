"""ncnn backend for the folders ``tools/export.py --format ncnn`` writes (``best_ncnn_model/``: ``model.ncnn.param``,
``model.ncnn.bin``, ``metadata.json``). ncnn runs one image per extractor: a batch is run image by image, so any batch
size is accepted (``fixed_batch`` None); the input size is the exported one (``fixed_imgsz``).

Precision: ``fp32`` turns ncnn's fp16 options off (``use_fp16_storage``, ``use_fp16_packed``,
``use_fp16_arithmetic``, and bf16 storage), ``fp16`` turns the fp16 ones on; ``None`` follows the file (an fp16 export
runs with fp16 on). ncnn applies fp16 arithmetic only where the CPU has it (ARMv8.2 ``asimdhp``); on x86 it computes
in fp32 either way. Threads: ``threads`` or ncnn's count of big cores.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ghostdet.inference.backends import first_line, run_image_by_image
from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import METADATA_FILE, OUTPUT_NAMES, parse_metadata

PARAM_FILE = "model.ncnn.param"
BIN_FILE = "model.ncnn.bin"
PRECISIONS = ("fp32", "fp16")


def import_ncnn():
    try:
        import ncnn
    except ImportError:
        raise ConfigError("ncnn models need the ncnn package: pip install 'ghostdet[ncnn]' (or pip install ncnn)") from None
    return ncnn


def model_files(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(folder, param, bin)`` of an ncnn export: its folder, or the ``.param`` file in it."""
    path = Path(path)
    folder = path.parent if path.suffix == ".param" else path
    if not folder.is_dir():
        raise CheckpointError(f"{path}: no such ncnn export folder; export one with tools/export.py --format ncnn")
    param = path if path.suffix == ".param" else folder / PARAM_FILE
    if not param.is_file():
        found = sorted(folder.glob("*.param"))
        if len(found) != 1:
            raise CheckpointError(f"{folder}: no {PARAM_FILE} in this folder (not an ncnn export); export one with "
                                  "tools/export.py --format ncnn")
        param = found[0]
    weights = param.with_suffix(".bin")
    if not weights.is_file():
        raise CheckpointError(f"{param}: its weights file {weights.name} is missing; re-export with tools/export.py --format ncnn")
    return folder, param, weights


def read_metadata(path: str | os.PathLike) -> dict:
    """The folder's ``metadata.json`` record (validated); ``{}`` when there is none."""
    folder = model_files(path)[0]
    file = folder / METADATA_FILE
    return parse_metadata(file.read_text(encoding="utf-8"), file) if file.is_file() else {}


class NcnnBackend:
    """An ``ncnn.Net`` of an export from ``ghostdet.export.ncnn`` (see the module docstring)."""

    kind = "ncnn"
    nms = False
    fixed_batch = None

    def __init__(self, path: Path, precision: str | None = None, threads: int | None = None):
        ncnn = import_ncnn()
        self._ncnn = ncnn
        folder, param, weights = model_files(path)
        self.path = folder
        self.meta = read_metadata(folder)
        chosen = (precision or self.meta.get("precision") or "fp32").lower()
        if chosen == "auto":
            chosen = self.meta.get("precision") or "fp32"
        if chosen not in PRECISIONS:
            raise ConfigError(f"precision {precision}: ncnn runs fp32 or fp16 (fp16 arithmetic where the CPU has it)")
        self.precision = chosen
        self.threads = int(threads) if threads else max(1, ncnn.get_big_cpu_count())
        net = ncnn.Net()
        fp16 = chosen == "fp16"
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = self.threads
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = fp16
        net.opt.use_bf16_storage = False
        try:
            failed = net.load_param(str(param)) != 0 or net.load_model(str(weights)) != 0
        except Exception as e:
            raise CheckpointError(f"{param}: not a loadable ncnn model ({first_line(e)}); re-export with tools/export.py --format ncnn") from None
        if failed:
            raise CheckpointError(f"{param}: not a loadable ncnn model (ncnn refused the .param or .bin); re-export "
                                  "with tools/export.py --format ncnn")
        inputs, outputs = list(net.input_names()), list(net.output_names())
        if len(inputs) != 1 or len(outputs) != 2:
            raise CheckpointError(f"{param}: has {len(inputs)} input(s) and {len(outputs)} output(s); expected images -> "
                                  "boxes, scores (an ncnn export from tools/export.py)")
        self.net = net
        self.input_name = inputs[0]
        self.output_names = list(OUTPUT_NAMES) if set(OUTPUT_NAMES) <= set(outputs) else outputs
        size = self.meta.get("imgsz")
        self.fixed_imgsz = (int(size[0]), int(size[1])) if size else None
        names = self.meta.get("names")
        self.num_classes = len(names) if names else None

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return run_image_by_image(batch, "ncnn", self._run_one)

    def _run_one(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.net.create_extractor() as ex:
            ex.input(self.input_name, self._ncnn.Mat(image))
            found = []
            for name in self.output_names:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise CheckpointError(f"{self.path}: ncnn could not compute {name} (error {ret}); the input "
                                          f"must be 3 x {self.fixed_imgsz or 'H x W'}")
                found.append(np.array(mat, dtype=np.float32))  # a copy: the Mat dies with the extractor
        return found[0], found[1]

    def describe(self) -> str:
        return f"ncnn {self.precision} ({self.threads} threads)"


def load(path: str | os.PathLike, *, device: str = "cpu", precision: str | None = None, threads: int | None = None):
    """An ``NcnnBackend`` on the export folder at ``path`` (CPU; ``precision`` fp32 or fp16, None: the file's)."""
    if str(device).lower() not in ("cpu", ""):
        raise ConfigError(f"device {device!r}: ghostdet runs ncnn models on the CPU only; use --device cpu")
    return NcnnBackend(Path(path), precision, threads)


def unavailable(precision: str | None) -> str | None:
    if precision not in (None, *PRECISIONS):
        return f"ncnn runs fp32 or fp16, not {precision}"
    return None


__all__ = ["BIN_FILE", "NcnnBackend", "PARAM_FILE", "import_ncnn", "load", "model_files", "read_metadata", "unavailable"]
