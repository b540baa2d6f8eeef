"""ONNX Runtime backend for the ``.onnx`` files ``tools/export.py --format onnx`` writes (with or without NMS, fp32,
fp16 or int8 QDQ). The one ONNX Runtime session set-up of ghostdet: Detector, the export check, the int8 gate and the
benchmark all come through ``onnx_session``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostdet.inference.backends import first_line, output_order
from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import META_KEY, parse_metadata


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("running .onnx models needs onnxruntime: pip install 'ghostdet[export]' "
                          "(or pip install onnxruntime)") from None
    return onnxruntime


def onnx_session(path: str | os.PathLike | bytes, device: str | torch.device = "cpu", threads: int | None = None,
                 where: str | None = None):
    """An ONNX Runtime session of the exported model at ``path`` (or its serialized bytes; ``where`` names it in errors)
    on the CPU, or CUDA for ``cuda[:N]``; bad files and a missing onnxruntime or CUDA provider are one-line errors."""
    ort = import_onnxruntime()
    if not isinstance(path, bytes):
        path = Path(path)
        where = where or str(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such ONNX file; check the path")
    providers: list[Any] = ["CPUExecutionProvider"]
    if str(device).lower() not in ("cpu", ""):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(f"device {device!r} asked for, but this onnxruntime has no CUDA provider "
                              "(pip install onnxruntime-gpu); use --device cpu")
        index = str(device).split(":")[-1]
        providers = [("CUDAExecutionProvider", {"device_id": int(index) if index.isdigit() else 0}), "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's own warnings go to stderr unformatted; keep the console clean
    options.inter_op_num_threads = 1  # sequential execution (ORT's default mode) never uses a second pool
    if threads:
        options.intra_op_num_threads = int(threads)  # the thread budget a benchmark gives every runtime
    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path), sess_options=options,
                                    providers=providers)
    except Exception as e:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...) for bad files
        raise CheckpointError(f"{where}: not a loadable ONNX model ({first_line(e)}); export one with tools/export.py") from None


def session_metadata(session, where: Any, num_classes: int | None = None) -> dict:
    return parse_metadata(session.get_modelmeta().custom_metadata_map.get(META_KEY), where, num_classes)


class OnnxBackend:
    """An ONNX Runtime session of a model written by ``ghostdet.export.export_onnx`` (with or without NMS)."""

    kind = "onnxruntime"

    def __init__(self, session, path: Path | None, meta: dict | None = None):
        self.session, self.path = session, path
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = np.float16 if "float16" in inp.type else np.float32
        shape = list(inp.shape)
        if len(shape) != 4:
            raise CheckpointError(f"{path}: input has shape {shape}; expected a batch of images B x 3 x H x W "
                                  "(an ONNX file from tools/export.py)")
        h, w = shape[2], shape[3]
        self.fixed_imgsz = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        outputs = session.get_outputs()
        self.nms, order = output_order([o.name for o in outputs], path)
        self.output_names = [outputs[i].name for i in order]
        nc = outputs[order[1]].shape[-1]
        self.num_classes = nc if isinstance(nc, int) and not self.nms else None
        self.meta = meta if meta is not None else session_metadata(session, path, self.num_classes)
        self.precision = "fp16" if self.input_dtype == np.float16 else self.meta.get("precision") or "fp32"

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        outputs = self.session.run(self.output_names, {self.input_name: batch.astype(self.input_dtype, copy=False)})
        if self.nms:
            return tuple(torch.from_numpy(np.asarray(o)) for o in outputs)
        boxes, scores = outputs
        return torch.from_numpy(np.asarray(boxes, np.float32)), torch.from_numpy(np.asarray(scores, np.float32))

    def describe(self) -> str:
        return f"ONNX Runtime {self.precision} ({', '.join(self.session.get_providers()[:1])})"


def load(path: str | os.PathLike, *, device: str = "cpu", precision: str | None = None, threads: int | None = None):
    """An ``OnnxBackend`` on ``path``; ``precision`` is the file's own (fp32/fp16/int8), so a hint is refused."""
    if precision not in (None, "auto", "fp32"):
        raise ConfigError(f"precision {precision}: ONNX Runtime runs a file in the precision it was exported in "
                          "(--half / --int8 at export); drop --precision")
    path = Path(path)
    return OnnxBackend(onnx_session(path, device, threads), path)


def read_metadata(path: str | os.PathLike) -> dict:
    """The file's record, read with onnx without external data (no path in the file is followed: CVE-2024-27318)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such ONNX file; check the path")
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a loadable ONNX model ({first_line(e)}); export one with tools/export.py") from None
    return parse_metadata({p.key: p.value for p in proto.metadata_props}.get(META_KEY), path)


__all__ = ["OnnxBackend", "import_onnxruntime", "load", "onnx_session", "read_metadata", "session_metadata"]
