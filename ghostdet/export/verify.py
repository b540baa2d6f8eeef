"""Checks an exported file against the PyTorch model it came from, on the same image, before anyone ships it.

Two levels: raw outputs (largest box difference in pixels, largest score difference) and detections after
score threshold + NMS (count and box agreement, the criterion users care about: same count within 2%,
matched boxes within 1 pixel). An export with NMS in the graph has only detections: they are checked against
``ghostdet.models.postprocess.postprocess`` of the PyTorch outputs at the graph's conf/iou/max_det, image by image.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou

from ghostdet.utils.timing import measure_latency

log = logging.getLogger(__name__)


def check_image(source: str | os.PathLike | None, imgsz: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A 1 x 3 x H x W float 0-1 letterboxed batch from ``source`` (an image file), or a synthetic scene
    (coloured shapes on a gradient, deterministic) when None. Returns ``(batch, description)``."""
    from ghostdet.data.image_io import read_image, to_chw_batch
    from ghostdet.data.letterbox import letterbox

    if source is not None:
        image, what = read_image(source), str(source)
    else:
        image, what = synthetic_scene(), "a synthetic image (pass --source IMAGE to check on a real photo)"
    padded, _, _ = letterbox(image, imgsz)
    return to_chw_batch([padded]), what


def synthetic_scene(height: int = 480, width: int = 640) -> np.ndarray:
    """An RGB uint8 test scene with edges and colours (pure noise would leave every score near zero)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xs / width * 255, ys / height * 255, np.full_like(xs, 128)], -1).astype(np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        w, h = int(rng.integers(30, 200)), int(rng.integers(30, 200))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(image, (x + w // 2, y + h // 2), min(w, h) // 2, color, -1)
    return image


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
    """What ``verify_export`` found. ``ok``: outputs and detections agree within the tolerances."""

    image: str
    max_box_diff: float
    max_score_diff: float
    detections_torch: int
    detections_export: int
    max_detection_box_diff: float
    latency_ms: float
    ok: bool
    problems: list[str] = field(default_factory=list)
    precision: str = "fp32"  # what the exported model ran in (openvino: the resolved precision hint)
    conf: float = 0.25       # the score threshold the detections were compared at
    nms: bool = False        # the file had NMS in the graph (box/score diffs are then over matched detections)


# bf16 keeps 8 significant bits (relative error ~4e-3): boxes of a few hundred pixels move by a pixel or two and
# scores by ~1e-2, and detections near the threshold or in NMS ties may flip. The tolerances it is checked with:
# raw boxes within max(4 px, 1.5% of the input side), scores within 0.05, counts within 10%, matched at IoU >= 0.9.
BF16_BOX_TOL, BF16_BOX_FRACTION, BF16_SCORE_TOL, BF16_MIN_IOU, BF16_COUNT_FRACTION = 4.0, 0.015, 0.05, 0.9, 0.1


def verify_export(prepared: torch.nn.Module, path: str | os.PathLike, fmt: str, batch: np.ndarray, conf: float = 0.25,
                  iou: float = 0.45, runs: int = 10, box_tol: float = 1.0, score_tol: float = 1e-3,
                  description: str = "", precision: str = "fp32", threads: int | None = None,
                  max_det: int = 300) -> ExportCheck:
    """Run ``prepared`` (the fused model that was exported) and the file at ``path`` (``fmt`` onnx, torchscript or
    openvino) on ``batch``; compare outputs and detections; time the exported model (median of ``runs``).

    ``precision`` (openvino only: fp32, bf16 or auto) is the inference precision hint the file is run with; bf16 is
    checked with the looser ``BF16_*`` tolerances (raw boxes/scores, and detections matched at IoU >= 0.9).
    A file with NMS in the graph is compared on detections only: pass the ``conf``, ``iou`` and ``max_det`` it was
    exported with (the reference is ``postprocess`` at those)."""
    from ghostdet.models.postprocess import postprocess

    param = next(prepared.parameters())
    with torch.inference_mode():
        ref_boxes, ref_scores = prepared.decode(prepared(torch.from_numpy(batch).to(param.device, param.dtype)))
    ref_boxes, ref_scores = ref_boxes.float().cpu(), ref_scores.float().cpu()
    run, precision, nms = _runner(path, fmt, param.dtype, param.device, precision, threads)
    outputs = run(batch)  # also the warm-up of the timing below
    latency_ms = measure_latency(lambda: run(batch), warmup=0, repeats=runs)["median"]
    if nms:
        return _verify_nms(ref_boxes, ref_scores, outputs, tuple(batch.shape[-2:]), conf, iou, max_det, box_tol,
                           score_tol, description, precision, latency_ms, half=param.dtype == torch.float16)
    out_boxes, out_scores = outputs
    box_diff = float((ref_boxes - out_boxes).abs().max())
    score_diff = float((ref_scores - out_scores).abs().max())
    hw = tuple(batch.shape[-2:])
    ref = postprocess(ref_boxes, ref_scores, conf, iou, clip_shape=hw)[0]
    got = postprocess(out_boxes, out_scores, conf, iou, clip_shape=hw)[0]
    n_ref, n_got, det_diff = compare_detections(ref, got)
    count_tol = int(0.02 * n_ref)
    if param.dtype == torch.float16:  # FP16 rounds boxes at large coordinates to ~0.5 px and scores to ~1e-3
        box_tol, score_tol, count_tol = box_tol * 2, score_tol * 5, count_tol + 1
    min_iou = None
    if precision == "bf16":
        box_tol = max(box_tol, BF16_BOX_TOL, BF16_BOX_FRACTION * max(batch.shape[-2:]))
        score_tol = max(score_tol, BF16_SCORE_TOL)
        count_tol, min_iou = max(count_tol, int(BF16_COUNT_FRACTION * n_ref), 1), BF16_MIN_IOU
    problems = []
    if box_diff > box_tol:
        problems.append(f"raw boxes differ by up to {box_diff:.3g} px")
    if score_diff > score_tol:
        problems.append(f"raw scores differ by up to {score_diff:.3g}")
    if abs(n_ref - n_got) > count_tol:
        problems.append(f"{n_got} detections instead of {n_ref}")
    if min_iou is not None:  # bf16: every reference detection needs a same-class partner at IoU >= min_iou
        matched = match_fraction(ref, got, min_iou)
        if n_ref and matched < 1 - BF16_COUNT_FRACTION:
            problems.append(f"only {matched:.0%} of the detections have a partner at IoU >= {min_iou}")
    elif n_ref and det_diff > box_tol:
        problems.append(f"matched detection boxes differ by up to {det_diff:.3g} px")
    return ExportCheck(description, box_diff, score_diff, n_ref, n_got, det_diff, latency_ms, not problems, problems,
                       precision, conf)


def _verify_nms(ref_boxes: torch.Tensor, ref_scores: torch.Tensor, outputs, hw: tuple[int, int], conf: float, iou: float,
                max_det: int, box_tol: float, score_tol: float, description: str, precision: str, latency_ms: float,
                half: bool = False) -> ExportCheck:
    """The NMS graph's detections (``outputs``) against ``postprocess`` of the PyTorch outputs, every image of the
    batch: the same count (within 2%), matched boxes within ``box_tol`` px, scores within ``score_tol``."""
    from ghostdet.inference.predictor import nms_outputs_to_detections
    from ghostdet.models.postprocess import postprocess

    problems: list[str] = []
    n_ref_total = n_got_total = 0
    worst_box = worst_score = 0.0
    if half:  # FP16 rounds boxes at large coordinates to ~0.5 px and scores to ~1e-3
        box_tol, score_tol = box_tol * 2, score_tol * 5
    references = postprocess(ref_boxes, ref_scores, conf, iou, max_det, clip_shape=hw)
    candidates = nms_outputs_to_detections(outputs, len(references))
    for index, (ref, got) in enumerate(zip(references, candidates)):
        n_ref, n_got, det_diff = compare_detections(ref, got)
        n_ref_total, n_got_total = n_ref_total + n_ref, n_got_total + n_got
        where = f"image {index}: " if len(references) > 1 else ""
        count_tol = int(0.02 * n_ref) + int(half)
        if precision == "bf16":
            count_tol = max(count_tol, int(BF16_COUNT_FRACTION * n_ref), 1)
            matched = match_fraction(ref, got, BF16_MIN_IOU)
            if n_ref and matched < 1 - BF16_COUNT_FRACTION:
                problems.append(f"{where}only {matched:.0%} of the detections have a partner at IoU >= {BF16_MIN_IOU}")
        if n_ref and n_got and (precision != "bf16" or det_diff != float("inf")):
            worst_box = max(worst_box, det_diff)
        if abs(n_ref - n_got) > count_tol:
            problems.append(f"{where}{n_got} detections instead of {n_ref}")
        k = min(n_ref, n_got)
        if k:  # both sorted by score: the k best scores must agree
            worst_score = max(worst_score, float((ref["scores"][:k] - got["scores"][:k]).abs().max()))
    if precision != "bf16" and worst_box > box_tol:
        problems.append(f"matched detection boxes differ by up to {worst_box:.3g} px")
    if worst_score > (max(score_tol, BF16_SCORE_TOL) if precision == "bf16" else score_tol):
        problems.append(f"detection scores differ by up to {worst_score:.3g}")
    return ExportCheck(description, worst_box, worst_score, n_ref_total, n_got_total, worst_box, latency_ms,
                       not problems, problems, precision, conf, nms=True)


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


def _runner(path, fmt: str, dtype: torch.dtype, device: torch.device, precision: str = "fp32", threads: int | None = None):
    """``(run, precision, nms)``: a callable ``batch (numpy) -> (boxes, scores)`` float32 CPU tensors for the exported
    file (an NMS graph: its four outputs), the precision it runs in, and whether NMS is in the graph."""
    if fmt == "onnx":
        from ghostdet.inference.predictor import OnnxBackend, onnx_session

        backend = OnnxBackend(onnx_session(path, "cuda" if device.type == "cuda" else "cpu", threads), Path(path))
        return backend, "fp16" if backend.input_dtype == np.float16 else "fp32", backend.nms
    if fmt == "torchscript":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(str(Path(path)), map_location=device)

        def run(batch):
            with torch.inference_mode():
                boxes, scores = module(torch.from_numpy(batch).to(device, dtype))
            return boxes.float().cpu(), scores.float().cpu()

        return run, "fp16" if dtype == torch.float16 else "fp32", False
    if fmt == "openvino":
        from ghostdet.inference.openvino import load_backend

        backend, _ = load_backend(path, precision=precision, threads=threads)
        return backend, backend.precision, backend.nms
    raise ValueError(f"unknown export format {fmt!r}")


def file_size_mb(path: str | os.PathLike) -> float:
    return Path(path).stat().st_size / 1e6


__all__: Sequence[str] = ["ExportCheck", "check_image", "compare_detections", "match_fraction", "synthetic_scene",
                          "verify_export", "file_size_mb"]
