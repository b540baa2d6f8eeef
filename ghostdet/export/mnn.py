"""MNN export: the ONNX export (``export_onnx``: same graph, same metadata) converted by MNN's converter into one file,
``best.mnn``. Input ``images`` 1 x 3 x H x W float RGB 0-1 (letterboxed, NCHW), outputs ``boxes`` 1 x A x 4 (xyxy
input pixels) and ``scores`` 1 x A x nc (sigmoid): the ONNX export's. ghostdet's metadata (JSON) is the file's
``bizCode`` string (``MNN.nn`` modules report it in ``get_info()``), so the file is self-contained.

* fp32: MNNConvert ``-f ONNX``; fp16: ``--fp16`` (conv weights and biases stored as fp16, half the file; MNN computes
  in fp16 where the run-time precision is ``low`` and the CPU has fp16 arithmetic, e.g. ARMv8.2). The ONNX weights are
  rounded to fp16 first (``round_to_fp16``): MNN's own cast lost four times more than rounding on the test model.
* int8 (``quantize``, behind the accuracy gate of ``ghostdet.export.accuracy``): MNN's post-training quantization tool
  (``quantized.out`` / ``mnnquant``) on the fp32 ``.mnn``: weights int8 symmetric per output channel (``MAX_ABS``),
  activations int8 symmetric per tensor with EMA ranges over the calibration images (KL crashed MNN 3.6's tool here),
  batch 1. The tool quantizes convolutions (and the element-wise ops between int8 tensors); everything else, the
  whole decode tail included (DFL softmax, MatMul with the bins, box arithmetic, sigmoid), stays float. The
  calibration images are ghostdet's letterboxed inputs written as PNGs at the export size, so the tool's own resize
  is the identity and ``normal`` 1/255 reproduces the 0-1 input exactly.

MNN's Python tool wrappers (the ``mnnconvert`` / ``mnnquant`` commands) send usage logs to Alibaba Cloud and, when
the logging SDK is missing, run ``pip install`` themselves; ghostdet never calls them. It calls the compiled entry
points (``_tools.mnnconvert`` / ``_tools.mnnquant`` of the ``MNN`` wheel) in a subprocess of its own, with no network
access needed, and publishes the result with ``staged_path`` (a failure leaves nothing behind).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch.nn as nn

from ghostdet.export.converters import converter_work, package_version, run_converter
from ghostdet.export.ncnn import onnx_for_conversion
from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.exported import parse_metadata

log = logging.getLogger(__name__)

# argv[0] is the program name MNN's option parser expects; everything after comes from the caller
_CONVERT = "import sys, _tools; _tools.mnnconvert(['MNNConvert'] + sys.argv[1:])"
_QUANTIZE = "import sys, _tools; _tools.mnnquant(['quantized.out'] + sys.argv[1:])"
QUANT_SETTINGS = {"feature_quantize_method": "EMA", "weight_quantize_method": "MAX_ABS", "feature_clamp_value": 127,
                  "weight_clamp_value": 127, "batch_size": 1, "quant_bits": 8}


def require_mnn() -> None:
    if importlib.util.find_spec("MNN") is None or importlib.util.find_spec("_tools") is None:
        raise ConfigError("MNN export needs the MNN package: pip install 'ghostdet[mnn]'")


def convert(source: Path, dest: Path, framework: str, meta: dict, fp16: bool = False, what: str = "MNNConvert") -> None:
    """MNN's converter (``framework`` ONNX or MNN) from ``source`` to ``dest`` with ``meta`` as the bizCode."""
    require_mnn()
    command = [sys.executable, "-c", _CONVERT, "-f", framework, "--modelFile", source.name, "--MNNModel", dest.name,
               "--bizCode", json.dumps(meta, separators=(",", ":"))]
    if fp16:
        command.append("--fp16")
    if source.parent != dest.parent:
        raise ValueError("source and dest must share a folder (the converter runs in it)")
    run_converter(command, what, cwd=source.parent, expect=(dest.name,))


def export_mnn(model: nn.Module, out: str | os.PathLike, imgsz: int | Sequence[int] = 640, half: bool = False,
               batch: int = 1, names: Sequence[str] | None = None, category_ids: Sequence[int] | None = None,
               device: str = "cpu", opset: int | None = None) -> Path:
    """Write ``model`` (a GhostYOLO) to ``out`` (``best.mnn``) with MNN's converter; ``half``: fp16 weights. Returns
    the path. The file takes one image whatever ``batch`` is (ghostdet's backend runs a batch image by image)."""
    require_mnn()
    if batch != 1:
        log.info("MNN exports take one image: the file is 1 x 3 x H x W (any --batch runs image by image)")
    out = Path(out)
    started = time.perf_counter()
    with converter_work(out) as (staged, work):
        source, meta, (h, w) = onnx_for_conversion(model, work, imgsz, names, category_ids, device, opset)
        meta.update(format="mnn", precision="fp16" if half else "fp32", half=bool(half),
                    weights="fp16" if half else "fp32", converter=f"MNNConvert {package_version('MNN')}",
                    input="images: 1 x 3 x H x W float RGB 0-1, letterboxed (NCHW)")
        if half:
            round_to_fp16(source)
        convert(source, work / "model.mnn", "ONNX", parse_metadata(meta, out), fp16=half,
                what=f"MNNConvert (ONNX -> MNN{', fp16' if half else ''})")
        os.replace(work / "model.mnn", staged)
    log.info("exported %s in %.1f s (MNN %s, %s weights, fixed 1x3x%dx%d)", out, time.perf_counter() - started,
             package_version("MNN"), "fp16" if half else "fp32", h, w)
    return out


def round_to_fp16(onnx_path: Path) -> None:
    """Round the float32 initializers of the ONNX file to the nearest fp16 value, in place. MNNConvert's ``--fp16``
    on raw fp32 weights lost more than fp16 rounding does on the test model (scores off by 0.0096 against 0.0023 for
    round-to-nearest, boxes by 1.1 px against 0.24); on weights that are already fp16 values its cast is exact."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(onnx_path))
    for init in proto.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(array.astype(np.float16).astype(np.float32), init.name))
    onnx.save(proto, str(onnx_path))


def write_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Replace the ghostdet record (bizCode) of the ``.mnn`` at ``path``: an MNN -> MNN conversion (the graph and its
    int8 parameters are copied unchanged), published atomically."""
    path = Path(path)
    meta = parse_metadata(meta, path)
    with staged_path(path) as staged:
        work = staged.parent / "work"
        work.mkdir()
        _copy(path, work / "in.mnn")
        convert(work / "in.mnn", work / "out.mnn", "MNN", meta, what="MNNConvert (metadata)")
        os.replace(work / "out.mnn", staged)


def quantize(fp32_path: str | os.PathLike, out: str | os.PathLike, images: Sequence[np.ndarray],
             float_last_convs: bool = False) -> dict:
    """int8 of the fp32 ``.mnn`` at ``fp32_path`` written to ``out`` with MNN's quantization tool, calibrated on
    ``images`` (1 x 3 x H x W float32 0-1 letterboxed batches). ``float_last_convs``: keep the head's last convs
    float too (``skip_quant_op_names``). Returns the scheme record."""
    import cv2

    from ghostdet.inference.backends.mnn import read_metadata

    require_mnn()
    fp32_path, out = Path(fp32_path), Path(out)
    meta = read_metadata(fp32_path)
    if meta.get("half"):
        raise ConfigError(f"{fp32_path}: int8 starts from the fp32 .mnn, not an fp16 one; export without --half")
    h, w = meta.get("imgsz") or images[0].shape[-2:]
    with converter_work(out) as (staged, work):
        calib = work / "calibration"
        calib.mkdir()
        for i, batch in enumerate(images):  # 0-1 floats made from uint8 pixels: * 255 is exact
            rgb = np.clip(np.rint(batch[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
            cv2.imwrite(str(calib / f"{i:05d}.png"), np.ascontiguousarray(rgb[:, :, ::-1]))
        skip = last_conv_names(fp32_path) if float_last_convs else []
        config = {"format": "RGB", "mean": [0.0, 0.0, 0.0], "normal": [1 / 255.0] * 3, "width": int(w), "height": int(h),
                  "path": str(calib.resolve()) + os.sep, "used_image_num": len(images), **QUANT_SETTINGS,
                  "skip_quant_op_names": skip}
        (work / "quant.json").write_text(json.dumps(config, indent=1))
        _copy(fp32_path, work / "fp32.mnn")
        run_converter([sys.executable, "-c", _QUANTIZE, "fp32.mnn", "int8.mnn", "quant.json"],
                      "MNN quantization tool", cwd=work, expect=("int8.mnn",))
        # the tool drops the bizCode: put the record back (MNN -> MNN keeps the int8 parameters as they are)
        convert(work / "int8.mnn", work / "model.mnn", "MNN", dict(meta, precision="int8", weights="int8", half=False),
                what="MNNConvert (metadata)")
        os.replace(work / "model.mnn", staged)
    return {"runtime": "mnn", "tool": f"MNN {package_version('MNN')} quantization tool (quantized.out)",
            "weights": "int8 symmetric, per output channel (MAX_ABS)",
            "activations": "int8 symmetric, per tensor (EMA ranges, batch 1)",
            "float": "decode tail (MNN quantizes convolutions only)" + (" + last head convs" if skip else ""),
            "float_nodes": len(skip)}


def last_conv_names(path: Path) -> list[str]:
    """Names of the convolutions of the ``.mnn`` that feed no other convolution (the head's ``box_preds`` /
    ``cls_preds``), found from the graph: MNN's JSON dump (``-f MNN --JsonFile``)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".mnn_graph_", dir=path.parent) as tmp:
        work = Path(tmp)
        _copy(path, work / "in.mnn")
        run_converter([sys.executable, "-c", _CONVERT, "-f", "MNN", "--modelFile", "in.mnn", "--JsonFile", "graph.json"],
                      "MNNConvert (graph dump)", cwd=work, expect=("graph.json",))
        ops = json.loads((work / "graph.json").read_text()).get("oplists", [])
    from ghostdet.export.quantizers import _tail

    producers = {t: op["name"] for op in ops for t in op.get("outputIndexes", [])}
    successors: dict[str, list[str]] = {op["name"]: [] for op in ops}
    for op in ops:
        for t in op.get("inputIndexes", []):
            if t in producers:
                successors[producers[t]].append(op["name"])
    nodes = {op["name"]: (op.get("type", ""), successors[op["name"]]) for op in ops}
    last, _ = _tail(nodes, ("Convolution", "ConvolutionDepthwise"))
    return last


def _copy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copyfile(src, dst)


export = export_mnn  # the format table's entry point (ghostdet.export.formats)

__all__ = ["QUANT_SETTINGS", "export", "export_mnn", "last_conv_names", "quantize", "round_to_fp16", "write_metadata"]
