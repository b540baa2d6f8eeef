"""OpenVINO backend for the IR folders ``tools/export.py --format openvino`` writes (``best_openvino/``).

A folder holds ``model.xml`` + ``model.bin`` (FP32 weights: saved with ``compress_to_fp16=False``; an int8 export
holds FakeQuantize nodes) and ``metadata.json``; the same ghostdet metadata is also in the IR's ``rt_info`` under the
key ``ghostdet``. The graph is the ONNX one: ``images`` B x 3 x H x W float RGB 0-1 in, ``boxes`` and ``scores`` out
(or, exported with ``--nms``, the four NMS outputs), so ``Detector`` pre- and post-processes it like an ONNX model.

Precision is a compile-time hint (``INFERENCE_PRECISION_HINT``): ``fp32``, ``bf16``, or ``auto`` = bf16 where the
CPU reports BF16 among its ``OPTIMIZATION_CAPABILITIES`` (AVX512-BF16 or AMX), else fp32. The weights on disk stay
FP32 either way. OpenVINO's own default on a BF16-capable CPU is already bf16: ``fp32`` is set explicitly.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ghostdet.inference.backends import output_order
from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import META_KEY, METADATA_FILE, NMS_OUTPUT_NAMES, parse_metadata

log = logging.getLogger(__name__)

IR_XML = "model.xml"
PRECISIONS = ("fp32", "bf16", "auto")
_OV_TYPES = {"fp32": "f32", "bf16": "bf16"}


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise ConfigError("OpenVINO models need the openvino package: pip install 'ghostdet[openvino]' "
                          "(or pip install openvino)") from None
    return openvino


def cpu_supports_bf16(core=None) -> bool:
    """Whether OpenVINO's CPU plugin reports BF16 among its optimization capabilities on this machine."""
    ov = import_openvino()
    core = core or ov.Core()
    try:
        return "BF16" in [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    except Exception:  # an old plugin without the property
        return False


def resolve_precision(precision: str | None = "auto", core=None) -> tuple[str, str]:
    """``fp32`` / ``bf16`` / ``auto`` → ``(chosen, why)``; ``auto`` is bf16 where the CPU reports BF16, else fp32.

    ``bf16`` on a CPU without BF16 support is a ConfigError (OpenVINO would emulate it slowly or ignore it)."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return "fp32", "asked for"
    supported = cpu_supports_bf16(core)
    if precision == "bf16":
        if not supported:
            raise ConfigError("precision bf16 asked for, but this CPU does not report BF16 support to OpenVINO "
                              "(it needs AVX512-BF16 or AMX); use --precision fp32 or auto")
        return "bf16", "asked for"
    if supported:
        return "bf16", "auto: the CPU reports BF16"
    return "fp32", "auto: the CPU does not report BF16"


def find_ir(path: str | os.PathLike) -> Path:
    """The ``.xml`` of an IR: ``path`` itself, or ``model.xml`` (or the only ``*.xml``) in the folder ``path``."""
    path = Path(path)
    if path.is_dir():
        xml = path / IR_XML
        if not xml.is_file():
            found = sorted(path.glob("*.xml"))
            if len(found) != 1:
                raise CheckpointError(f"{path}: no {IR_XML} in this folder (not an OpenVINO export); "
                                      "export one with tools/export.py --format openvino")
            xml = found[0]
        return xml
    if path.suffix.lower() == ".xml":
        if not path.is_file():
            raise CheckpointError(f"{path}: no such OpenVINO model file; check the path")
        return path
    raise CheckpointError(f"{path}: no such OpenVINO IR folder; check the path or export one with "
                          "tools/export.py --format openvino")


def read_ir(path: str | os.PathLike, core=None):
    """``(model, xml_path)`` of the IR at ``path`` (a folder or its .xml); a broken IR is a one-line CheckpointError."""
    ov = import_openvino()
    xml = find_ir(path)
    bin_path = xml.with_suffix(".bin")
    if not bin_path.is_file():
        raise CheckpointError(f"{xml}: its weights file {bin_path.name} is missing; re-export with tools/export.py --format openvino")
    with open(xml, "rb") as f:  # not an IR: refuse it here, before OpenVINO tries every frontend (TF's logs to stderr)
        head = f.read(4096)
    if b"<net" not in head:
        raise CheckpointError(f"{xml}: not an OpenVINO IR (no <net> element); re-export it with tools/export.py --format openvino")
    core = core or ov.Core()
    try:
        model = core.read_model(str(xml), str(bin_path))
    except Exception as e:  # OpenVINO raises RuntimeError with a multi-line C++ trace for bad files
        raise CheckpointError(f"{xml}: not a loadable OpenVINO model ({reason(e)}); "
                              "re-export it with tools/export.py --format openvino") from None
    return model, xml


def reason(error: Exception) -> str:
    """The informative line of an OpenVINO exception (its first lines are C++ source locations)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from ", "Check '"))]
    return ((useful or lines or [type(error).__name__])[0])[:200]


def ir_metadata(model, xml: Path, num_classes: int | None = None) -> dict:
    """The validated ghostdet metadata of a read IR: its rt_info entry, else ``metadata.json`` next to it, else ``{}``."""
    raw = None
    try:
        if model.has_rt_info(META_KEY):
            raw = model.get_rt_info(META_KEY).astype(str)
    except Exception:  # an IR without rt_info support
        raw = None
    if not raw and (xml.parent / METADATA_FILE).is_file():
        raw = (xml.parent / METADATA_FILE).read_text()
    return parse_metadata(raw, xml.parent if xml.name == IR_XML else xml, num_classes)


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata of the IR folder (or .xml) at ``path``, without compiling it."""
    model, xml = read_ir(path)
    return ir_metadata(model, xml)


def compile_config(precision: str, threads: int | None = None) -> dict[str, Any]:
    """The CPU plugin settings every ghostdet OpenVINO run uses: latency hint, precision hint, threads."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": _OV_TYPES[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def compile_model(model, precision: str = "auto", threads: int | None = None, core=None, where: str = "model"):
    """Compile an ``openvino.Model`` (or a path OpenVINO can read) for the CPU; returns ``(compiled, chosen, why)``."""
    ov = import_openvino()
    core = core or ov.Core()
    chosen, why = resolve_precision(precision, core)
    try:
        compiled = core.compile_model(model, "CPU", compile_config(chosen, threads))
    except Exception as e:
        raise CheckpointError(f"{where}: OpenVINO could not compile it ({reason(e)}); "
                              "re-export it with tools/export.py --format openvino") from None
    return compiled, chosen, why


class OpenVinoBackend:
    """An OpenVINO CPU-compiled model of an IR written by ``ghostdet.export.export_openvino`` (same I/O as the ONNX,
    with or without NMS)."""

    kind = "openvino"

    def __init__(self, compiled, path: Path, precision: str, reason: str = ""):
        self.compiled = compiled
        self.path = path
        self.precision, self.precision_reason = precision, reason
        inputs, outputs = compiled.inputs, compiled.outputs
        if len(inputs) != 1 or len(outputs) not in (2, len(NMS_OUTPUT_NAMES)):
            raise CheckpointError(f"{path}: has {len(inputs)} input(s) and {len(outputs)} output(s); expected images -> "
                                  "boxes, scores (an OpenVINO export from tools/export.py)")
        shape = inputs[0].get_partial_shape()
        if shape.rank.is_dynamic or shape.rank.get_length() != 4:
            raise CheckpointError(f"{path}: input has shape {shape}; expected a batch of images B x 3 x H x W")
        dims = [d.get_length() if d.is_static else None for d in shape]
        h, w = dims[2], dims[3]
        self.fixed_imgsz = (h, w) if h is not None and w is not None else None
        self.fixed_batch = dims[0]
        # (boxes, scores), or the NMS outputs, whatever order the IR lists them in
        self.nms, self.output_index = output_order([set(o.get_names()) for o in outputs], path)
        nc = outputs[self.output_index[1]].get_partial_shape()[-1]
        self.num_classes = nc.get_length() if nc.is_static and not self.nms else None
        self.request = compiled.create_infer_request()
        self.meta: dict = {}

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        self.request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        # the request reuses its output buffers: copy before the next call overwrites them
        if self.nms:
            return tuple(torch.from_numpy(np.array(self.request.get_output_tensor(i).data)) for i in self.output_index)
        boxes = np.array(self.request.get_output_tensor(self.output_index[0]).data, dtype=np.float32)
        scores = np.array(self.request.get_output_tensor(self.output_index[1]).data, dtype=np.float32)
        return torch.from_numpy(boxes), torch.from_numpy(scores)

    def describe(self) -> str:
        return f"OpenVINO {self.precision} ({self.precision_reason})" if self.precision_reason else f"OpenVINO {self.precision}"


def load(path: str | os.PathLike, *, device: str = "cpu", precision: str | None = None,
         threads: int | None = None, model=None) -> OpenVinoBackend:
    """The IR folder (or .xml) at ``path`` compiled for the CPU at ``precision`` (fp32 / bf16 / auto; None = auto) with
    ``threads`` inference threads. ``model``: an ``openvino.Model`` already in memory (then ``path`` only names it)."""
    if str(device).lower() not in ("cpu", ""):
        raise ConfigError(f"device {device!r}: ghostdet runs OpenVINO models on the CPU only; use --device cpu")
    ov = import_openvino()
    core = ov.Core()
    if model is None:
        model, xml = read_ir(path, core)
    else:
        xml = Path(path)
    compiled, chosen, why = compile_model(model, precision or "auto", threads, core, where=str(xml))
    log.info("%s: OpenVINO %s on CPU (%s)%s", xml.parent, chosen, why, f", {threads} threads" if threads else "")
    backend = OpenVinoBackend(compiled, xml, chosen, why)
    backend.meta = ir_metadata(model, xml, backend.num_classes)
    return backend


def unavailable(precision: str | None) -> str | None:
    """Why this machine cannot run ``precision`` (None: it can)."""
    if precision == "bf16" and not cpu_supports_bf16():
        return "this CPU does not report BF16 to OpenVINO (needs AVX512-BF16 or AMX)"
    return None


def load_backend(path: str | os.PathLike, precision: str = "auto", threads: int | None = None) -> tuple[OpenVinoBackend, dict]:
    """``(backend, metadata)``: the older entry point, kept for scripts."""
    backend = load(path, precision=precision, threads=threads)
    return backend, backend.meta


__all__ = ["IR_XML", "PRECISIONS", "OpenVinoBackend", "compile_config", "compile_model", "cpu_supports_bf16", "find_ir",
           "import_openvino", "ir_metadata", "load", "load_backend", "openvino_available", "read_ir", "read_metadata",
           "reason", "resolve_precision", "unavailable"]
