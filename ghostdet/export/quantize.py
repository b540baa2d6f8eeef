"""Post-training static int8 of an exported Ghost-YOLO, for ONNX Runtime and OpenVINO, with its accuracy cost measured.

    fp32 export (best.onnx / best_openvino/)  --calibrate on train images-->  int8 export (best_int8.onnx /
    best_int8_openvino/)  --COCO mAP of both on the val split-->  kept only when the drop is <= max_map_drop

* **Calibration images**: up to ``CALIBRATION_IMAGES`` (300) photos of the data config's *train* split, spread evenly
  over it, preprocessed exactly as at inference (``ghostdet.export.verify.check_image``: the inference reader,
  letterbox to the export size with pad 114, RGB, 0-1); a file that no longer decodes is skipped with a warning.
* **ONNX Runtime**: ``onnxruntime.quantization.quantize_static``, QDQ format, weights int8 symmetric per output
  channel, activations uint8 asymmetric (U8S8, the x86 choice), MinMax ranges.
* **OpenVINO**: ``nncf.quantize`` on the IR (FakeQuantize nodes; per-channel weights, NNCF's default ranges), preset
  ``mixed`` (asymmetric activations, like the ONNX Runtime side), target device CPU.
* **What stays float** (``float_tail_onnx`` / ``float_tail_openvino``): the decode tail, i.e. every node downstream
  of the head's last convolutions (``box_preds`` / ``cls_preds``): the per-level concat and reshape, the transpose and
  split into box and class logits, the DFL softmax and its expectation (``MatMul`` with the bins), the distance to
  xyxy arithmetic (``Sub``/``Add``/``Concat``), the stride ``Mul`` and the class ``Sigmoid``. The nodes are found
  from the graph, not by name: the last convs are the convolutions with no other convolution downstream of them.
  Why: the softmax over 16 DFL bins and the box arithmetic act on values whose useful range is lost at 8 bits
  (box coordinates up to the input size in pixels: one int8 step is several pixels), and they cost almost nothing in
  float. Everything else (backbone, neck, head convs, the ``box_preds``/``cls_preds`` convs themselves) is int8;
  see docs/inference.md for the mAP this gives on raccoon.
* **Accuracy check** (``quantize_export``): the fp32 export and the int8 export are both run over the val split with
  the COCO evaluator of ``tools/eval.py`` (``ghostdet.eval.evaluate_model``, conf 0.001, iou 0.7, max_det 300,
  multi-label); when the int8 mAP50-95 is more than ``max_map_drop`` points (of 100) below the fp32 one,
  ``ExportMismatchError`` is raised and **no int8 file is left**: the quantized model is written to a hidden staging
  path next to the output and only moved into place when it passed; on failure the staging copy is deleted, and so
  is an int8 export of an earlier run at the output path (it would look like the result of this one).
* **Metadata**: the export's ghostdet record plus ``precision: "int8"`` and an ``int8`` entry (runtime, scheme,
  calibration images and source, float node count, and the measured ``fp32`` / ``int8`` mAPs on the val split).

nncf is optional (the ``openvino`` extra); it is imported only for OpenVINO int8.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ghostdet.utils.errors import ConfigError, DataError, ExportMismatchError

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300
MAX_MAP_DROP = 1.0  # points of mAP50-95 (x100)
CONV_TYPES_ONNX = ("Conv",)
CONV_TYPES_OPENVINO = ("Convolution", "GroupConvolution")
EVAL_SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300}  # tools/eval.py's (configs/eval.yaml)


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


def int8_path_for(fp32_out: str | os.PathLike, fmt: str) -> Path:
    """Where the int8 export of ``fp32_out`` goes: ``best.onnx`` -> ``best_int8.onnx``, ``best_openvino`` ->
    ``best_int8_openvino``."""
    p = Path(fp32_out)
    if fmt == "onnx":
        return p.with_name(f"{p.stem}_int8{p.suffix or '.onnx'}")
    name = p.name.rstrip("/")
    for tail in ("_openvino_model", "_openvino"):
        if name.endswith(tail):
            return p.with_name(f"{name[: -len(tail)]}_int8{tail}")
    return p.with_name(f"{name}_int8")


# ------------------------------------------------------------------------------------------------ calibration
def calibration_images(data_cfg, imgsz: tuple[int, int], count: int = CALIBRATION_IMAGES, read_only: bool = False
                       ) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` train-split images of ``data_cfg`` as 1 x 3 x H x W float32 0-1 batches, preprocessed as at
    inference; ``(batches, description)``. The images are spread evenly over the split (deterministic)."""
    from ghostdet.data import build_dataset

    if count < 1:
        raise ConfigError(f"calibration images {count}: must be >= 1 (a few hundred is usual)")
    dataset = build_dataset(data_cfg, split="train", imgsz=_square(imgsz, "calibration"), augment=False,
                            read_only=read_only)
    files = [rec.file for rec in dataset.records]
    if len(files) > count:
        files = [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]
    batches = images_to_batches(files, imgsz)
    root = _data_root(data_cfg)
    return batches, f"{len(batches)} images of the train split of {root}"


def images_to_batches(files: Iterable[str | os.PathLike], imgsz: tuple[int, int]) -> list[np.ndarray]:
    """Image files -> letterboxed 1 x 3 x H x W float32 0-1 batches (the inference preprocessing); unreadable files
    are skipped with a warning naming them."""
    from ghostdet.export.verify import check_image

    batches = []
    for file in files:
        try:
            batches.append(check_image(file, imgsz)[0])
        except DataError as e:
            log.warning("calibration: skipping %s", e)
    if not batches:
        raise DataError("no readable calibration image; check the data config's train split")
    return batches


def synthetic_calibration(imgsz: tuple[int, int], count: int = 32) -> list[np.ndarray]:
    """``count`` synthetic scenes (shapes on a gradient, flipped and shaded variants), letterboxed: calibration when
    no data is at hand. Enough for latency; for accuracy calibrate on real images."""
    from ghostdet.data.letterbox import letterbox
    from ghostdet.export.verify import synthetic_scene

    base = synthetic_scene()
    out = []
    for i in range(count):
        image = base[:, ::-1] if i % 2 else base
        image = image[::-1] if (i // 2) % 2 else image
        image = np.clip(image.astype(np.float32) * (0.6 + 0.8 * ((i * 7) % 11) / 10), 0, 255).astype(np.uint8)
        padded, _, _ = letterbox(np.ascontiguousarray(image), imgsz)
        out.append(np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0))
    return out


def batched(images: Sequence[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """1-image batches -> batches of ``batch`` (a fixed-batch export's input); the last partial batch is dropped
    unless it is the only one (then it is padded by repeating images)."""
    if not batch or batch == 1:
        return list(images)
    groups = [np.concatenate(images[i:i + batch]) for i in range(0, len(images) - batch + 1, batch)]
    if not groups:
        reps = [images[i % len(images)] for i in range(batch)]
        groups = [np.concatenate(reps)]
    return groups


# ------------------------------------------------------------------------------------------------ float tail
def _tail(nodes: dict[str, tuple[str, list[str]]], conv_types: Sequence[str]) -> tuple[list[str], list[str]]:
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
    last, tail = _tail(nodes, CONV_TYPES_ONNX)
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
    last, tail = _tail(nodes, CONV_TYPES_OPENVINO)
    tail = [n for n in tail if nodes[n][0] != "Result"]
    if not last or not tail:
        raise ConfigError("no head convolutions found in the OpenVINO graph (not a ghostdet detector export?)")
    return last, tail


# ------------------------------------------------------------------------------------------------ quantizers
def quantize_onnx(fp32_path: str | os.PathLike, out_path: str | os.PathLike, images: Sequence[np.ndarray],
                  float_last_convs: bool = False) -> dict[str, Any]:
    """Static QDQ int8 of the ONNX file ``fp32_path`` into ``out_path`` with ONNX Runtime, calibrated on ``images``
    (1 x 3 x H x W batches, regrouped to the file's fixed batch). Returns the scheme record stored in the metadata."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    proto = onnx.load(str(fp32_path))
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


# ------------------------------------------------------------------------------------------------ accuracy
class RuntimeModel(torch.nn.Module):
    """An exported model (any ``batch -> (boxes, scores)`` callable) seen as a detector with ``forward`` + ``decode``,
    so ``ghostdet.eval.evaluate_model`` scores it exactly as it scores the checkpoint (same loader, same NMS, same
    COCO evaluator). A fixed-batch export gets the loader's batches in chunks of its size (the last one padded)."""

    def __init__(self, run: Callable[[np.ndarray], tuple], num_classes: int, fixed_batch: int | None = None):
        super().__init__()
        self.run, self.num_classes, self.fixed_batch = run, int(num_classes), fixed_batch

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        step = self.fixed_batch or len(x)
        boxes, scores = [], []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step:
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
            b, s = self.run(chunk)
            boxes.append(torch.as_tensor(np.asarray(b, np.float32))[:n])
            scores.append(torch.as_tensor(np.asarray(s, np.float32))[:n])
        return torch.cat(boxes), torch.cat(scores)

    @staticmethod
    def decode(raw):
        return raw


@dataclass
class ValSplit:
    """The val split of a data config, ready for ``evaluate_model``: dataset, loader and COCO ground truth."""

    dataset: Any
    loader: Any
    coco_gt: Any
    description: str = ""

    @classmethod
    def build(cls, data_cfg, imgsz: int | tuple[int, int], batch: int = 8, workers: int = 0,
              read_only: bool = False) -> "ValSplit":
        from ghostdet.data import build_dataloader, build_dataset

        size = imgsz if isinstance(imgsz, int) else _square(imgsz, "the val evaluation")
        dataset = build_dataset(data_cfg, split="val", imgsz=size, augment=False, read_only=read_only)
        loader = build_dataloader(dataset, batch_size=batch, workers=workers, shuffle=False)
        return cls(dataset, loader, dataset.coco_gt(), f"{len(dataset)} images of the val split of {_data_root(data_cfg)}")


def evaluate_runtime(model: torch.nn.Module, val: ValSplit, **settings) -> dict[str, float]:
    """COCO mAP50-95 / mAP50 (0-1) of ``model`` (a detector or a ``RuntimeModel``) on ``val`` with the eval settings."""
    from ghostdet.eval import evaluate_model

    kwargs = {**EVAL_SETTINGS, **settings}
    quiet = [logging.getLogger(n) for n in ("ghostdet.eval.coco_evaluator", "ghostdet.eval.loop")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        result = evaluate_model(model, val.loader, val.coco_gt, val.dataset.category_ids, names=val.dataset.names,
                                device="cpu", progress=False, **kwargs)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    return {"mAP50-95": float(result.metrics["AP"]), "mAP50": float(result.metrics["AP50"])}


def exported_runtime_model(path: str | os.PathLike, fmt: str, num_classes: int, precision: str = "fp32",
                           threads: int | None = None) -> RuntimeModel:
    """A ``RuntimeModel`` over the exported file (ONNX Runtime) or IR folder (OpenVINO at ``precision``)."""
    from ghostdet.inference.predictor import Detector

    if fmt == "onnx":
        det = Detector.from_onnx(path, threads=threads)
    else:
        det = Detector.from_openvino(path, precision=precision, threads=threads)
    return RuntimeModel(det.backend, num_classes, det.backend.fixed_batch)


@dataclass
class Int8Result:
    """What ``quantize_export`` measured. mAPs are 0-1; ``drop`` is in points (x100)."""

    path: Path
    fp32: dict[str, float]
    int8: dict[str, float]
    drop: float
    max_drop: float
    calibration: str
    val: str
    scheme: dict = field(default_factory=dict)
    ok: bool = True

    def table(self) -> str:
        rows = [("fp32", self.fp32), ("int8", self.int8)]
        lines = [f"{'':6} {'mAP50-95':>9} {'mAP50':>7}"]
        lines += [f"{name:6} {m['mAP50-95']:9.4f} {m['mAP50']:7.4f}" for name, m in rows]
        return "\n".join(lines)


def quantize_export(fp32_path: str | os.PathLike, fmt: str, data_cfg, imgsz: tuple[int, int],
                    out: str | os.PathLike | None = None, calib_images: int = CALIBRATION_IMAGES,
                    max_map_drop: float = MAX_MAP_DROP, precision: str = "fp32", threads: int | None = None,
                    read_only: bool = False, float_last_convs: bool = False, val_batch: int = 8,
                    workers: int = 0) -> Int8Result:
    """Quantize the fp32 export at ``fp32_path`` (``fmt`` onnx or openvino) to int8, evaluate both on the val split of
    ``data_cfg`` and keep the int8 export at ``out`` (default ``int8_path_for``) only if its mAP50-95 is within
    ``max_map_drop`` points of the fp32 export's; otherwise raise ``ExportMismatchError`` (one line, both mAPs;
    ``error.result`` holds the ``Int8Result``) and leave no int8 export behind. ``precision``: OpenVINO inference
    precision hint both models are evaluated with (the int8 model's float parts run in it)."""
    if fmt not in ("onnx", "openvino"):
        raise ConfigError(f"int8 export is for the onnx and openvino formats, not {fmt!r}")
    if max_map_drop < 0:
        raise ConfigError(f"max mAP drop {max_map_drop}: must be >= 0 (points of mAP50-95)")
    fp32_path = Path(fp32_path)
    out = Path(out) if out else int8_path_for(fp32_path, fmt)
    meta = _export_metadata(fp32_path, fmt)
    if meta.get("nms"):
        raise ConfigError("int8 needs the NMS-free export (its accuracy check scores raw outputs at conf 0.001); "
                          "export without --nms")
    num_classes = len(meta.get("names") or []) or None
    images, calibration = calibration_images(data_cfg, imgsz, calib_images, read_only=read_only)
    log.info("int8 calibration on %s", calibration)
    val = ValSplit.build(data_cfg, imgsz, batch=val_batch, workers=workers, read_only=read_only)
    if num_classes is None:
        num_classes = val.dataset.num_classes
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}_tmp_", dir=out.parent if out.parent.exists() else None))
    try:
        if fmt == "onnx":
            staged = staging / "model.onnx"
            scheme = quantize_onnx(fp32_path, staged, images, float_last_convs=float_last_convs)
        else:
            from ghostdet.export.openvino import write_openvino_folder
            from ghostdet.inference.openvino import read_ir

            model, _ = read_ir(fp32_path)
            quantized, scheme = quantize_openvino_model(model, images, float_last_convs=float_last_convs)
            staged = write_openvino_folder(quantized, dict(meta, weights="int8"), staging / "model_openvino")
        fp32_map = evaluate_runtime(exported_runtime_model(fp32_path, fmt, num_classes, precision, threads), val)
        int8_map = evaluate_runtime(exported_runtime_model(staged, fmt, num_classes, precision, threads), val)
        drop = 100.0 * (fp32_map["mAP50-95"] - int8_map["mAP50-95"])
        result = Int8Result(out, fp32_map, int8_map, drop, max_map_drop, calibration, val.description, scheme,
                            ok=drop <= max_map_drop)
        if not result.ok:
            _remove(out)  # an int8 export of an earlier run must not pass for this one's
            error = ExportMismatchError(
                f"{out.name}: int8 mAP50-95 {int8_map['mAP50-95']:.4f} vs fp32 {fp32_map['mAP50-95']:.4f} on "
                f"{val.description}: {drop:.2f} points lost > --max-map-drop {max_map_drop:g}; no int8 file was "
                "written: deploy the fp32 export, or calibrate on more/other images (--calib-images)")
            error.result = result
            raise error
        record = dict(meta, precision="int8", weights="int8", int8={
            **scheme, "calibration": calibration, "val": val.description, "eval": dict(EVAL_SETTINGS),
            "precision_hint": precision if fmt == "openvino" else None,
            "fp32": fp32_map, "int8": int8_map, "map_drop_points": round(drop, 3)})
        _finalize(staged, out, fmt, record)
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _finalize(staged: Path, out: Path, fmt: str, record: dict) -> None:
    """Write ``record`` into the staged export's metadata and move it to ``out`` (replacing what was there)."""
    from ghostdet.utils.exported import META_KEY

    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(staged))
        del proto.metadata_props[:]
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(record)
        proto.producer_name = "ghostdet"
        onnx.save(proto, str(staged))
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, out)
        return
    from ghostdet.export.openvino import write_openvino_folder
    from ghostdet.inference.openvino import read_ir

    model, _ = read_ir(staged)
    rewritten = write_openvino_folder(model, record, staged.with_name(staged.name + "_final"))
    del model
    _remove(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(rewritten), str(out))


def _export_metadata(path: Path, fmt: str) -> dict:
    if fmt == "onnx":
        import onnx

        from ghostdet.utils.exported import META_KEY

        proto = onnx.load(str(path), load_external_data=False)
        raw = {p.key: p.value for p in proto.metadata_props}.get(META_KEY)
        return json.loads(raw) if raw else {}
    from ghostdet.inference.openvino import read_ir, read_metadata

    model, xml = read_ir(path)
    return read_metadata(model, xml)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def _square(imgsz, what: str) -> int:
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    if h != w:
        raise ConfigError(f"imgsz {h}x{w}: {what} runs at a square size (the val loader's); export with --imgsz {max(h, w)}")
    return int(h)


def _data_root(data_cfg) -> str:
    try:
        return str(data_cfg.get("root"))
    except AttributeError:
        return "the data config"
