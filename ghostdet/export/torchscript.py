"""TorchScript export (``torch.jit.trace``) of a Ghost-YOLO for C++/libtorch or Python without ghostdet.

Same contract as the ONNX file: input B x 3 x H x W float RGB 0-1, outputs ``(boxes B x A x 4 xyxy input px,
scores B x A x nc)``. The trace works at any multiple-of-32 size (the anchor grid is computed from the
feature-map shapes at run time). Metadata (names, category ids, imgsz) is stored as the extra file
``ghostdet.json``: ``torch.jit.load(path, _extra_files={"ghostdet.json": ""})``.
"""
from __future__ import annotations

import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ghostdet.export.onnx import DecodedOutputs, prepare_for_export
from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.exported import build_metadata

log = logging.getLogger(__name__)

META_FILE = "ghostdet.json"


def export_torchscript(
    model: nn.Module,
    path: str | os.PathLike,
    imgsz: int | Sequence[int] = 640,
    half: bool = False,
    names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
) -> Path:
    """Trace the fused, re-parameterized ``model`` and save it to ``path``; returns the path."""
    from ghostdet import __version__
    from ghostdet.utils.imgsz import input_hw, max_stride

    stride = max_stride(model)
    h, w = input_hw(imgsz, stride)
    path = Path(path)
    wrapper = DecodedOutputs(prepare_for_export(model, half=half, device=device))
    dummy = torch.zeros(1, 3, h, w, device=device, dtype=torch.float16 if half else torch.float32)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python values (the anchor grid)
        try:
            traced = torch.jit.trace(wrapper, dummy, strict=False, check_trace=False)
            traced = torch.jit.freeze(traced.eval())
        except Exception as e:
            raise ConfigError(f"TorchScript export failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:300]})") from None
    nc = int(getattr(model, "num_classes", 0))
    meta = build_metadata(list(names) if names is not None else [str(i) for i in range(nc)], (h, w),
                          category_ids=category_ids, stride=stride, dynamic=True, half=half, fmt="torchscript",
                          precision="fp16" if half else "fp32", ghostdet_version=__version__)
    with warnings.catch_warnings(), staged_path(path) as staged:  # the old file stays until the new one is complete
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice; tracing still works
        torch.jit.save(traced, str(staged), _extra_files={META_FILE: json.dumps(meta)})
    log.info("exported %s in %.1f s (TorchScript, traced at 1x3x%dx%d, %s)", path, time.perf_counter() - started, h, w,
             "fp16" if half else "fp32")
    return path


export = export_torchscript  # the format table's entry point (ghostdet.export.formats)
