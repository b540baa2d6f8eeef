"""Post-training static int8 quantizers, one per runtime, and what they keep float.

* **ONNX Runtime** (``quantize_onnx``): ``onnxruntime.quantization.quantize_static``, QDQ format, weights int8
  symmetric per output channel, activations uint8 asymmetric (U8S8, the x86 choice), MinMax ranges.
* **OpenVINO** (``quantize_openvino_model``): ``nncf.quantize`` on the IR (FakeQuantize nodes; per-channel weights,
  NNCF's default ranges), preset ``mixed`` (asymmetric activations, like the ONNX Runtime side), target device CPU.
* **What stays float** (``float_tail_onnx`` / ``float_tail_openvino``): the decode tail, every node downstream of the
  head's last convolutions (``box_preds`` / ``cls_preds``): per-level concat/reshape, the split into box and class
  logits, the DFL softmax and its expectation, the distance-to-xyxy arithmetic, the stride ``Mul`` and the class
  ``Sigmoid``. Found from the graph, not by name: the last convs are the convolutions with no other convolution
  downstream. Why: the 16-bin softmax and box coordinates up to the input size lose their useful range at 8 bits (one
  step would be several pixels) and cost almost nothing in float.

Calibration images come from ``ghostdet.export.calibration``; the accuracy gate that decides whether an int8 file is
kept is ``ghostdet.export.accuracy``. nncf is optional (the ``openvino`` extra), imported only for OpenVINO int8.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ghostdet.export.calibration import batched
from ghostdet.utils.errors import ConfigError

log = logging.getLogger(__name__)

CONV_TYPES_ONNX = ("Conv",)
CONV_TYPES_OPENVINO = ("Convolution", "GroupConvolution")


def import_nncf():
    try:
        import nncf
    except ImportError:
        raise ConfigError('int8 for OpenVINO needs nncf: pip install "ghostdet[openvino]" (or pip install nncf)') from None
    return nncf


def nncf_available() -> bool:
    try:
        import nncf  # noqa: F401
    except ImportError:
        return False
    return True


def conv_tail(nodes: dict[str, tuple[str, list[str]]], conv_types: Sequence[str]) -> tuple[list[str], list[str]]:
    """``nodes``: name -> (op type, successor names), in topological order. Returns ``(last_convs, tail)``: the
    convolutions with no convolution downstream, and every node downstream of them (in order)."""
    conv_below: dict[str, bool] = {}
    for name in reversed(list(nodes)):
        conv_below[name] = any(nodes[s][0] in conv_types or conv_below.get(s, False) for s in nodes[name][1] if s in nodes)
    last = [n for n, (t, _) in nodes.items() if t in conv_types and not conv_below[n]]
    seen: set[str] = set()
    stack = [s for n in last for s in nodes[n][1]]
    while stack:
        n = stack.pop()
        if n in seen or n not in nodes:
            continue
        seen.add(n)
        stack.extend(nodes[n][1])
    return last, [n for n in nodes if n in seen]


def float_tail_onnx(proto) -> tuple[list[str], list[str]]:
    """``(last_convs, tail)`` node names of an ONNX detector graph (see the module docstring)."""
    consumers: dict[str, list[str]] = {}
    for node in proto.graph.node:
        for tensor in node.input:
            consumers.setdefault(tensor, []).append(node.name)
    nodes = {n.name: (n.op_type, [c for t in n.output for c in consumers.get(t, [])]) for n in proto.graph.node}
    if len(nodes) != len(proto.graph.node):
        raise ConfigError("the ONNX graph has unnamed or duplicate node names; re-export it with tools/export.py")
    last, tail = conv_tail(nodes, CONV_TYPES_ONNX)
    if not last or not tail:
        raise ConfigError("no head convolutions found in the ONNX graph (not a ghostdet detector export?)")
    return last, tail


def float_tail_openvino(model) -> tuple[list[str], list[str]]:
    """``(last_convs, tail)`` friendly names of an ``openvino.Model`` detector graph (Results and Constants left out)."""
    nodes: dict[str, tuple[str, list[str]]] = {}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Constant", "Parameter"):
            continue
        succ = [ti.get_node().get_friendly_name() for out in op.outputs() for ti in out.get_target_inputs()]
        nodes[op.get_friendly_name()] = (kind, succ)
    last, tail = conv_tail(nodes, CONV_TYPES_OPENVINO)
    tail = [n for n in tail if nodes[n][0] != "Result"]
    if not last or not tail:
        raise ConfigError("no head convolutions found in the OpenVINO graph (not a ghostdet detector export?)")
    return last, tail


def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, images: Sequence[np.ndarray],
                  float_last_convs: bool = False) -> dict[str, Any]:
    """Static QDQ int8 of the ONNX file ``fp32_path`` into ``out_path`` with ONNX Runtime, calibrated on ``images``
    (1 x 3 x H x W batches, regrouped to the file's fixed batch). Returns the scheme record stored in the metadata."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    proto = onnx.load(str(fp32_path), load_external_data=False)  # no path in the file is followed (CVE-2024-27318)
    rewritten = None
    if _constants_to_initializers(proto):  # e.g. the legacy exporter's: ORT quantizes only initializer weights/biases
        rewritten = fp32_path = Path(out_path).with_name(Path(out_path).stem + "_fp32_in.onnx")
        rewritten.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(proto, str(rewritten))
    last, tail = float_tail_onnx(proto)
    excluded = tail + (last if float_last_convs else [])
    inp = proto.graph.input[0]
    dim0 = inp.type.tensor_type.shape.dim[0]
    fixed_batch = dim0.dim_value if dim0.HasField("dim_value") else None
    feeds = batched(list(images), fixed_batch)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {inp.name: batch}

        def rewind(self):
            self._it = iter(feeds)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    del proto
    root = logging.getLogger()
    nag = _DropMessages("Please consider")  # ORT's advice to run its pre-processing (shape inference + optimisation):
    root.addFilter(nag)                     # the dynamo export is already shape-inferred and constant-folded
    try:
        quantize_static(
            str(fp32_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.MinMax,
            # MinMax keeps only per-tensor ReduceMin/ReduceMax outputs per batch: memory stays small for 300 images
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        root.removeFilter(nag)
        if rewritten is not None:
            rewritten.unlink(missing_ok=True)
    return {"runtime": "onnxruntime", "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "weights": "int8 symmetric, per output channel", "activations": "uint8 asymmetric (MinMax)",
            "float_nodes": len(excluded), "float": "decode tail" + (" + last head convs" if float_last_convs else "")}


def _constants_to_initializers(proto) -> int:
    """Weights the quantizer cannot see as weights, made initializers (in place): ``Constant`` nodes become
    initializers and ``Identity`` nodes of an initializer (the legacy exporter's shared biases) are bypassed.
    Returns how many nodes were removed (the dynamo export has none)."""
    from onnx import numpy_helper

    inits = {i.name for i in proto.graph.initializer}
    outputs = {o.name for o in proto.graph.output}
    removed, rename = [], {}
    for node in proto.graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            proto.graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(node.attribute[0].t),
                                                                   node.output[0]))
            inits.add(node.output[0])
            removed.append(node)
        elif node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
            removed.append(node)
    for node in removed:
        proto.graph.node.remove(node)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    return len(removed)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quantize_openvino_model(model, images: Sequence[np.ndarray], float_last_convs: bool = False):
    """``nncf.quantize`` of an ``openvino.Model`` calibrated on ``images``; returns ``(int8 model, scheme record)``."""
    nncf = import_nncf()
    last, tail = float_tail_openvino(model)
    shape = model.inputs[0].get_partial_shape()
    fixed_batch = shape[0].get_length() if shape[0].is_static else None
    feeds = batched(list(images), fixed_batch)
    previous = logging.getLogger("nncf").level
    nncf.set_log_level(logging.WARNING)
    try:  # nncf's progress bars (rich) go to stderr, like tqdm's: stdout stays the caller's
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(
                model, nncf.Dataset(feeds), preset=nncf.QuantizationPreset.MIXED, target_device=nncf.TargetDevice.CPU,
                subset_size=len(feeds), ignored_scope=nncf.IgnoredScope(names=tail + (last if float_last_convs else [])),
            )
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ConfigError(f"nncf could not quantize the OpenVINO model ({type(e).__name__}: {first})") from None
    finally:
        logging.getLogger("nncf").setLevel(previous)
    scheme = {"runtime": "openvino", "tool": f"nncf {nncf.__version__} quantize (preset mixed, target CPU)",
              "format": "FakeQuantize", "weights": "int8 symmetric, per output channel",
              "activations": "uint8 asymmetric", "float_nodes": len(tail) + (len(last) if float_last_convs else 0),
              "float": "decode tail" + (" + last head convs" if float_last_convs else "")}
    return quantized, scheme


_tail = conv_tail  # the older private name (ghostdet/export/mnn.py, litert.py use it)

__all__ = ["CONV_TYPES_ONNX", "CONV_TYPES_OPENVINO", "conv_tail", "float_tail_onnx", "float_tail_openvino", "import_nncf",
           "nncf_available", "quantize_onnx", "quantize_openvino_model"]
