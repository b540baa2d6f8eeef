"""Export to deployable formats. ``ghostdet.export.formats`` is the table of formats (one row each: suffix, extra,
precisions, NMS, dynamic shapes, exporter and backend modules); one module per format (``onnx``, ``openvino``,
``torchscript``, ...); ``verify`` checks an export against PyTorch; int8 is ``calibration`` + ``quantizers`` + the
accuracy gate ``accuracy``. Names are imported lazily, so ``import ghostdet.export.formats`` pulls in no runtime."""
from __future__ import annotations

import importlib

_NAMES = {
    "export_onnx": "ghostdet.export.onnx", "prepare_for_export": "ghostdet.export.onnx",
    "export_openvino": "ghostdet.export.openvino", "export_torchscript": "ghostdet.export.torchscript",
    "verify_export": "ghostdet.export.verify", "check_image": "ghostdet.export.verify",
    "compare_detections": "ghostdet.export.verify", "ExportCheck": "ghostdet.export.verify",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'ghostdet.export' has no attribute {name!r}")
