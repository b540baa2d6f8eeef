"""Training loss of the YOLO head: task-aligned assignment (TOOD), BCE against IoU-aware targets,
CIoU box loss and distribution focal loss (DFL), normalised by the sum of target scores (as YOLOv8).

Everything is vectorised over the batch: targets are padded to ``B x M`` once, and the assigner works on
``B x M x A`` masks, with no Python loop over images or boxes.

Device syncs: the targets are checked and padded where they are (the trainer passes the loader's host tensors),
so only the sparse selections wait for the device, because their sizes depend on the data: the anchors inside a
box, the top-k candidates, the winners per anchor and the foreground anchors (four per batch).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import complete_box_iou_loss

from ghostdet.models.boxes import aligned_box_iou, bbox2dist, dist2bbox
from ghostdet.utils.errors import DataError


def pad_targets(targets: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1 + k) rows ``[batch_idx, ...]`` -> ``(B x M x k values, B x M valid mask)``, M = most rows of one image."""
    values = targets[:, 1:]
    if targets.shape[0] == 0:
        return values.new_zeros(batch_size, 0, values.shape[1]), torch.zeros(batch_size, 0, dtype=torch.bool,
                                                                               device=targets.device)
    batch_idx = targets[:, 0].long()
    if batch_idx.min() < 0 or batch_idx.max() >= batch_size:
        raise DataError(f"targets reference image {int(batch_idx.max())} but the batch has {batch_size} images; "
                        "the first target column must be the index of the image in the batch")
    order = batch_idx.argsort(stable=True)
    batch_idx, values = batch_idx[order], values[order]
    counts = torch.bincount(batch_idx, minlength=batch_size)
    starts = counts.cumsum(0) - counts
    slot = torch.arange(batch_idx.numel(), device=targets.device) - starts[batch_idx]
    padded = values.new_zeros(batch_size, int(counts.max()), values.shape[1])
    padded[batch_idx, slot] = values
    valid = torch.zeros(padded.shape[:2], dtype=torch.bool, device=targets.device)
    valid[batch_idx, slot] = True
    return padded, valid


def points_in_boxes(points: torch.Tensor, boxes: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """(A, 2) points, (B, M, 4) xyxy boxes -> (B, M, A) bool: point strictly inside box (by more than eps)."""
    x, y = points[:, 0], points[:, 1]
    x1, y1, x2, y2 = (c[..., None] for c in boxes.unbind(-1))
    return (x > x1 + eps) & (x < x2 - eps) & (y > y1 + eps) & (y < y2 - eps)


class TaskAlignedAssigner(nn.Module):
    """Task-aligned label assignment (Feng et al., TOOD, ICCV 2021), as used by YOLOv8/YOLO11.

    For each ground-truth box, the anchors whose centre lies inside it are ranked by
    ``score^alpha * IoU^beta`` (score of the box's class, IoU of the predicted box with it); the ``topk``
    best become positives. An anchor claimed by several boxes keeps the one it overlaps most. Positive
    targets are soft: the one-hot class scaled by the alignment metric, normalised per box so that its best
    anchor gets that anchor's IoU.
    """

    def __init__(self, num_classes: int, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        super().__init__()
        self.num_classes, self.topk, self.alpha, self.beta, self.eps = num_classes, topk, alpha, beta, eps

    @torch.no_grad()
    def forward(self, pred_scores: torch.Tensor, pred_boxes: torch.Tensor, anchor_points: torch.Tensor,
                gt_labels: torch.Tensor, gt_boxes: torch.Tensor, gt_valid: torch.Tensor):
        """
        Args:
            pred_scores: B x A x C sigmoid scores.  pred_boxes: B x A x 4 xyxy.  anchor_points: A x 2 (same units).
            gt_labels: B x M int64.  gt_boxes: B x M x 4 xyxy.  gt_valid: B x M bool (False = padding).
        Returns:
            ``(target_labels B x A, target_boxes B x A x 4, target_scores B x A x C, fg_mask B x A bool,
            target_gt_idx B x A)``. Scores of background anchors are zero; their labels/boxes/indices are
            placeholders (select with ``fg_mask``).
        """
        batch, num_anchors, num_classes = pred_scores.shape
        num_gt = gt_boxes.shape[1]
        if num_gt == 0:
            zeros = pred_boxes.new_zeros
            return (torch.zeros(batch, num_anchors, dtype=torch.long, device=pred_scores.device),
                    zeros(batch, num_anchors, 4), zeros(batch, num_anchors, num_classes),
                    torch.zeros(batch, num_anchors, dtype=torch.bool, device=pred_scores.device),
                    torch.zeros(batch, num_anchors, dtype=torch.long, device=pred_scores.device))

        in_gt = points_in_boxes(anchor_points, gt_boxes, self.eps) & gt_valid[..., None]  # B x M x A
        # the metric only where it matters (anchor inside the box); -1 elsewhere, so top-k never picks outside
        b_idx, m_idx, a_idx = in_gt.nonzero(as_tuple=True)
        iou_in = aligned_box_iou(gt_boxes[b_idx, m_idx], pred_boxes[b_idx, a_idx]).clamp(min=0)
        score_in = pred_scores[b_idx, a_idx, gt_labels[b_idx, m_idx]]
        align = pred_boxes.new_full((batch, num_gt, num_anchors), -1.0)
        align[b_idx, m_idx, a_idx] = score_in.pow(self.alpha) * iou_in.pow(self.beta)
        del in_gt, b_idx, m_idx, a_idx, iou_in, score_in

        # top-k anchors per box; from here on only the (few) candidates are handled, as flat lists
        topk_align, topk_idx = align.topk(min(self.topk, num_anchors), dim=-1)  # B x M x k
        pos_b, pos_m, pos_k = (topk_align >= 0).nonzero(as_tuple=True)
        pos_a = topk_idx[pos_b, pos_m, pos_k]
        pos_align = topk_align[pos_b, pos_m, pos_k]
        pos_iou = aligned_box_iou(gt_boxes[pos_b, pos_m], pred_boxes[pos_b, pos_a]).clamp(min=0)

        # one box per anchor: the one it overlaps most (the lowest box index on ties)
        anchor_key = pos_b * num_anchors + pos_a
        best_iou = pos_iou.new_zeros(batch * num_anchors).scatter_reduce(0, anchor_key, pos_iou, "amax",
                                                                         include_self=False)
        wins = pos_iou >= best_iou[anchor_key]
        first = torch.full((batch * num_anchors,), num_gt, dtype=torch.long, device=pos_m.device)
        first = first.scatter_reduce(0, anchor_key[wins], pos_m[wins], "amin")
        wins &= pos_m == first[anchor_key]
        keep = wins.nonzero(as_tuple=True)[0]  # one data-dependent size (a device sync) for the five selections
        pos_b, pos_m, anchor_key, pos_align, pos_iou = (t[keep] for t in (pos_b, pos_m, anchor_key, pos_align, pos_iou))

        # soft targets: alignment normalised per box so that its best anchor scores the box's best IoU
        gt_key = pos_b * num_gt + pos_m
        max_align = pos_align.new_zeros(batch * num_gt).scatter_reduce(0, gt_key, pos_align, "amax", include_self=False)
        max_iou = pos_iou.new_zeros(batch * num_gt).scatter_reduce(0, gt_key, pos_iou, "amax", include_self=False)
        pos_score = pos_align * max_iou[gt_key] / (max_align[gt_key] + self.eps)

        fg_mask = torch.zeros(batch * num_anchors, dtype=torch.bool, device=pred_scores.device)
        fg_mask[anchor_key] = True
        target_gt_idx = torch.zeros(batch * num_anchors, dtype=torch.long, device=pred_scores.device)
        target_gt_idx[anchor_key] = pos_m
        soft_score = pred_scores.new_zeros(batch * num_anchors)
        soft_score[anchor_key] = pos_score.to(soft_score.dtype)
        fg_mask, target_gt_idx = fg_mask.view(batch, num_anchors), target_gt_idx.view(batch, num_anchors)

        batch_arange = torch.arange(batch, device=gt_boxes.device)[:, None]
        target_labels = gt_labels[batch_arange, target_gt_idx].clamp(0, num_classes - 1)
        target_boxes = gt_boxes[batch_arange, target_gt_idx]
        target_scores = F.one_hot(target_labels, num_classes).to(pred_scores.dtype)
        target_scores = target_scores * soft_score.view(batch, num_anchors, 1)
        return target_labels, target_boxes, target_scores, fg_mask, target_gt_idx


class DetectionLoss(nn.Module):
    """Loss of a ``GhostYOLO``-style model (anything with a ``head`` exposing ``num_classes``, ``reg_max``,
    ``flatten``, ``anchors`` and ``distances``).

    ``loss(raw_outputs, targets, ignore=None)``:
        raw_outputs: the model's ``forward`` output (list of per-level tensors).
        targets: (N, 6) ``[batch_idx, class, x1, y1, x2, y2]`` in input pixels.
        ignore: optional (K, 5) ``[batch_idx, x1, y1, x2, y2]`` regions (e.g. COCO ``iscrowd`` boxes): anchors
            inside them that are not assigned to an object are left out of the classification loss instead
            of being pushed towards background.
    Returns ``(total, {"box", "cls", "dfl"})``. As in YOLOv8, ``total`` is the weighted sum times the batch size
    (so gradient size grows with the batch, matching YOLO learning rates); the dict holds the unweighted
    per-component values (detached 0-d tensors) for logging.
    """

    def __init__(self, model: nn.Module, box: float = 7.5, cls: float = 0.5, dfl: float = 1.5, topk: int = 10,
                 alpha: float = 0.5, beta: float = 6.0, scale_by_batch: bool = True):
        super().__init__()
        model = getattr(model, "module", model)  # DistributedDataParallel / EMA wrappers
        head = model.head if hasattr(model, "head") else model
        self.head = [head]  # a plain list: do not register the model's parameters twice
        self.num_classes, self.reg_max = head.num_classes, head.reg_max
        self.box_weight, self.cls_weight, self.dfl_weight = box, cls, dfl
        self.scale_by_batch = scale_by_batch
        self.assigner = TaskAlignedAssigner(head.num_classes, topk=topk, alpha=alpha, beta=beta)

    def forward(self, raw_outputs, targets: torch.Tensor, ignore: torch.Tensor | None = None):
        # anchors come from the output shapes and strides (float32, whatever the activations' dtype)
        head = self.head[0]
        box_logits, cls_logits = head.flatten(raw_outputs)  # B x A x 4R, B x A x C
        batch = cls_logits.shape[0]
        points, stride = head.anchors(raw_outputs)  # grid units, A x 1
        pred_dist = head.distances(box_logits.float())
        pred_boxes = dist2bbox(pred_dist, points)  # grid units
        cls_logits = cls_logits.float()

        gt, gt_valid = self.prepare_targets(targets, batch, cls_logits.device)
        gt_labels, gt_boxes = gt[..., 0].long(), gt[..., 1:]
        gt_valid = gt_valid & ((gt_boxes[..., 2:] - gt_boxes[..., :2]).amin(-1) > 0)  # drop degenerate boxes

        anchor_px = points * stride
        target_labels, target_boxes, target_scores, fg_mask, _ = self.assigner(
            cls_logits.detach().sigmoid(), (pred_boxes.detach() * stride), anchor_px, gt_labels, gt_boxes, gt_valid)
        target_score_sum = target_scores.sum().clamp(min=1.0)

        cls_loss = F.binary_cross_entropy_with_logits(cls_logits, target_scores, reduction="none")
        if ignore is not None and ignore.numel():
            if ignore.ndim != 2 or ignore.shape[1] != 5:
                raise DataError(f"ignore regions must be (K, 5) [batch_idx, x1, y1, x2, y2], got {tuple(ignore.shape)}")
            regions, region_valid = (t.to(cls_logits.device, non_blocking=True)
                                     for t in pad_targets(ignore.to(torch.float32), batch))
            in_ignore = (points_in_boxes(anchor_px, regions) & region_valid[..., None]).any(1)  # B x A
            cls_loss = cls_loss * (~(in_ignore & ~fg_mask))[..., None]
        cls_loss = cls_loss.sum() / target_score_sum

        fg = fg_mask.nonzero(as_tuple=True)  # (image, anchor) of each foreground anchor: one sync for all below
        weight = target_scores.sum(-1)[fg]  # n_fg
        target_grid = target_boxes[fg] / stride[fg[1]]  # grid units, as the predictions
        iou_loss = complete_box_iou_loss(pred_boxes[fg], target_grid, reduction="none")
        box_loss = (iou_loss * weight).sum() / target_score_sum

        target_dist = bbox2dist(points[fg[1]], target_grid, self.reg_max - 1 - 0.01)
        dfl_loss = (self.distribution_focal_loss(box_logits[fg].float(), target_dist) * weight).sum() / target_score_sum

        total = self.box_weight * box_loss + self.cls_weight * cls_loss + self.dfl_weight * dfl_loss
        if self.scale_by_batch:
            total = total * batch
        # detached 0-d tensors, not floats: reading a value waits for the device, so the trainer reads them once per
        # optimizer step instead of once per batch
        items = {"box": box_loss.detach(), "cls": cls_loss.detach(), "dfl": dfl_loss.detach()}
        return total, items

    def prepare_targets(self, targets: torch.Tensor, batch: int, device: torch.device):
        """Check ``targets`` and pad them to ``(B x M x 5 [class, box], B x M valid)`` on ``device``.

        The checks and the padded size M read values; done where the targets are (the trainer keeps the loader's
        host tensors there), that costs no device sync: only the padded result is copied to ``device``.
        """
        targets = targets.to(torch.float32)
        if targets.ndim != 2 or targets.shape[1] != 6:
            raise DataError(f"targets must be (N, 6) [batch_idx, class, x1, y1, x2, y2], got {tuple(targets.shape)}")
        if targets.shape[0] and (targets[:, 1].min() < 0 or targets[:, 1].max() >= self.num_classes):
            raise DataError(f"target classes span {int(targets[:, 1].min())}..{int(targets[:, 1].max())} but the model "
                            f"has {self.num_classes} (0..{self.num_classes - 1}): build it with num_classes equal "
                            "to the dataset's class count")
        gt, valid = pad_targets(targets, batch)
        return gt.to(device, non_blocking=True), valid.to(device, non_blocking=True)

    def distribution_focal_loss(self, box_logits: torch.Tensor, target_dist: torch.Tensor) -> torch.Tensor:
        """DFL (Li et al., GFL 2020): cross-entropy towards the two bins around each continuous target,
        weighted by closeness. ``box_logits`` (n, 4*reg_max), ``target_dist`` (n, 4) -> (n,) mean over sides."""
        logits = box_logits.reshape(-1, self.reg_max)
        target = target_dist.reshape(-1)
        left = target.long()
        right = left + 1
        weight_left = right.float() - target
        loss = (F.cross_entropy(logits, left, reduction="none") * weight_left
                + F.cross_entropy(logits, right, reduction="none") * (1 - weight_left))
        return loss.reshape(-1, 4).mean(-1)
