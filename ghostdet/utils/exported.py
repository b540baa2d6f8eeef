"""The contract of an exported model file, shared by its writers (``ghostdet.export``) and its readers
(``ghostdet.inference.backends``), so neither package imports the other for it: output names, the metadata schema,
the one function that builds a record (``build_metadata``) and the one validated reader (``parse_metadata``).

Metadata (JSON; ONNX ``metadata_props`` / OpenVINO ``rt_info`` under ``META_KEY``, ``metadata.json`` in export folders,
``ghostdet.json`` inside TorchScript): ``SCHEMA`` lists every key. A malformed record is a one-line CheckpointError,
never a silent misreading (a string ``names`` read as one class per letter, short ``names`` ending in IndexError).
"""
from __future__ import annotations

import json
import math
from typing import Any, Sequence

from ghostdet.utils.errors import CheckpointError

# ONNX metadata_props key and OpenVINO rt_info key of ghostdet's metadata (JSON: names, category_ids, imgsz, ...)
META_KEY = "ghostdet"
METADATA_FILE = "metadata.json"  # the record's copy inside an export folder (OpenVINO IR, ncnn)
# outputs of an export with NMS in the graph (``tools/export.py --nms``; ``ghostdet.export.nms``), in this order
NMS_OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")
INPUT_NAME = "images"
OUTPUT_NAMES = ("boxes", "scores")

SCHEMA: dict[str, str] = {
    "names": "list of class names, index = class id (required to name detections)",
    "category_ids": "list of COCO category ids, one per name, or null",
    "imgsz": "[height, width] the file was exported at (a fixed-shape file accepts only this)",
    "stride": "largest stride; a dynamic file accepts sides that are multiples of it",
    "dynamic": "batch/height/width are free axes",
    "half": "fp16 weights and input",
    "nms": "the graph ends in NMS (outputs num_dets, det_boxes, det_scores, det_classes)",
    "conf": "NMS graphs: score threshold baked in, in [0, 1)",
    "iou": "NMS graphs: IoU threshold baked in, in [0, 1]",
    "max_det": "NMS graphs: most detections per image (>= 1)",
    "format": "export format name (ghostdet.export.formats)",
    "precision": "fp32, fp16 or int8: what the weights are",
    "weights": "how the weights are stored",
    "input": "the input tensor, in words",
    "outputs": "the output tensors, in words",
    "int8": "int8 exports: scheme, calibration, and the measured fp32/int8 mAPs",
    "ghostdet_version": "the ghostdet that wrote it",
}


def _bad(source: Any, what: str) -> CheckpointError:
    return CheckpointError(f"{source}: ghostdet metadata {what}; re-export the model with tools/export.py")


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _names(value: Any, source: Any) -> list[str]:
    if isinstance(value, dict):  # {"0": "person", ...} (ultralytics' style): contiguous ids only
        keys = {_int(int(k)) if str(k).lstrip("-").isdigit() else None: v for k, v in value.items()}
        if None in keys or sorted(keys) != list(range(len(keys))):
            raise _bad(source, "'names' is a mapping whose keys are not the class ids 0..n-1")
        value = [keys[i] for i in range(len(keys))]
    if not isinstance(value, list) or not value:
        raise _bad(source, f"'names' must be a non-empty list of class names, not {type(value).__name__} {value!r:.40}")
    if not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in value):
        raise _bad(source, "'names' holds something other than names (strings)")
    return [str(n) for n in value]


def parse_metadata(raw: str | bytes | dict | None, source: Any = "model", num_classes: int | None = None) -> dict:
    """The validated, normalised metadata record of an exported file (``{}`` when it has none). ``raw``: the JSON text
    or the parsed dict; ``num_classes``: the class count the graph outputs, when known (names must match it)."""
    if raw is None or raw == "" or raw == b"":
        return {}
    if isinstance(raw, (str, bytes)):
        try:
            raw = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise _bad(source, f"is not valid JSON ({getattr(e, 'msg', type(e).__name__)})") from None
    if not isinstance(raw, dict):
        raise _bad(source, f"is a {type(raw).__name__}, not a JSON object")
    meta = dict(raw)
    if meta.get("names") is not None:
        meta["names"] = _names(meta["names"], source)
    names = meta.get("names")
    if names is not None and num_classes is not None and len(names) != int(num_classes):
        raise _bad(source, f"names {len(names)} classes but the model outputs {num_classes}")
    if meta.get("category_ids") is not None:
        ids = meta["category_ids"]
        if not isinstance(ids, list) or any(_int(i) is None for i in ids):
            raise _bad(source, f"'category_ids' must be a list of integers, not {ids!r:.40}")
        meta["category_ids"] = [int(i) for i in ids]
        if names is not None and len(ids) != len(names):
            raise _bad(source, f"has {len(ids)} category ids for {len(names)} class names")
    if meta.get("imgsz") is not None:
        size = meta["imgsz"]
        sides = [size, size] if _int(size) is not None else size
        if not isinstance(sides, list) or len(sides) != 2 or any((_int(s) or 0) <= 0 for s in sides):
            raise _bad(source, f"'imgsz' must be [height, width] in pixels, not {size!r:.40}")
        meta["imgsz"] = [int(s) for s in sides]
    if meta.get("stride") is not None and (_int(meta["stride"]) or 0) <= 0:
        raise _bad(source, f"'stride' must be a positive integer, not {meta['stride']!r:.20}")
    for key in ("dynamic", "half", "nms"):
        if meta.get(key) is not None and not isinstance(meta[key], bool):
            raise _bad(source, f"'{key}' must be true or false, not {meta[key]!r:.20}")
    for key, low, high, closed in (("conf", 0.0, 1.0, False), ("iou", 0.0, 1.0, True)):
        value = meta.get(key)
        if value is None:
            continue
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low <= value <= high if closed else low <= value < high):
            raise _bad(source, f"'{key}' must be a number in [{low:g}, {high:g}{']' if closed else ')'}, not {value!r:.20}")
        meta[key] = float(value)
    if meta.get("max_det") is not None:
        if (_int(meta["max_det"]) or 0) < 1:
            raise _bad(source, f"'max_det' must be an integer >= 1, not {meta['max_det']!r:.20}")
        meta["max_det"] = int(meta["max_det"])
    return meta


def build_metadata(names: Sequence[str], imgsz: Sequence[int], *, category_ids: Sequence[int] | None = None,
                   stride: int = 32, dynamic: bool = False, half: bool = False, nms: bool = False,
                   conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                   fmt: str | None = None, precision: str | None = None, **extra: Any) -> dict:
    """The record every exporter writes (validated with ``parse_metadata``, so no writer can publish a bad one).
    Writers pass ``ghostdet_version`` (importing ``ghostdet`` here would close a circle through its lazy ``Detector``)."""
    meta: dict[str, Any] = {
        "names": list(names), "category_ids": list(category_ids) if category_ids else None,
        "imgsz": [int(imgsz[0]), int(imgsz[1])], "stride": int(stride), "dynamic": bool(dynamic), "half": bool(half),
        "nms": bool(nms),
    }
    if nms:
        meta.update(conf=conf, iou=iou, max_det=max_det)
    if fmt:
        meta["format"] = fmt
    if precision:
        meta["precision"] = precision
    meta.update(extra)
    return parse_metadata(meta, "the exported model")


__all__ = ["INPUT_NAME", "META_KEY", "METADATA_FILE", "NMS_OUTPUT_NAMES", "OUTPUT_NAMES", "SCHEMA", "build_metadata",
           "parse_metadata"]
