"""Score threshold + class-aware NMS on decoded detector outputs (PyTorch or ONNX Runtime alike)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms, clip_boxes_to_image

from ghostdet.utils.errors import ConfigError


def postprocess(boxes, scores, conf: float = 0.25, iou: float = 0.45, max_det: int = 300,
                classes: Sequence[int] | None = None, multi_label: bool = False, max_candidates: int = 30000,
                clip_shape: tuple[int, int] | None = None) -> list[dict[str, torch.Tensor]]:
    """Per-image detections from decoded outputs.

    Args:
        boxes: ``B x A x 4`` xyxy (tensor or numpy, e.g. ONNX Runtime outputs); ``A x 4`` for one image.
        scores: ``B x A x nc`` class probabilities (0-1).
        conf: keep candidates with score > conf.
        iou: NMS IoU threshold; NMS is per class (``torchvision.ops.batched_nms``), so overlapping boxes of
            different classes both survive.
        max_det: detections kept per image, highest scores first.
        classes: keep only these class indices.
        multi_label: one candidate per (anchor, class) above ``conf`` instead of only the best class per
            anchor; gives slightly higher mAP at a low ``conf`` (evaluation), costs NMS time.
        max_candidates: cap on candidates entering NMS (highest scores kept), bounds the time at low ``conf``.
        clip_shape: ``(h, w)`` to clip boxes to, e.g. the input size.

    Returns:
        one dict per image: ``boxes`` (n, 4) float xyxy, ``scores`` (n,), ``labels`` (n,) int64.
    """
    boxes = torch.as_tensor(np.asarray(boxes)) if not isinstance(boxes, torch.Tensor) else boxes
    scores = torch.as_tensor(np.asarray(scores)) if not isinstance(scores, torch.Tensor) else scores
    if boxes.ndim == 2:
        boxes, scores = boxes[None], scores[None]
    if boxes.shape[:2] != scores.shape[:2] or boxes.shape[-1] != 4:
        raise ValueError(f"postprocess: boxes {tuple(boxes.shape)} and scores {tuple(scores.shape)} do not match "
                         "(expected B x A x 4 and B x A x nc)")
    boxes, scores = boxes.float(), scores.float()
    num_classes = scores.shape[-1]
    if classes is not None:
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < num_classes]
        if bad:
            raise ConfigError(f"classes {bad} out of range: the model has {num_classes} classes (0..{num_classes - 1})")
        keep_class = torch.zeros(num_classes, dtype=torch.bool, device=scores.device)
        keep_class[classes] = True
        scores = scores * keep_class

    results = []
    for image_boxes, image_scores in zip(boxes, scores):
        if multi_label:
            anchor_idx, labels = (image_scores > conf).nonzero(as_tuple=True)
            cand_scores = image_scores[anchor_idx, labels]
        else:
            cand_scores, labels = image_scores.max(1)
            anchor_idx = (cand_scores > conf).nonzero(as_tuple=True)[0]
            cand_scores, labels = cand_scores[anchor_idx], labels[anchor_idx]
        if cand_scores.numel() > max_candidates:
            top = cand_scores.topk(max_candidates).indices
            anchor_idx, labels, cand_scores = anchor_idx[top], labels[top], cand_scores[top]
        cand_boxes = image_boxes[anchor_idx]
        if clip_shape is not None:
            cand_boxes = clip_boxes_to_image(cand_boxes, (int(clip_shape[0]), int(clip_shape[1])))
        keep = batched_nms(cand_boxes, cand_scores, labels, iou)[:max_det]  # sorted by score
        results.append({"boxes": cand_boxes[keep], "scores": cand_scores[keep], "labels": labels[keep].long()})
    return results
