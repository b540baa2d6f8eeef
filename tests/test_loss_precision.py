"""Issue 23 §6: anchor points in float32 whatever the activations' dtype (bf16 autocast), and the loss's target
checks and padding done where the targets are (the host), so they cost no device sync."""
from __future__ import annotations

import torch

from ghostdet.models.heads import YOLOHead
from ghostdet.models.loss import DetectionLoss


def test_anchor_points_are_float32_and_exact_for_bf16_outputs():
    head = YOLOHead([8], num_classes=2, strides=(8,))
    # a 1040 px input at stride 8: 130 cells, beyond bf16's exact x.5 values (128)
    raw = [torch.zeros(1, head.num_outputs, 130, 130, dtype=torch.bfloat16)]
    points, stride = head.anchors(raw)
    assert points.dtype == stride.dtype == torch.float32
    assert points[:130, 0].tolist() == [j + 0.5 for j in range(130)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        boxes, _ = head.decode(raw)
    assert boxes.dtype == torch.float32  # pixel boxes above 1024 px would round to 8 px in bf16
    # a model run in half precision without autocast (an fp16 export) keeps its output dtype
    assert head.half().decode([r.half() for r in raw])[0].dtype == torch.float16


def test_targets_are_checked_and_padded_without_reading_the_device():
    """A "meta" device stands in for CUDA: reading any value of a tensor there (a device sync on CUDA) raises."""
    loss = DetectionLoss(YOLOHead([8], num_classes=3, strides=(8,)))
    targets = torch.tensor([[0, 1, 2, 2, 9, 9], [1, 2, 1, 1, 5, 5], [1, 0, 3, 3, 6, 6]])  # the loader's host tensor
    gt, valid = loss.prepare_targets(targets, batch=2, device=torch.device("meta"))
    assert gt.device.type == valid.device.type == "meta" and tuple(gt.shape) == (2, 2, 5)
    host_gt, host_valid = loss.prepare_targets(targets, batch=2, device=torch.device("cpu"))
    assert host_valid.tolist() == [[True, False], [True, True]]
    assert host_gt[1, 1].tolist() == [0, 3, 3, 6, 6]
