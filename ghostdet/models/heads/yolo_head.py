"""Anchor-free decoupled YOLO head with distribution (DFL) box regression, as in YOLOv8/YOLO11, made light:
each branch is a stack of depthwise-separable convs instead of full 3x3 convs."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ghostdet.models.boxes import make_anchors
from ghostdet.models.layers import DepthwiseSeparableConv
from ghostdet.models.registry import register_head


@register_head("yolo_head")
class YOLOHead(nn.Module):
    """Per level: a box branch and a classification branch (``num_convs`` depthwise-separable convs each),
    then a 1x1 conv to ``4 * reg_max`` box logits and one to ``num_classes`` class logits.

    ``forward`` returns one ``B x (4*reg_max + num_classes) x h x w`` tensor per level (box channels first).
    ``decode`` turns those into boxes (xyxy, input pixels) and sigmoid scores.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, strides: Sequence[int] = (8, 16, 32),
                 reg_max: int = 16, num_convs: int = 1, kernel_size: int = 5, prior_objects: float = 5.0,
                 prior_image_size: int = 640):
        super().__init__()
        if len(in_channels) != len(strides):
            raise ValueError(f"YOLOHead: {len(in_channels)} input levels but {len(strides)} strides")
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = tuple(int(s) for s in strides)
        self.num_outputs = 4 * reg_max + num_classes

        def branch(chs):
            return nn.Sequential(*(DepthwiseSeparableConv(chs, chs, kernel_size) for _ in range(num_convs)))

        self.box_convs = nn.ModuleList(branch(c) for c in in_channels)
        self.cls_convs = nn.ModuleList(branch(c) for c in in_channels)
        self.box_preds = nn.ModuleList(nn.Conv2d(c, 4 * reg_max, 1) for c in in_channels)
        self.cls_preds = nn.ModuleList(nn.Conv2d(c, num_classes, 1) for c in in_channels)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self._init_biases(prior_objects, prior_image_size)

    @torch.no_grad()
    def _init_biases(self, prior_objects: float, prior_image_size: int):
        # Class prior: ~prior_objects objects per prior_image_size^2 image spread over all classes and cells
        # of a level (YOLOv8's choice), so the untrained head predicts near-empty images and the BCE of the
        # many background cells does not swamp the first steps.
        for stride, box_pred, cls_pred in zip(self.strides, self.box_preds, self.cls_preds):
            cells = (prior_image_size / stride) ** 2
            prior = min(prior_objects / self.num_classes / cells, 0.5)
            nn.init.constant_(cls_pred.bias, math.log(prior / (1 - prior)))
            nn.init.constant_(box_pred.bias, 1.0)  # equal bin logits: a mid-size box before training
            nn.init.normal_(box_pred.weight, std=0.01)
            nn.init.normal_(cls_pred.weight, std=0.01)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for i, x in enumerate(features):
            box = self.box_preds[i](self.box_convs[i](x))
            cls = self.cls_preds[i](self.cls_convs[i](x))
            outputs.append(torch.cat((box, cls), 1))
        return outputs

    def flatten(self, raw: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-level outputs -> ``(box_logits B x A x 4*reg_max, cls_logits B x A x nc)``, levels concatenated."""
        batch = raw[0].shape[0]
        flat = torch.cat([r.reshape(batch, self.num_outputs, -1) for r in raw], 2).transpose(1, 2)
        return flat.split((4 * self.reg_max, self.num_classes), 2)

    def anchors(self, raw: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Anchor points (A, 2) in grid units and the stride (A, 1) of each, for these outputs: float32 whatever
        their dtype (bfloat16 holds x.5 exactly only below 128 cells, 1024 px at stride 8)."""
        sizes = [tuple(r.shape[-2:]) for r in raw]
        return make_anchors(sizes, self.strides, device=raw[0].device, dtype=torch.float32)

    def distances(self, box_logits: torch.Tensor) -> torch.Tensor:
        """DFL expectation: ``(..., 4*reg_max)`` logits -> ``(..., 4)`` distances in stride units."""
        probs = box_logits.unflatten(-1, (4, self.reg_max)).softmax(-1)
        return probs @ self.bins.to(probs.dtype)

    def decode(self, raw: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(boxes B x A x 4 xyxy input pixels, scores B x A x nc in 0-1)``.

        Works channels-first (B x C x A) and transposes only the 4 + nc outputs, not the 4 * reg_max + nc logits:
        in a deployed graph that transpose ran as a slow reference kernel in OpenVINO (9 % of gghost_yolo's int8
        time at 320, benchmarks/profile_runtimes.py). Same values as ``distances`` + ``dist2bbox`` on ``flatten``.
        """
        batch = raw[0].shape[0]
        flat = torch.cat([r.reshape(batch, self.num_outputs, -1) for r in raw], 2)
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.num_classes), 1)
        probs = box_logits.unflatten(1, (4, self.reg_max)).softmax(2)  # B x 4 x reg_max x A
        dist = (self.bins.to(probs.dtype).view(1, -1) @ probs).squeeze(2)  # B x 4 x A, in stride units
        points, stride = (t.t() for t in self.anchors(raw))  # 2 x A, 1 x A
        left_top, right_bottom = dist.chunk(2, 1)
        boxes = torch.cat((points - left_top, points + right_bottom), 1) * stride  # float32
        if not torch.is_autocast_enabled(boxes.device.type):  # a half-precision model keeps its output dtype
            boxes = boxes.to(dist.dtype)
        return boxes.transpose(1, 2), cls_logits.sigmoid().transpose(1, 2)
