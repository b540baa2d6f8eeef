"""Precision, recall and F1 at a chosen confidence, their curves against confidence, the PR curve at IoU 0.5 and the
confusion matrix with a background row and column: ultralytics' val outputs, from one validation pass.

Feed it what the evaluation loop already has, per batch: the detections (``predict``/``postprocess`` dicts, boxes
xyxy in input pixels) and the batch targets ``(N, 6) = [batch_idx, class, x1, y1, x2, y2]`` in the same pixels
(IoU does not change under the letterbox, so original pixels work as well if both sides use them)::

    stats = PRMetrics(num_classes, names)
    for images, targets, metas, ignore in loader:
        stats.add_batch(model.predict(images, conf=0.001), targets, ignore)
    result = stats.compute(conf=0.25)          # result.precision / .recall / .f1, curves, result.confusion

Rules (each chosen so a number can be checked by hand):
- **Matching for P/R** (IoU >= 0.5, per class): detections in descending score take the unmatched ground-truth box
  of their class with the highest IoU, as COCOeval does. So whether a detection is a true positive depends only on
  the detections scored above it, and P/R at a confidence read off the curves equal a direct count at that
  confidence. (ultralytics pairs by IoU first; the two differ only when boxes compete for one object.)
- **Ignore regions** (COCO crowd, VOC difficult): a detection left unmatched that covers one (intersection over the
  detection's area >= 0.5, COCO's crowd rule) is neither a true nor a false positive.
- **P, R, F1 at a confidence**: detections with score >= conf. Per class P = TP / detections (0 when there are none,
  scikit-learn's ``zero_division=0``, so a model that finds nothing does not score P = 1), R = TP / ground-truth
  boxes, F1 = 2PR / (P + R) (0 when both are 0). The overall figures are the means over the classes that have
  ground truth (ultralytics' mp, mr; F1 is the mean of the per-class F1). In the precision *curve* a class has no
  value (NaN) above its highest score, so curves end there instead of dropping to 0 (ultralytics draws 1 there).
- **PR curve**: precision envelope (the best precision at this recall or higher) on a 101-point recall grid, as
  COCO; ``ap50`` is its mean (COCO's AP50 up to COCO's 100-detection cap and area ranges).
- **Confusion matrix**: ultralytics' ``ConfusionMatrix`` exactly: detections with score > 0.25, paired with ground
  truth of any class at IoU > 0.45 (highest IoU first, one to one); ``matrix[predicted, true]`` with index
  ``num_classes`` the background: its row counts missed objects, its column false detections.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torchvision.ops import box_area, box_iou

from ghostdet.utils.errors import ConfigError

CONF_POINTS = 1000  # confidence grid of the P/R/F1 curves (ultralytics' 1000 points)
RECALL_POINTS = 101  # recall grid of the PR curve (COCO's 101 points)
CSV_KEYS = ("precision", "recall", "F1")  # summary() keys: the results.csv columns


def _as_tensor(x, shape_tail: tuple = (), dtype=torch.float32) -> torch.Tensor:
    t = torch.as_tensor(x if x is not None else np.zeros((0, *shape_tail)), dtype=dtype).detach().cpu()
    return t.reshape(-1, *shape_tail) if shape_tail else t.reshape(-1)


def _intersection_over_first(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) intersection area / area of each ``a`` box (COCO's IoU against crowd regions)."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    return inter / box_area(a).clamp(min=1e-9)[:, None]


@dataclass
class PRResult:
    """What ``PRMetrics.compute`` returns. Per-class arrays have ``num_classes`` entries; ``evaluated`` marks the
    classes with ground truth, over which the overall means are taken."""

    names: list[str]
    conf: float                    # the confidence of precision/recall/f1
    precision: float
    recall: float
    f1: float
    per_class_precision: np.ndarray
    per_class_recall: np.ndarray
    per_class_f1: np.ndarray
    gt_counts: np.ndarray          # ground-truth boxes per class
    evaluated: np.ndarray          # bool: classes with ground truth
    thresholds: np.ndarray         # (CONF_POINTS,) confidences of the curves
    p_curve: np.ndarray            # (C, CONF_POINTS); NaN where a class has no detection at that confidence
    r_curve: np.ndarray
    f1_curve: np.ndarray
    recall_grid: np.ndarray        # (RECALL_POINTS,)
    pr_curve: np.ndarray           # (C, RECALL_POINTS) precision envelope at IoU 0.5
    ap50: np.ndarray               # (C,) mean of pr_curve rows
    confusion: np.ndarray          # (C + 1, C + 1) int, [predicted, true], index C = background
    best_f1_conf: float = 0.0      # the confidence where the mean F1 curve peaks
    iou: float = 0.5               # IoU of a true positive
    cm_conf: float = 0.25          # the confusion matrix's score and IoU thresholds
    cm_iou: float = 0.45

    def summary(self) -> dict[str, float]:
        """``{"precision", "recall", "F1"}`` at ``conf``: the results.csv columns."""
        return dict(zip(CSV_KEYS, (self.precision, self.recall, self.f1)))

    def per_class(self) -> dict[str, dict[str, float]]:
        """Per evaluated class: ``{"instances", "precision", "recall", "F1", "AP50"}``."""
        return {self.names[c]: {"instances": int(self.gt_counts[c]), "precision": float(self.per_class_precision[c]),
                                "recall": float(self.per_class_recall[c]), "F1": float(self.per_class_f1[c]),
                                "AP50": float(self.ap50[c])}
                for c in np.flatnonzero(self.evaluated)}

    def normalized_confusion(self) -> np.ndarray:
        """Each true-class column divided by its total (ultralytics' normalised plot): where its boxes went."""
        totals = self.confusion.sum(0, keepdims=True).astype(np.float64)
        return np.divide(self.confusion, totals, out=np.zeros(self.confusion.shape), where=totals > 0)


class PRMetrics:
    """Accumulates matched detections over a validation pass; ``compute(conf)`` gives a ``PRResult``."""

    def __init__(self, num_classes: int, names: Sequence[str] | None = None, iou: float = 0.5,
                 cm_conf: float = 0.25, cm_iou: float = 0.45):
        self.num_classes = int(num_classes)
        self.names = list(names) if names is not None else [str(i) for i in range(self.num_classes)]
        if len(self.names) != self.num_classes:
            raise ConfigError(f"{len(self.names)} class names for {self.num_classes} classes")
        self.iou, self.cm_conf, self.cm_iou = float(iou), float(cm_conf), float(cm_iou)
        self._scores: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._tp: list[np.ndarray] = []
        self.gt_counts = np.zeros(self.num_classes, np.int64)
        self.confusion = np.zeros((self.num_classes + 1, self.num_classes + 1), np.int64)

    # -------------------------------------------------------------------------------------------- input
    def add_batch(self, preds: Sequence[dict], targets, ignore=None) -> None:
        """One loader batch: ``preds`` per image ({boxes, scores, labels}), ``targets`` (N, 6) [batch_idx, class,
        x1, y1, x2, y2], ``ignore`` (K, 5) [batch_idx, x1, y1, x2, y2] or None; all in the same pixels."""
        targets = _as_tensor(targets, (6,))
        ignore = _as_tensor(ignore, (5,))
        for i, pred in enumerate(preds):
            gt = targets[targets[:, 0] == i]
            self.add(pred["boxes"], pred["scores"], pred["labels"], gt[:, 2:], gt[:, 1],
                     ignore[ignore[:, 0] == i, 1:])

    def add(self, boxes, scores, labels, gt_boxes, gt_labels, ignore_boxes=None) -> None:
        """One image: detections (xyxy, score, class) and ground truth (xyxy, class); optional ignore regions."""
        boxes, scores, labels = _as_tensor(boxes, (4,)), _as_tensor(scores), _as_tensor(labels, dtype=torch.int64)
        gt_boxes, gt_labels = _as_tensor(gt_boxes, (4,)), _as_tensor(gt_labels, dtype=torch.int64)
        ignore_boxes = _as_tensor(ignore_boxes, (4,))
        if not len(boxes) == len(scores) == len(labels) or len(gt_boxes) != len(gt_labels):
            raise ValueError("boxes, scores and labels (and gt boxes and labels) must have the same length")
        for what, labs in (("detection", labels), ("ground-truth box", gt_labels)):
            if len(labs) and (labs.min() < 0 or labs.max() >= self.num_classes):
                bad = int(labs.max() if labs.max() >= self.num_classes else labs.min())
                raise ConfigError(f"a {what} of class {bad} outside 0..{self.num_classes - 1}: the model and the "
                                  f"data do not describe the same classes")
        self.gt_counts += np.bincount(gt_labels.numpy(), minlength=self.num_classes)
        tp, kept = self._match(boxes, scores, labels, gt_boxes, gt_labels, ignore_boxes)
        self._scores.append(scores.numpy()[kept])
        self._labels.append(labels.numpy()[kept])
        self._tp.append(tp[kept])
        self._confusion(boxes, scores, labels, gt_boxes, gt_labels, ignore_boxes)

    def _match(self, boxes, scores, labels, gt_boxes, gt_labels, ignore_boxes):
        """Per detection: true positive?, and kept? (False for an unmatched one inside an ignore region)."""
        tp = np.zeros(len(boxes), bool)
        kept = np.ones(len(boxes), bool)
        if not len(boxes):
            return tp, kept
        order = torch.argsort(scores, descending=True, stable=True)
        ious = box_iou(boxes, gt_boxes).numpy() if len(gt_boxes) else np.zeros((len(boxes), 0))
        same = labels.numpy()[:, None] == gt_labels.numpy()[None, :]
        ious = np.where(same, ious, -1.0)
        taken = np.zeros(len(gt_boxes), bool)
        for d in order.tolist():
            candidates = np.where(taken, -1.0, ious[d])
            if len(candidates) and candidates.max() >= self.iou:
                g = int(candidates.argmax())
                taken[g], tp[d] = True, True
        if len(ignore_boxes):
            covered = (_intersection_over_first(boxes, ignore_boxes) >= self.iou).any(1).numpy()
            kept = tp | ~covered
        return tp, kept

    def _confusion(self, boxes, scores, labels, gt_boxes, gt_labels, ignore_boxes) -> None:
        """ultralytics' ConfusionMatrix.process_batch: class-agnostic one-to-one pairs by IoU."""
        background = self.num_classes
        keep = scores > self.cm_conf
        boxes, labels = boxes[keep], labels[keep].numpy()
        gl = gt_labels.numpy()
        if not len(gt_boxes) or not len(boxes):
            np.add.at(self.confusion, (np.full(len(gl), background), gl), 1)
            unmatched = np.ones(len(boxes), bool)
        else:
            iou = box_iou(gt_boxes, boxes).numpy()
            g, d = np.nonzero(iou > self.cm_iou)
            pairs = np.stack([g, d, iou[g, d]], 1)
            pairs = pairs[np.argsort(-pairs[:, 2], kind="stable")]
            pairs = pairs[np.unique(pairs[:, 1], return_index=True)[1]]  # each detection once, its best IoU
            pairs = pairs[np.argsort(-pairs[:, 2], kind="stable")]
            pairs = pairs[np.unique(pairs[:, 0], return_index=True)[1]]  # each object once
            g, d = pairs[:, 0].astype(int), pairs[:, 1].astype(int)
            predicted = np.full(len(gl), background)
            predicted[g] = labels[d]
            np.add.at(self.confusion, (predicted, gl), 1)
            unmatched = np.ones(len(boxes), bool)
            unmatched[d] = False
        if len(ignore_boxes) and unmatched.any():
            unmatched &= ~(_intersection_over_first(boxes, ignore_boxes) >= self.iou).any(1).numpy()
        np.add.at(self.confusion, (labels[unmatched], np.full(int(unmatched.sum()), background)), 1)

    # -------------------------------------------------------------------------------------------- output
    def compute(self, conf: float = 0.25) -> PRResult:
        """P, R and F1 at ``conf`` (means over classes with ground truth), the curves and the confusion matrix."""
        nc = self.num_classes
        scores = np.concatenate(self._scores) if self._scores else np.zeros(0)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)
        tp = np.concatenate(self._tp) if self._tp else np.zeros(0, bool)
        thresholds = np.linspace(0.0, 1.0, CONF_POINTS)
        recall_grid = np.linspace(0.0, 1.0, RECALL_POINTS)
        p_curve, r_curve = np.zeros((nc, CONF_POINTS)), np.zeros((nc, CONF_POINTS))
        pr_curve = np.zeros((nc, RECALL_POINTS))
        at = np.zeros((3, nc))  # P, R, F1 at conf
        for c in range(nc):
            mine = labels == c
            order = np.argsort(-scores[mine], kind="stable")
            s, hits = scores[mine][order], tp[mine][order]
            n_gt = self.gt_counts[c]
            cum_tp = np.concatenate([[0], np.cumsum(hits)])
            # detections at or above each threshold: s is descending, so count via the ascending reverse
            # (in float32, the scores' type: a 0.9 score passes conf 0.9, as in torch's own comparisons)
            query = np.append(thresholds, conf).astype(np.float32)
            counts = len(s) - np.searchsorted(s[::-1], query, side="left")
            found = cum_tp[counts]
            precision = np.divide(found, counts, out=np.full(len(counts), np.nan), where=counts > 0)
            recall = found / n_gt if n_gt else np.zeros(len(counts))
            p_curve[c], r_curve[c] = precision[:-1], recall[:-1]
            at[0, c], at[1, c] = np.nan_to_num(precision[-1]), recall[-1]  # no detection: precision 0
            if n_gt and len(s):
                ranked_p = cum_tp[1:] / np.arange(1, len(s) + 1)
                ranked_r = cum_tp[1:] / n_gt
                envelope = np.maximum.accumulate(ranked_p[::-1])[::-1]
                idx = np.searchsorted(ranked_r, recall_grid, side="left")
                pr_curve[c] = np.where(idx < len(s), envelope[np.minimum(idx, len(s) - 1)], 0.0)
        f1_curve = _f1(np.nan_to_num(p_curve), r_curve)
        at[2] = _f1(at[0], at[1])
        evaluated = self.gt_counts > 0
        mean = [float(at[k, evaluated].mean()) if evaluated.any() else 0.0 for k in range(3)]
        best = float(thresholds[f1_curve[evaluated].mean(0).argmax()]) if evaluated.any() else 0.0
        return PRResult(names=self.names, conf=float(conf), precision=mean[0], recall=mean[1], f1=mean[2],
                        per_class_precision=at[0], per_class_recall=at[1], per_class_f1=at[2],
                        gt_counts=self.gt_counts.copy(), evaluated=evaluated, thresholds=thresholds,
                        p_curve=p_curve, r_curve=r_curve, f1_curve=f1_curve, recall_grid=recall_grid,
                        pr_curve=pr_curve, ap50=pr_curve.mean(1), confusion=self.confusion.copy(), best_f1_conf=best,
                        iou=self.iou, cm_conf=self.cm_conf, cm_iou=self.cm_iou)


def _f1(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.divide(2 * p * r, p + r, out=np.zeros(np.shape(p)), where=(p + r) > 0)


__all__ = ["CONF_POINTS", "CSV_KEYS", "PRMetrics", "PRResult", "RECALL_POINTS"]
