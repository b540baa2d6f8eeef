"""LiteRT (TFLite) export: ``best.tflite``, converted straight from PyTorch by ``litert-torch`` (torch.export ->
MLIR -> TFLite flatbuffer; no TensorFlow, no ONNX), run with ``ai-edge-litert``.

The graph is the ONNX export's (``DecodedOutputs``: forward + decode): signature ``serving_default`` with input
``args_0`` 1 x 3 x H x W float32 RGB 0-1 (letterboxed, NCHW as exported; the converter inserts the transposes) and
outputs ``output_0`` = boxes 1 x A x 4 (xyxy input pixels) and ``output_1`` = scores 1 x A x nc (sigmoid). ghostdet's
metadata (JSON) is a TFLite metadata entry named ``ghostdet`` inside the file (``ghostdet.inference.backends.litert
.read_metadata`` reads it with the flatbuffer schema that ``ai-edge-litert`` ships).

* fp32: the converted model.
* fp16 (``half=True``): weights stored as fp16 with Dequantize ops in front (TFLite's "float16 quantization", by
  ``ai-edge-quantizer``'s float-casting recipe): half the file; XNNPACK and the GPU delegate may compute in fp16 on
  ARM, the CPU reference kernels compute in fp32.
* int8 (``quantize``, behind the accuracy gate of ``ghostdet.export.accuracy``): ``ai-edge-quantizer``'s static
  recipe on the fp32 file, calibrated on the calibration images run through the float model: weights int8 symmetric
  per output channel, activations int8 (min/max), integer kernels for every supported op from the input to the head's
  last convolutions. The decode tail (every op downstream of the last CONV_2D ops: reshapes, concat, the DFL softmax,
  its expectation, the box arithmetic, the sigmoid) stays float, found from the graph as for ONNX. The quantizer makes the
  input int8 (its scale and zero point are in the file: about 1/255 and -128, i.e. the 0-255 pixel minus 128); the
  outputs stay float32, so the decoder is the same for every precision.

Which converter and why (measured in a fresh Python 3.11 venv beside torch 2.14.1, docs/deploy.md): ``litert-torch``
0.10 converts this model with torch 2.14.1 and adds about 1.1 GB (jax/jaxlib, litert-converter, transformers, torchao,
ai-edge-quantizer); ``onnx2tf`` needs Python >= 3.12 from 2.0 on, and its last 3.11 release (1.29.24) pins
tensorflow 2.19, onnxruntime 1.23, onnx 1.19 and numpy 1.26 exactly (it would downgrade the dev install);
TensorFlow's own converter takes TensorFlow graphs only. So the ``litert`` extra holds litert-torch; on a device only
``ai-edge-litert`` (65 MB) is needed.

The converters run in a subprocess (``ghostdet.export.converters.run_converter``) on a ``torch.export`` program saved
in a work folder beside the output; the file is published with ``staged_path`` (a failure leaves nothing behind).
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
import torch
import torch.nn as nn

from ghostdet.export.converters import converter_work, package_version, run_converter
from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError, ExportMismatchError
from ghostdet.utils.exported import META_KEY, build_metadata, parse_metadata

log = logging.getLogger(__name__)

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2", "GLOG_minloglevel": "2", "TQDM_DISABLE": "1"}

# runs in the converter's subprocess: argv = program.pt2 output.tflite half(0/1)
_CONVERT = r"""
import sys, torch, litert_torch
program, out, half = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
ep = torch.export.load(program)
sample = tuple(torch.zeros(tuple(t.shape), dtype=t.dtype) for t in ep.example_inputs[0])
edge = litert_torch.convert(ep.module(), sample)
edge.export("float.tflite" if half else out)
if half:
    from ai_edge_quantizer import quantizer, qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    q = quantizer.Quantizer("float.tflite")
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                             algorithm_key=AlgorithmName.FLOAT_CASTING)
    q.quantize().export_model(out, overwrite=True)
"""

# argv = float.tflite calibration.npy tail.json output.tflite
_QUANTIZE = r"""
import json, re, sys, numpy as np
from ai_edge_quantizer import quantizer, qtyping, recipe
from ai_edge_quantizer.algorithm_manager import AlgorithmName
src, calib, tail, out = sys.argv[1:5]
q = quantizer.Quantizer(src)
q.load_quantization_recipe(recipe.static_wi8_ai8())
names = json.load(open(tail))
if names:
    q.update_quantization_recipe(regex="^(?:" + "|".join(re.escape(n) for n in names) + ");",  # scope: "out0;out1;"
                                 operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                 algorithm_key=AlgorithmName.NO_QUANTIZE)
images = np.load(calib)
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=src)
sig = interpreter.get_signature_list()["serving_default"]["inputs"][0]
batch = int(interpreter.get_signature_runner("serving_default").get_input_details()[sig]["shape"][0])
if len(images) < batch:  # a file with a fixed batch larger than the calibration set
    images = np.concatenate([images] * -(-batch // len(images)))
samples = [{sig: images[i:i + batch]} for i in range(0, len(images) - batch + 1, batch)]
result = q.calibrate({"serving_default": samples}, num_threads=1)
q.quantize(result).export_model(out, overwrite=True)
"""


def require_converter() -> None:
    missing = [p for p in ("litert_torch", "ai_edge_quantizer", "ai_edge_litert") if importlib.util.find_spec(p) is None]
    if missing:
        raise ConfigError(f"LiteRT export needs {', '.join(missing)}: pip install 'ghostdet[litert]'")


def export_litert(model: nn.Module, out: str | os.PathLike, imgsz: int | Sequence[int] = 640, half: bool = False,
                  batch: int = 1, names: Sequence[str] | None = None, category_ids: Sequence[int] | None = None,
                  device: str = "cpu", opset: int | None = None) -> Path:
    """Write ``model`` (a GhostYOLO) to ``out`` (``best.tflite``) with litert-torch; ``half``: fp16 weights. ``batch``:
    the fixed batch of the file (1 is what devices use). Returns the path."""
    from ghostdet.export.onnx import DecodedOutputs, _version, prepare_for_export
    from ghostdet.data.letterbox import PAD_VALUE
    from ghostdet.utils.imgsz import input_hw, max_stride

    require_converter()
    if batch < 1:
        raise ConfigError(f"--batch {batch}: must be >= 1")
    stride = max_stride(model)
    h, w = input_hw(imgsz, stride)
    nc = int(getattr(model, "num_classes", 0)) or 0
    out = Path(out)
    started = time.perf_counter()
    wrapper = DecodedOutputs(prepare_for_export(model, device="cpu")).eval()
    sample = torch.zeros(batch, 3, h, w)
    meta = build_metadata(list(names) if names is not None else [str(i) for i in range(nc)], (h, w),
                          category_ids=category_ids, stride=stride, half=half, fmt="litert",
                          precision="fp16" if half else "fp32", weights="fp16" if half else "fp32",
                          converter=f"litert-torch {package_version('litert-torch')}",
                          input=f"args_0 (signature serving_default): {batch} x 3 x H x W float32 RGB 0-1, letterboxed "
                                f"(pad {PAD_VALUE})",
                          outputs="output_0: boxes B x A x 4 xyxy input pixels; output_1: scores B x A x nc sigmoid",
                          ghostdet_version=_version())
    with converter_work(out) as (staged, work):
        try:
            program = torch.export.export(wrapper, (sample,), strict=False)
        except Exception as e:
            raise ExportMismatchError(f"torch.export of the model failed ({type(e).__name__}: "
                                      f"{str(e).strip().splitlines()[0][:200]}); nothing was written") from None
        torch.export.save(program, str(work / "model.pt2"))
        convert_program(work, half)
        write_metadata(work / "model.tflite", meta)
        os.replace(work / "model.tflite", staged)
    log.info("exported %s in %.1f s (LiteRT via litert-torch, %s weights, fixed %dx3x%dx%d)", out,
             time.perf_counter() - started, "fp16" if half else "fp32", batch, h, w)
    return out


def convert_program(work: Path, half: bool = False, env: dict | None = None) -> Path:
    """litert-torch on ``work/model.pt2`` (a saved ``torch.export`` program), in a subprocess: writes and returns
    ``work/model.tflite`` (``half``: fp16 weights). The conversion step of ``export_litert``, for callers that convert
    other models exactly as ghostdet converts its own (benchmarks/bench_edge.py); ``env`` adds to the converter's."""
    run_converter([sys.executable, "-c", _CONVERT, "model.pt2", "model.tflite", "1" if half else "0"],
                  f"litert-torch (PyTorch -> LiteRT{', fp16 weights' if half else ''})", cwd=work,
                  expect=("model.tflite",), env={**_QUIET, **(env or {})})
    return work / "model.tflite"


def write_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Put ``meta`` (validated) into the ``.tflite`` at ``path`` as the metadata entry ``ghostdet`` (replacing an old
    one), atomically. Needs only ai-edge-litert (its flatbuffer schema)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    path = Path(path)
    data = json.dumps(parse_metadata(meta, path)).encode()
    model = flatbuffer_utils.read_model(str(path))
    entries = [m for m in (model.metadata or []) if _text(m.name) != META_KEY]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = META_KEY, len(model.buffers) - 1
    model.metadata = entries + [entry]
    with staged_path(path) as staged:
        flatbuffer_utils.write_model(model, str(staged))


def float_tail(path: str | os.PathLike) -> tuple[list[str], list[str]]:
    """``(last_convs, tail)``: output tensor names of the convolutions of the ``.tflite`` with no convolution
    downstream, and of every op downstream of them (the decode tail, kept float in int8)."""
    from ai_edge_litert.tools import flatbuffer_utils

    from ghostdet.export.quantizers import _tail

    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]
    names = [_text(t.name) for t in graph.tensors]
    ops = [(f"{i}:{names[op.outputs[0]]}", flatbuffer_utils.opcode_to_name(model, op.opcodeIndex), op)
           for i, op in enumerate(graph.operators)]
    consumers: dict[int, list[str]] = {}
    for key, _, op in ops:
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(key)
    nodes = {key: (kind, [c for t in op.outputs for c in consumers.get(int(t), [])]) for key, kind, op in ops}
    last, tail = _tail(nodes, CONV_OPS)
    strip = lambda keys: [k.split(":", 1)[1] for k in keys]  # noqa: E731
    if not last or not tail:
        raise ConfigError(f"{path}: no head convolutions found in the LiteRT graph (not a ghostdet export?)")
    return strip(last), strip(tail)


def quantize(fp32_path: str | os.PathLike, out: str | os.PathLike, images: Sequence[np.ndarray],
             float_last_convs: bool = False) -> dict:
    """Static int8 of the fp32 ``.tflite`` at ``fp32_path`` written to ``out`` (ai-edge-quantizer), calibrated on
    ``images`` (1 x 3 x H x W float32 0-1 letterboxed batches, grouped to the file's fixed batch); the decode tail (and with ``float_last_convs`` the
    head's last convolutions) stays float. Returns the scheme record."""
    from ghostdet.inference.backends.litert import read_metadata

    require_converter()
    fp32_path, out = Path(fp32_path), Path(out)
    meta = read_metadata(fp32_path)
    if meta.get("half"):
        raise ConfigError(f"{fp32_path}: int8 starts from the fp32 .tflite, not an fp16 one; export without --half")
    last, tail = float_tail(fp32_path)
    keep = tail + (last if float_last_convs else [])
    with converter_work(out) as (staged, work):
        np.save(work / "calibration.npy", np.concatenate([np.asarray(b, np.float32) for b in images]))
        (work / "float.json").write_text(json.dumps(keep))
        (work / "float.tflite").write_bytes(fp32_path.read_bytes())
        run_converter([sys.executable, "-c", _QUANTIZE, "float.tflite", "calibration.npy", "float.json", "int8.tflite"],
                      "ai-edge-quantizer (LiteRT int8)", cwd=work, expect=("int8.tflite",), env=_QUIET)
        write_metadata(work / "int8.tflite", dict(meta, precision="int8", weights="int8", half=False))
        os.replace(work / "int8.tflite", staged)
    return {"runtime": "litert", "tool": f"ai-edge-quantizer {package_version('ai-edge-quantizer')} static_wi8_ai8",
            "weights": "int8 symmetric, per output channel", "activations": "int8 (min/max over the calibration images)",
            "float_nodes": len(keep), "float": "decode tail" + (" + last head convs" if float_last_convs else ""),
            "io": "int8 input (the file's scale / zero point), float32 outputs"}


def _text(value) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray)) else str(value or "")


export = export_litert  # the format table's entry point (ghostdet.export.formats)

__all__ = ["export", "export_litert", "float_tail", "quantize", "require_converter", "write_metadata"]
