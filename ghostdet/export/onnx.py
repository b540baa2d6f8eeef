"""ONNX export of a Ghost-YOLO: input ``images`` B x 3 x H x W float RGB 0-1 (normalisation inside),
outputs ``boxes`` B x A x 4 (xyxy, input pixels) and ``scores`` B x A x nc (sigmoid), so any runtime needs
only letterbox + score threshold + NMS around it (``ghostdet.models.postprocess.postprocess`` does that).
With ``nms=True`` the graph ends in class-aware NMS instead (``ghostdet.export.nms``: outputs ``num_dets``,
``det_boxes``, ``det_scores``, ``det_classes``, at most ``max_det`` per image), so a runtime needs only the letterbox.

The model is re-parameterized and BN-folded on a copy first. Class names, COCO category ids and the
input size travel in the file's metadata (key ``ghostdet``, JSON: ``ghostdet.utils.exported.build_metadata``), so
``Detector.from_onnx`` needs nothing else. The file is published atomically (``staged_path``): a failed export leaves
the previous file as it was.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ghostdet.data.letterbox import PAD_VALUE
from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.exported import INPUT_NAME, META_KEY, OUTPUT_NAMES, build_metadata

log = logging.getLogger(__name__)

DEFAULT_OPSET = 18


class DecodedOutputs(nn.Module):
    """The deployable graph: ``images -> (boxes, scores)``, i.e. the detector's ``forward`` + ``decode``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(self.model(images))


def prepare_for_export(model: nn.Module, half: bool = False, device: str | torch.device = "cpu") -> nn.Module:
    """A fused, re-parameterized eval-mode copy of ``model`` (the original is left untouched)."""
    from ghostdet.models import deploy_form

    model = deploy_form(copy.deepcopy(model).to(device))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.half() if half else model.float()


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    imgsz: int | Sequence[int] = 640,
    dynamic: bool = False,
    half: bool = False,
    opset: int = DEFAULT_OPSET,
    batch: int = 1,
    names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    nms: bool = False,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
) -> Path:
    """Write ``model`` (a GhostYOLO) to ``path`` as ONNX; returns the path.

    dynamic: batch, height and width become free axes (height/width must stay multiples of 32).
    half: FP16 weights and FP16 input (for GPU runtimes; ONNX Runtime's CPU provider lacks most FP16 kernels).
    Uses the torch.export-based exporter (``dynamo=True``: the supported one in torch >= 2.9), whose graph is
    optimised (constant folding, dead code removed) before writing.
    nms: end the graph in class-aware NMS (``ghostdet.export.nms.EndToEndNMS``) with score threshold ``conf``, IoU
    ``iou`` and at most ``max_det`` detections per image, all fixed in the file (and recorded in its metadata).
    """
    import onnx

    from ghostdet.utils.imgsz import input_hw, max_stride

    stride = max_stride(model)
    h, w = input_hw(imgsz, stride)
    if half and torch.device(device).type == "cpu":
        log.warning("exporting FP16 on CPU: ONNX Runtime's CPU provider runs FP16 models slowly or not at all; "
                    "use --half for GPU runtimes (CUDA/TensorRT)")
    path = Path(path)
    translation = None
    output_names = list(OUTPUT_NAMES)
    if nms:
        from ghostdet.export.nms import NMS_OUTPUT_NAMES, ONNX_TRANSLATION, EndToEndNMS

        wrapper: nn.Module = EndToEndNMS(prepare_for_export(model, half=half, device=device), conf, iou, max_det)
        translation, output_names = ONNX_TRANSLATION, list(NMS_OUTPUT_NAMES)
    else:
        wrapper = DecodedOutputs(prepare_for_export(model, half=half, device=device))
    # A dynamic export traces a batch of 2 and a non-square size: torch.export specialises an example size of 1
    # (torch 2.9.1 baked batch 1 into the decode's reshapes) and equates equal example sizes (torch 2.6 tied height
    # to width, and a non-square input then failed in ONNX Runtime)
    example_batch, example_w = (max(batch, 2), w + stride if w == h else w) if dynamic else (batch, w)
    dummy = torch.zeros(example_batch, 3, h, example_w, device=device, dtype=torch.float16 if half else torch.float32)
    dynamic_shapes = None
    if dynamic:
        # sides are multiples of the stride: say so, or torch.export specialises on the example size
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=1024),
                           2: stride * torch.export.Dim("height_32", min=1, max=256),
                           3: stride * torch.export.Dim("width_32", min=1, max=256)},)
    started = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_loggers("onnxscript", "onnx_ir", "torch.onnx"):
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        try:
            program = torch.onnx.export(
                wrapper, (dummy,), input_names=[INPUT_NAME], output_names=output_names,
                opset_version=opset, dynamo=True, dynamic_shapes=dynamic_shapes, external_data=False,
                optimize=True, verbose=False, custom_translation_table=translation,
            )
        except Exception as e:
            raise ConfigError(f"ONNX export failed ({type(e).__name__}: {str(e).strip().splitlines()[0][:300]})") from None
    proto = program.model_proto
    fixed = [d.dim_value for i, d in enumerate(proto.graph.input[0].type.tensor_type.shape.dim) if i != 1 and d.HasField("dim_value")]
    if dynamic and fixed:  # seen with --nms on torch 2.6: the exporter specialised the free axes to the example's
        raise ConfigError(f"torch {torch.__version__} exported this graph{' with --nms' if nms else ''} with a fixed "
                          f"input size although --dynamic was asked; export without --dynamic (--batch/--imgsz fix "
                          "the size) or use a newer torch")
    if dynamic:  # readable axis names for users of the file
        outputs = [(o, {0: "batch"} if nms else {0: "batch", 1: "anchors"}) for o in proto.graph.output]
        for value, dims in [(proto.graph.input[0], {0: "batch", 2: "height", 3: "width"}), *outputs]:
            for axis, name in dims.items():
                dim = value.type.tensor_type.shape.dim[axis]
                if not dim.HasField("dim_value"):
                    dim.dim_param = name
    nc = int(getattr(model, "num_classes", 0)) or None
    outputs = "boxes: B x A x 4 xyxy input pixels; scores: B x A x nc sigmoid"
    if nms:
        outputs = (f"num_dets: B x 1 int32; det_boxes: B x {max_det} x 4 float32 xyxy input pixels; det_scores: B x "
                   f"{max_det} float32 descending; det_classes: B x {max_det} int32; rows from num_dets on are padding "
                   "(0, class -1)")
    meta = build_metadata(
        list(names) if names is not None else [str(i) for i in range(nc or 0)], (h, w), category_ids=category_ids,
        stride=stride, dynamic=dynamic, half=half, nms=nms, conf=float(conf), iou=float(iou), max_det=int(max_det),
        fmt="onnx", precision="fp16" if half else "fp32",
        input=f"images: B x 3 x H x W float RGB 0-1, letterboxed (pad {PAD_VALUE})", outputs=outputs,
        ghostdet_version=_version())
    set_metadata(proto, meta)
    onnx.checker.check_model(proto)
    with staged_path(path, is_dir=False) as staged:  # the old file stays until the new one is complete
        onnx.save(proto, str(staged))
    log.info("exported %s in %.1f s (opset %d, %s, %s%s)", path, time.perf_counter() - started, opset,
             "dynamic batch/height/width" if dynamic else f"fixed {batch}x3x{h}x{w}", "fp16" if half else "fp32",
             f", NMS in the graph: conf {conf}, iou {iou}, max_det {max_det}" if nms else "")
    return path


def set_metadata(proto, meta: dict) -> None:
    """Replace the ghostdet record in an ONNX ``ModelProto`` (in memory)."""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    proto.producer_name = "ghostdet"


def write_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Replace the ghostdet record of the ONNX file at ``path`` (atomically; external data is never followed)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    set_metadata(proto, meta)
    with staged_path(path) as staged:
        onnx.save(proto, str(staged))


def quantize(fp32_path, out, images, float_last_convs: bool = False) -> dict:
    """Static QDQ int8 with ONNX Runtime (``ghostdet.export.quantizers.quantize_onnx``); the format table's hook."""
    from ghostdet.export.quantizers import quantize_onnx
    from ghostdet.inference.backends.onnxruntime import read_metadata

    scheme = quantize_onnx(fp32_path, out, images, float_last_convs=float_last_convs)
    write_metadata(out, dict(read_metadata(fp32_path), precision="int8", weights="int8"))
    return scheme


export = export_onnx  # the format table's entry point (ghostdet.export.formats)


@contextlib.contextmanager
def _quiet_loggers(*names: str):
    """The exporter's optimizer logs every rewrite at INFO; keep a user's INFO console readable."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _version() -> str:
    from ghostdet import __version__

    return __version__
