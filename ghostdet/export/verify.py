"""Checks an exported file against the PyTorch model it came from, on the same real photo, before anyone ships it.

Two levels. First the raw decoded outputs over **every anchor** (largest box difference in pixels, largest score
difference): they cannot pass on nothing, whatever the model's scores. Then detections after score threshold + NMS
(count and box agreement: same count within 2%, matched boxes within 1 pixel). An export with NMS in the graph is
checked at both levels too: its decoded boxes and per-class scores are read where they enter the graph's
NonMaxSuppression (``nms_inputs``), and its detections against ``ghostdet.models.postprocess.postprocess`` of the
PyTorch outputs at the graph's conf/iou/max_det, image by image. Every runtime is reached through its backend
(``ghostdet.inference.backends.load_backend``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import box_iou, clip_boxes_to_image

from ghostdet.export.calibration import check_image, synthetic_scene  # noqa: F401 (their old home: re-exported)
from ghostdet.utils.errors import ExportMismatchError
from ghostdet.utils.timing import measure_latency

log = logging.getLogger(__name__)


def compare_detections(reference: dict, candidate: dict) -> tuple[int, int, float]:
    """Match two detection sets (dicts with boxes/scores/labels, tensors or arrays) class by class by IoU.

    Returns ``(count_reference, count_candidate, max_box_diff_px)`` where the box difference is the largest
    coordinate difference over matched pairs (inf when some reference box has no same-class partner).
    """
    ref_boxes, ref_labels = torch.as_tensor(np.asarray(reference["boxes"]), dtype=torch.float32), torch.as_tensor(np.asarray(reference["labels"]))
    cand_boxes, cand_labels = torch.as_tensor(np.asarray(candidate["boxes"]), dtype=torch.float32), torch.as_tensor(np.asarray(candidate["labels"]))
    worst = 0.0
    for label in ref_labels.unique():
        a, b = ref_boxes[ref_labels == label], cand_boxes[cand_labels == label]
        if len(b) == 0:
            return len(ref_boxes), len(cand_boxes), float("inf")
        best = box_iou(a, b).argmax(1)
        worst = max(worst, float((a - b[best]).abs().max()))
    return len(ref_boxes), len(cand_boxes), worst


@dataclass
class ExportCheck:
    """What ``verify_export`` found. ``ok``: raw outputs and detections agree within the tolerances."""

    image: str
    max_box_diff: float      # raw decoded boxes, every anchor (px)
    max_score_diff: float    # raw class scores, every anchor
    detections_torch: int
    detections_export: int
    max_detection_box_diff: float
    latency_ms: float
    ok: bool
    problems: list[str] = field(default_factory=list)
    precision: str = "fp32"  # what the exported model ran in (openvino: the resolved precision hint)
    conf: float = 0.25       # the score threshold the detections were compared at
    nms: bool = False        # the file had NMS in the graph
    anchors: int = 0         # anchors x images the raw outputs were compared over
    top_score: float = 0.0   # the highest PyTorch score on the image (how much the image exercised the model)
    max_detection_score_diff: float = 0.0

    def summary(self) -> str:
        """One line: what was compared, on what, and how close."""
        return (f"decoded outputs over all {self.anchors} anchors: max |box diff| {self.max_box_diff:.2g} px, "
                f"max |score diff| {self.max_score_diff:.2g} (top score {self.top_score:.2f}); detections "
                f"{self.detections_export} vs {self.detections_torch} (conf {self.conf:g})")


# bf16 keeps 8 significant bits (relative error ~4e-3): boxes of a few hundred pixels move by a pixel or two and
# scores by ~1e-2, and detections near the threshold or in NMS ties may flip. The tolerances it is checked with:
# raw boxes within max(4 px, 1.5% of the input side), scores within 0.05, counts within 10%, matched at IoU >= 0.9.
BF16_BOX_TOL, BF16_BOX_FRACTION, BF16_SCORE_TOL, BF16_MIN_IOU, BF16_COUNT_FRACTION = 4.0, 0.015, 0.05, 0.9, 0.1


def verify_export(prepared: torch.nn.Module, path: str | os.PathLike, fmt: str, batch: np.ndarray, conf: float = 0.25,
                  iou: float = 0.45, runs: int = 10, box_tol: float = 1.0, score_tol: float = 1e-3,
                  description: str = "", precision: str = "fp32", threads: int | None = None,
                  max_det: int = 300) -> ExportCheck:
    """Run ``prepared`` (the fused model that was exported) and the file at ``path`` (``fmt``: a format of
    ``ghostdet.export.formats``) on ``batch``; compare raw decoded outputs over every anchor, then detections; time
    the exported model (median of ``runs``).

    ``precision`` is the run-time hint for runtimes that take one (OpenVINO: fp32, bf16 or auto); bf16 is checked with
    the looser ``BF16_*`` tolerances. A file with NMS in the graph: pass the ``conf``, ``iou`` and ``max_det`` it was
    exported with (the detections' reference is ``postprocess`` at those)."""
    from ghostdet.models.postprocess import postprocess

    param = next(prepared.parameters())
    with torch.inference_mode():
        ref_boxes, ref_scores = prepared.decode(prepared(torch.from_numpy(batch).to(param.device, param.dtype)))
    ref_boxes, ref_scores = ref_boxes.float().cpu(), ref_scores.float().cpu()
    backend = _backend(path, fmt, param.device, precision, threads)
    outputs = backend(batch)  # also the warm-up of the timing below
    latency_ms = measure_latency(lambda: backend(batch), warmup=0, repeats=runs)["median"]
    hw = tuple(batch.shape[-2:])
    half, precision = param.dtype == torch.float16, getattr(backend, "precision", "fp32")
    if half:  # FP16 rounds boxes at large coordinates to ~0.5 px and scores to ~1e-3
        box_tol, score_tol = box_tol * 2, score_tol * 5
    if precision == "bf16":
        box_tol = max(box_tol, BF16_BOX_TOL, BF16_BOX_FRACTION * max(hw))
        score_tol = max(score_tol, BF16_SCORE_TOL)
    if backend.nms:  # the raw outputs are the NMS node's inputs: clipped boxes, each anchor's best score
        out_boxes, out_scores = nms_inputs(path, fmt, batch, precision, threads)
        ref_raw_boxes, ref_raw_scores = _nms_reference_inputs(ref_boxes, ref_scores, hw)
    else:
        out_boxes, out_scores = outputs
        ref_raw_boxes, ref_raw_scores = ref_boxes, ref_scores
    problems = []
    box_diff = float((ref_raw_boxes - out_boxes).abs().max())
    score_diff = float((ref_raw_scores - out_scores).abs().max())
    if not (box_diff <= box_tol):  # also NaN
        problems.append(f"raw boxes differ by up to {box_diff:.3g} px")
    if not (score_diff <= score_tol):
        problems.append(f"raw scores differ by up to {score_diff:.3g}")
    check = ExportCheck(description, box_diff, score_diff, 0, 0, 0.0, latency_ms, True, problems, precision, conf,
                        nms=backend.nms, anchors=int(ref_boxes.shape[0] * ref_boxes.shape[1]),
                        top_score=float(ref_scores.max()) if ref_scores.numel() else 0.0)
    if backend.nms:
        _compare_nms(check, postprocess(ref_boxes, ref_scores, conf, iou, max_det, clip_shape=hw), outputs, half,
                     box_tol, score_tol)
    else:
        _compare_detections(check, postprocess(ref_boxes, ref_scores, conf, iou, clip_shape=hw)[0],
                            postprocess(out_boxes, out_scores, conf, iou, clip_shape=hw)[0], half, box_tol)
    check.ok = not check.problems
    return check


def _compare_detections(check: ExportCheck, ref: dict, got: dict, half: bool, box_tol: float) -> None:
    n_ref, n_got, det_diff = compare_detections(ref, got)
    check.detections_torch, check.detections_export, check.max_detection_box_diff = n_ref, n_got, det_diff
    count_tol = int(0.02 * n_ref) + int(half)
    if check.precision == "bf16":  # every reference detection needs a same-class partner at IoU >= 0.9
        count_tol = max(count_tol, int(BF16_COUNT_FRACTION * n_ref), 1)
        matched = match_fraction(ref, got, BF16_MIN_IOU)
        if n_ref and matched < 1 - BF16_COUNT_FRACTION:
            check.problems.append(f"only {matched:.0%} of the detections have a partner at IoU >= {BF16_MIN_IOU}")
    elif n_ref and det_diff > box_tol:
        check.problems.append(f"matched detection boxes differ by up to {det_diff:.3g} px")
    if abs(n_ref - n_got) > count_tol:
        check.problems.append(f"{n_got} detections instead of {n_ref}")


def _compare_nms(check: ExportCheck, references: list[dict], outputs, half: bool, box_tol: float,
                 score_tol: float) -> None:
    """The NMS graph's detections against ``postprocess`` of the PyTorch outputs, every image of the batch: the same
    count (within 2%), matched boxes within ``box_tol`` px, the k best scores within ``score_tol``."""
    from ghostdet.inference.predictor import nms_outputs_to_detections

    worst_box = worst_score = 0.0
    bf16 = check.precision == "bf16"
    for index, (ref, got) in enumerate(zip(references, nms_outputs_to_detections(outputs, len(references)))):
        n_ref, n_got, det_diff = compare_detections(ref, got)
        check.detections_torch += n_ref
        check.detections_export += n_got
        where = f"image {index}: " if len(references) > 1 else ""
        count_tol = int(0.02 * n_ref) + int(half)
        if bf16:
            count_tol = max(count_tol, int(BF16_COUNT_FRACTION * n_ref), 1)
            matched = match_fraction(ref, got, BF16_MIN_IOU)
            if n_ref and matched < 1 - BF16_COUNT_FRACTION:
                check.problems.append(f"{where}only {matched:.0%} of the detections have a partner at IoU >= {BF16_MIN_IOU}")
        if n_ref and n_got and (not bf16 or det_diff != float("inf")):
            worst_box = max(worst_box, det_diff)
        if abs(n_ref - n_got) > count_tol:
            check.problems.append(f"{where}{n_got} detections instead of {n_ref}")
        k = min(n_ref, n_got)
        if k:  # both sorted by score: the k best scores must agree
            worst_score = max(worst_score, float((ref["scores"][:k] - got["scores"][:k]).abs().max()))
    check.max_detection_box_diff, check.max_detection_score_diff = worst_box, worst_score
    if not bf16 and worst_box > box_tol:
        check.problems.append(f"matched detection boxes differ by up to {worst_box:.3g} px")
    if worst_score > score_tol:
        check.problems.append(f"detection scores differ by up to {worst_score:.3g}")


def _nms_reference_inputs(boxes: torch.Tensor, scores: torch.Tensor, hw) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``EndToEndNMS`` feeds its NMS, reduced to what does not depend on tie-breaking: boxes clipped to the input
    and each anchor's best score (which class holds it is checked by the detections)."""
    return clip_boxes_to_image(boxes, hw), scores.max(-1).values


def nms_inputs(path, fmt: str, batch: np.ndarray, precision: str = "fp32", threads: int | None = None):
    """``(boxes B x N x 4, best scores B x N)`` entering the NonMaxSuppression of an NMS graph (its B x C x N scores hold
    each anchor's best class only: their max over C), read by adding them as outputs of an in-memory copy of the file
    (ONNX Runtime or OpenVINO)."""
    if fmt == "onnx":
        import onnx

        from ghostdet.inference.backends.onnxruntime import onnx_session

        proto = onnx.load(str(path), load_external_data=False)
        node = next((n for n in proto.graph.node if n.op_type == "NonMaxSuppression"), None)
        if node is None:
            raise ExportMismatchError(f"{path}: an NMS graph without a NonMaxSuppression node; re-export it")
        taps = list(node.input[:2])
        proto.graph.output.extend([onnx.helper.make_empty_tensor_value_info(name) for name in taps])
        session = onnx_session(proto.SerializeToString(), where=str(path), threads=threads)
        feed = batch.astype(np.float16 if "float16" in session.get_inputs()[0].type else np.float32)
        boxes, scores = session.run(taps, {session.get_inputs()[0].name: feed})
    elif fmt == "openvino":
        from ghostdet.inference.backends.openvino import compile_model, read_ir

        model, xml = read_ir(path)
        op = next((o for o in model.get_ordered_ops() if o.get_type_name() == "NonMaxSuppression"), None)
        if op is None:
            raise ExportMismatchError(f"{xml}: an NMS graph without a NonMaxSuppression node; re-export it")
        model.add_outputs([op.input_value(0), op.input_value(1)])
        compiled, _, _ = compile_model(model, precision, threads, where=str(xml))
        result = compiled.create_infer_request().infer({0: np.ascontiguousarray(batch, np.float32)})
        boxes, scores = (np.array(result[compiled.outputs[i]]) for i in (-2, -1))
    else:
        raise ExportMismatchError(f"{path}: {fmt} has no NMS graphs to check")
    return torch.from_numpy(np.asarray(boxes, np.float32)), torch.from_numpy(np.asarray(scores, np.float32)).amax(1)


def match_fraction(reference: dict, candidate: dict, min_iou: float = 0.9) -> float:
    """Share of ``reference`` detections with a same-class ``candidate`` box at IoU >= ``min_iou`` (1.0 when none)."""
    ref_boxes = torch.as_tensor(np.asarray(reference["boxes"]), dtype=torch.float32).reshape(-1, 4)
    ref_labels = torch.as_tensor(np.asarray(reference["labels"]))
    cand_boxes = torch.as_tensor(np.asarray(candidate["boxes"]), dtype=torch.float32).reshape(-1, 4)
    cand_labels = torch.as_tensor(np.asarray(candidate["labels"]))
    if len(ref_boxes) == 0:
        return 1.0
    if len(cand_boxes) == 0:
        return 0.0
    ious = box_iou(ref_boxes, cand_boxes)
    ious[ref_labels[:, None] != cand_labels[None, :]] = 0
    return float((ious.max(1).values >= min_iou).float().mean())


def _backend(path, fmt: str, device: torch.device, precision: str | None = "fp32", threads: int | None = None):
    """The backend of the exported file (the one Detector would use), at ``precision`` where the runtime takes a hint."""
    from ghostdet.export.formats import get_format
    from ghostdet.inference.backends import load_backend

    row = get_format(fmt)
    return load_backend(path, fmt, device=str(device),
                        precision=precision if row.hints else None, threads=threads)


def file_size_mb(path: str | os.PathLike) -> float:
    return Path(path).stat().st_size / 1e6


__all__: Sequence[str] = ["ExportCheck", "check_image", "compare_detections", "match_fraction", "nms_inputs",
                          "synthetic_scene", "verify_export", "file_size_mb"]
