"""The one model-evaluation loop, shared by the trainer (validation each epoch) and tools/eval.py."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ghostdet.eval.coco_evaluator import COCOEvaluator, resolve_category_ids
from ghostdet.eval.convert import predictions_to_coco

LOGGER = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What ``evaluate_model`` returns.

    metrics: ``COCOEvaluator.evaluate`` output (AP, AP50, ..., ARl, per_class, per_class_ap50).
    speed: milliseconds per image: ``preprocess`` (waiting for the loader + host-to-device copy),
        ``inference`` (forward pass + box decoding), ``postprocess`` (NMS + conversion to COCO results).
    detections: the COCO results list (original-image pixels, dataset category ids), ready for json.dump.
    precision: (101, K) precision at IoU 0.5 for the PR curve (``plot_pr_curve``); names: its K class names.
    """

    metrics: dict
    speed: dict
    detections: list = field(repr=False)
    precision: np.ndarray | None = field(default=None, repr=False)
    names: list = field(default_factory=list, repr=False)
    num_images: int = 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _split_predict(model):
    """(forward, decode+NMS) when the model exposes decode() and the shared postprocess exists, else None.

    Splitting lets the loop time inference and NMS separately; models without ``decode`` are timed
    as one ``predict`` call (reported as inference).
    """
    if not hasattr(model, "decode"):
        return None
    try:
        from ghostdet.models.postprocess import postprocess
    except ImportError:
        return None
    return postprocess


@torch.inference_mode()
def evaluate_model(
    model: torch.nn.Module,
    loader,
    coco_gt: Any,
    category_ids: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    max_det: int = 300,
    device: str | torch.device | None = None,
    backend: str = "pycocotools",
    multi_label: bool = True,
    progress: bool = True,
    on_batch=None,
) -> EvalResult:
    """Run ``model`` over ``loader`` and COCO-evaluate its detections against ``coco_gt``.

    Args:
        model: a detector with ``predict(images, conf, iou, max_det)``, or ``forward`` + ``decode`` (see
            docs/CONTRACTS.md).
        loader: yields ``(images, targets, metas[, ignore])`` batches (the val loader; only images and
            metas are used).
        coco_gt: ground truth in original pixels: a ``pycocotools.coco.COCO`` (``dataset.coco_gt()``),
            a COCO json path, or a ``COCOEvaluator`` (reused across epochs).
        category_ids: category id per class index (``dataset.category_ids``); ``None``: class i is the
            i-th ground-truth category in id order (see ``resolve_category_ids``).
        names: class names, only to check the model against the data (a mismatch is logged).
        conf, iou, max_det: detection settings; the defaults are the usual ones for mAP.
        device: where to run; default: the model's device.
        backend: ``pycocotools`` or ``faster-coco-eval`` (see ``COCOEvaluator``).
        multi_label: one candidate per (anchor, class) above ``conf`` before NMS, as ultralytics' val does
            (slightly higher mAP than best-class-only; same protocol as the figures users compare with).
            Used when the model has ``decode`` (GhostYOLO); other models are called through ``predict``.
        progress: show a tqdm bar.
        on_batch: called as ``on_batch(images, targets, preds, extra)`` after each batch (``extra``: the loader's
            items after ``metas``, e.g. ``(ignore,)``; ``preds`` in input pixels), e.g. for P/R/F1 during training.

    The model is left in eval mode: the trainer switches it back with ``model.train()``.
    """
    evaluator = coco_gt if isinstance(coco_gt, COCOEvaluator) else COCOEvaluator(coco_gt, backend=backend)
    num_classes = getattr(model, "num_classes", None)
    cat_ids = resolve_category_ids(evaluator.coco_gt, category_ids, num_classes)
    if names is not None and len(names) != len(cat_ids):
        LOGGER.warning("%d class names for %d categories: the model and the data may not describe the same classes",
                       len(names), len(cat_ids))
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval().to(device)
    postprocess = _split_predict(model)

    detections: list[dict] = []
    t_pre = t_inf = t_post = 0.0
    seen = 0
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc="eval", unit="batch", leave=False)
    t0 = time.perf_counter()
    for images, _targets, metas, *extra in batches:
        images = images.to(device, non_blocking=True).float()
        _sync(device)
        t1 = time.perf_counter()
        if postprocess is not None:
            boxes, scores = model.decode(model(images))
            _sync(device)
            t2 = time.perf_counter()
            preds = postprocess(boxes, scores, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label,
                                clip_shape=tuple(images.shape[-2:]))
        else:
            preds = model.predict(images, conf=conf, iou=iou, max_det=max_det)
            _sync(device)
            t2 = time.perf_counter()
        detections += predictions_to_coco(preds, metas, cat_ids)
        t3 = time.perf_counter()
        t_pre, t_inf, t_post = t_pre + (t1 - t0), t_inf + (t2 - t1), t_post + (t3 - t2)
        seen += len(images)
        if on_batch is not None:  # outside the timed stages
            on_batch(images, _targets, preds, extra)
        t0 = time.perf_counter()  # the next wait for the loader counts as pre-processing

    num_gt_images = len(evaluator.coco_gt.getImgIds())
    if seen != num_gt_images:
        LOGGER.warning("evaluated %d images but the ground truth has %d: COCO counts every ground-truth image, "
                       "so images the loader skipped count as missed", seen, num_gt_images)
    per_image = 1000.0 / max(seen, 1)
    speed = {"preprocess": t_pre * per_image, "inference": t_inf * per_image, "postprocess": t_post * per_image}
    LOGGER.info("speed: %.1f ms pre-process, %.1f ms inference, %.1f ms post-process per image (%d images)",
                speed["preprocess"], speed["inference"], speed["postprocess"], seen)
    metrics = evaluator.evaluate(detections)
    return EvalResult(metrics=metrics, speed=speed, detections=detections, precision=evaluator.precision,
                      names=evaluator.category_names, num_images=seen)
