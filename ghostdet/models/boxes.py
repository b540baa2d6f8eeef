"""Anchor points and the box <-> distance encoding of anchor-free YOLO heads.

An anchor is the centre of a feature-map cell, ``((j + 0.5) * stride, (i + 0.5) * stride)`` in input pixels.
The head predicts the distances (left, top, right, bottom) from the anchor to the box sides, in units of the
level's stride, as a distribution over ``reg_max`` bins (DFL, Li et al. 2020).
"""
from __future__ import annotations

from typing import Sequence

import torch


def make_anchors(feature_sizes: Sequence[tuple[int, int]], strides: Sequence[int], offset: float = 0.5,
                 device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchor points of every level, flattened level by level in row-major order (the order of the
    head's flattened outputs).

    Returns ``(points, stride_per_anchor)``: ``points`` (A, 2) xy in *grid units* of each anchor's level
    (multiply by ``stride_per_anchor`` (A, 1) for input pixels).
    """
    points, stride_list = [], []
    for (h, w), stride in zip(feature_sizes, strides):
        ys = torch.arange(h, device=device, dtype=dtype) + offset
        xs = torch.arange(w, device=device, dtype=dtype) + offset
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack((grid_x, grid_y), -1).reshape(-1, 2))
        stride_list.append(torch.full((h * w, 1), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)


def dist2bbox(distance: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(..., 4) distances (left, top, right, bottom) from (..., 2) points -> (..., 4) xyxy boxes."""
    left_top, right_bottom = distance.chunk(2, -1)
    return torch.cat((points - left_top, points + right_bottom), -1)


def bbox2dist(points: torch.Tensor, boxes: torch.Tensor, max_dist: float | None = None) -> torch.Tensor:
    """(..., 4) xyxy boxes -> distances (left, top, right, bottom) from (..., 2) points; the inverse of
    ``dist2bbox``. ``max_dist`` clamps to the largest distance the DFL bins can represent."""
    x1y1, x2y2 = boxes.chunk(2, -1)
    dist = torch.cat((points - x1y1, x2y2 - points), -1)
    return dist.clamp(0, max_dist) if max_dist is not None else dist


def aligned_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """IoU of broadcast pairs of xyxy boxes ``(..., 4)`` -> ``(...)``.

    torchvision's ``box_iou`` is all-pairs over two 2-D sets; the assigner needs element-wise IoU of
    already-matched pairs, which this gives without materialising an N x M matrix.
    """
    inter_wh = (torch.minimum(boxes1[..., 2:], boxes2[..., 2:]) - torch.maximum(boxes1[..., :2], boxes2[..., :2]))
    inter = inter_wh.clamp(min=0).prod(-1)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    return inter / (area1 + area2 - inter + eps)
