"""OpenVINO IR export: the ONNX export (``export_onnx``: same graph, same metadata) converted with
``openvino.convert_model`` and written with ``openvino.save_model(..., compress_to_fp16=False)`` to a folder::

    best_openvino/model.xml, model.bin (FP32 weights), metadata.json

The ghostdet metadata (names, category ids, imgsz, ...) is the ONNX file's, stored twice: in the IR's ``rt_info``
(key ``ghostdet``, JSON) and in ``metadata.json`` for people and tools that do not parse the IR.
Run it with ``Detector.from_file(folder, precision="auto")`` (``ghostdet.inference.backends.openvino``). The folder is
published atomically (``ghostdet.utils.atomic.staged_path``): the previous IR stays whole until the new one is complete.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch.nn as nn

from ghostdet.export.onnx import DEFAULT_OPSET, _quiet_loggers, export_onnx
from ghostdet.inference.backends.openvino import IR_XML, import_openvino, ir_metadata, read_ir, reason
from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.exported import META_KEY, METADATA_FILE, parse_metadata

log = logging.getLogger(__name__)


def openvino_dir_for(weights: str | os.PathLike) -> Path:
    """``runs/.../best.pt`` -> ``runs/.../best_openvino`` (the folder ``tools/export.py`` writes by default)."""
    weights = Path(weights)
    return weights.with_name(f"{weights.stem}_openvino")


def export_openvino(
    model: nn.Module,
    out_dir: str | os.PathLike,
    imgsz: int | Sequence[int] = 640,
    dynamic: bool = False,
    batch: int = 1,
    names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
    onnx_path: str | os.PathLike | None = None,
    nms: bool = False,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
) -> Path:
    """Write ``model`` (a GhostYOLO) as an OpenVINO IR folder ``out_dir``; returns the folder.

    The model goes through ``export_onnx`` first (into a temporary file, or ``onnx_path`` to keep it), so both formats
    share one graph and one metadata record. Weights are stored in FP32; pick bf16 at run time (precision hint).
    ``nms``/``conf``/``iou``/``max_det``: NMS inside the graph, as in ``export_onnx``.
    """
    import onnx

    ov = import_openvino()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a folder; an OpenVINO export is a folder (e.g. best_openvino/)")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, _quiet_loggers("ghostdet.export.onnx") if onnx_path is None else contextlib.nullcontext():
        source = Path(onnx_path) if onnx_path else Path(tmp) / "model.onnx"
        export_onnx(model, source, imgsz, dynamic=dynamic, half=False, opset=opset, batch=batch, names=names,
                    category_ids=category_ids, nms=nms, conf=conf, iou=iou, max_det=max_det)  # its "exported /tmp/..onnx" line is muted: the temp file is gone after
        proto = onnx.load(str(source), load_external_data=False)
        meta = parse_metadata({p.key: p.value for p in proto.metadata_props}[META_KEY], source)
        del proto
        try:
            ir = ov.convert_model(str(source))
        except Exception as e:
            raise ConfigError(f"OpenVINO conversion of the ONNX export failed ({reason(e)})") from None
    meta.update(format="openvino", weights="fp32")
    # staged beside out_dir and swapped in whole: a stale model.bin never sits next to a new model.xml, and the old
    # IR is removed only after the new one is in place
    with staged_path(out_dir, is_dir=True) as staged:
        write_openvino_folder(ir, meta, staged)
    log.info("exported %s in %.1f s (OpenVINO %s IR, FP32 weights, %s)", out_dir, time.perf_counter() - started,
             ov.__version__.split("-")[0], "dynamic batch/height/width" if dynamic else f"fixed {batch}x3x{meta['imgsz'][0]}x{meta['imgsz'][1]}")
    return out_dir


def write_openvino_folder(ir, meta: dict, folder: Path) -> Path:
    """An IR folder (model.xml, model.bin with FP32 weights, metadata.json) with ``meta`` in rt_info and metadata.json."""
    ov = import_openvino()
    folder.mkdir(parents=True, exist_ok=True)
    ir.set_rt_info(json.dumps(meta), META_KEY)
    ov.save_model(ir, str(folder / IR_XML), compress_to_fp16=False)
    (folder / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def write_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Replace the ghostdet record of the IR folder at ``path`` (rt_info and metadata.json), atomically."""
    model, _ = read_ir(path)
    with staged_path(path, is_dir=True) as staged:
        write_openvino_folder(model, meta, staged)
    del model


def quantize(fp32_path, out, images, float_last_convs: bool = False) -> dict:
    """NNCF int8 of the IR folder ``fp32_path`` written as the folder ``out`` (the format table's hook)."""
    from ghostdet.export.quantizers import quantize_openvino_model

    model, xml = read_ir(fp32_path)
    meta = ir_metadata(model, xml)
    quantized, scheme = quantize_openvino_model(model, images, float_last_convs=float_last_convs)
    write_openvino_folder(quantized, dict(meta, weights="int8", precision="int8"), Path(out))
    return scheme


export = export_openvino  # the format table's entry point (ghostdet.export.formats)


def ir_size_mb(out_dir: str | os.PathLike) -> float:
    """Size of the IR files (xml + bin) in MB."""
    out_dir = Path(out_dir)
    return sum((out_dir / n).stat().st_size for n in (IR_XML, "model.bin") if (out_dir / n).is_file()) / 1e6
