"""Ghost-YOLO: a GhostNet-family backbone + Ghost-PAN neck + anchor-free decoupled YOLO head (DFL)."""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn as nn

from ghostdet.models.heads.yolo_head import YOLOHead
from ghostdet.models.layers import fuse_conv_bn_modules, use_channels_last_batchnorm
from ghostdet.models.necks.ghost_pan import GhostPAN
from ghostdet.models.postprocess import postprocess
from ghostdet.models.registry import register_detector
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.imgsz import check_imgsz

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@register_detector("ghost_yolo")
class GhostYOLO(nn.Module):
    """Object detector built from any backbone that returns three maps (strides 8/16/32) and exposes
    ``out_channels``.

    Args:
        backbone: the feature extractor (Hydra builds it from the nested ``backbone`` node).
        num_classes: number of object classes.
        neck_channels: width of every neck level and of the head.
        neck_depth: residual Ghost bottlenecks per neck merge.
        neck_expand: hidden-width ratio of those bottlenecks.
        fpn_only: top-down FPN only (no PAN bottom-up path).
        head_convs: depthwise-separable convs per head branch.
        head_kernel: depthwise kernel size in the head and the neck's downsampling convs.
        reg_max: DFL bins per box side.
        strides: strides of the three levels.
        mean, std: input normalisation (ImageNet by default) applied inside ``forward``; inputs are RGB 0-1.

    ``forward(x)`` -> list of 3 raw maps ``B x (4*reg_max + nc) x h x w`` (loss and export);
    ``decode(raw)`` -> ``(boxes B x A x 4 xyxy input px, scores B x A x nc)``;
    ``predict(x, ...)`` -> per-image ``{"boxes", "scores", "labels"}``.
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 80, neck_channels: int = 96, neck_depth: int = 1,
                 neck_expand: float = 1.0, fpn_only: bool = False, head_convs: int = 1, head_kernel: int = 5,
                 reg_max: int = 16, strides: Sequence[int] = (8, 16, 32),
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        in_channels = getattr(backbone, "out_channels", None)
        if not isinstance(in_channels, (list, tuple)) or len(in_channels) != 3:
            raise ConfigError(f"backbone {type(backbone).__name__} must expose out_channels as a list of 3 widths "
                              f"(maps at strides 8/16/32), got {in_channels!r}; build it with features_only=True")
        in_channels = [int(c) for c in in_channels]
        if int(num_classes) < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)
        self.reg_max = int(reg_max)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.backbone = backbone
        self.neck = GhostPAN(in_channels, neck_channels, neck_depth, neck_expand, fpn_only, head_kernel)
        self.head = YOLOHead(self.neck.out_channels, self.num_classes, self.strides, self.reg_max, head_convs,
                             head_kernel)
        self.channels_last = False  # see use_channels_last: the one memory-format policy of ghostdet

    def use_channels_last(self, enabled: bool = True) -> "GhostYOLO":
        """Weights in NHWC and every input converted to NHWC in ``forward``, on any device and in training too
        (the trainer's ``channels_last`` and the PyTorch ``Detector`` call this). Without it, inputs still run NHWC
        in CPU inference (see ``forward``). Returns the model."""
        self.channels_last = bool(enabled)
        use_channels_last_batchnorm(self, enabled)  # torch's NHWC BatchNorm backward is slow at the Ghost widths
        return self.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stride = self.strides[-1]
        if not torch.jit.is_tracing() and (x.shape[-1] % stride or x.shape[-2] % stride):
            check_imgsz(tuple(x.shape[-2:]), stride, "input size (H, W)")  # raises, naming the nearest valid sizes
        exporting = torch.jit.is_tracing() or torch.compiler.is_compiling()
        if not exporting and (self.channels_last or (x.device.type == "cpu" and not self.training)):
            # oneDNN's channels_last kernels are many times faster for the depthwise and 1x1 convs Ghost models
            # are made of (a 24-channel 3x3 depthwise conv at 320x320: ~0.6 ms vs ~15 ms in NCHW), in backward
            # too (training forward+backward 1.5x); the convs keep the input's layout, so converting the input is
            # enough. Same results, any weight layout.
            x = x.contiguous(memory_format=torch.channels_last)
        x = (x - self.mean).div_(self.std)  # in place: one input-sized allocation less
        return self.head(self.neck(self.backbone(x)))

    def decode(self, raw: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head.decode(raw)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, conf: float = 0.25, iou: float = 0.45, max_det: int = 300,
                classes: Sequence[int] | None = None, multi_label: bool = False) -> list[dict[str, torch.Tensor]]:
        """Detections per image, boxes xyxy in input pixels clipped to the input. Runs in eval mode
        (and restores the previous mode)."""
        was_training = self.training
        self.eval()
        try:
            boxes, scores = self.decode(self(x))
        finally:
            self.train(was_training)
        return postprocess(boxes, scores, conf, iou, max_det, classes, multi_label, clip_shape=tuple(x.shape[-2:]))

    def fuse(self) -> "GhostYOLO":
        """Fold BatchNorm into the preceding convs, in place (inference only; outputs unchanged in eval mode).
        A backbone with its own ``fuse()`` (for conv/BN pairs the generic folding cannot see) is asked first."""
        if callable(getattr(self.backbone, "fuse", None)):
            self.backbone.fuse()
        fuse_conv_bn_modules(self)
        logger.debug("fused BatchNorm into convolutions")
        return self
