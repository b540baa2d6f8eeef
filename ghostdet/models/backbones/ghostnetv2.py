"""GhostNetV2 (Tang et al., "GhostNetV2: Enhance Cheap Operation with Long-Range Attention", NeurIPS 2022).

GhostNet's layout with DFC attention in the expanding ghost module of every bottleneck from the third on.
Key names follow the authors' release (huawei-noah/Efficient-AI-Backbones, ghostnetv2_pytorch), shared by
timm's ``ghostnetv2_*`` models.
"""
from __future__ import annotations

import os

import torch.nn as nn
import torch.nn.functional as F

from ghostdet.models.backbones.ghostnet import GhostBottleneck, GhostNetBase
from ghostdet.models.layers import GhostModule
from ghostdet.models.registry import register_backbone, register_variant


class GhostModuleV2(GhostModule):
    """Ghost module gated by DFC (decoupled fully-connected) attention.

    The attention branch runs on a 2x average-pooled input: 1x1 conv + BN, then a horizontal (1x5) and a
    vertical (5x1) depthwise conv + BN. These are the decoupled fully-connected layers along each axis,
    implemented as convolutions as in the paper. A sigmoid of the result, nearest-upsampled to full size,
    multiplies the ghost features.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3,
                 stride: int = 1, act: bool = True):
        super().__init__(in_chs, out_chs, kernel_size, ratio, dw_size, stride, act)
        self.short_conv = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.Conv2d(out_chs, out_chs, (1, 5), 1, (0, 2), groups=out_chs, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.Conv2d(out_chs, out_chs, (5, 1), 1, (2, 0), groups=out_chs, bias=False),
            nn.BatchNorm2d(out_chs),
        )

    def forward(self, x):
        attention = self.short_conv(F.avg_pool2d(x, kernel_size=2, stride=2))
        out = super().forward(x)
        return out * F.interpolate(attention.sigmoid(), size=out.shape[-2:], mode="nearest")


@register_backbone("ghostnetv2")
class GhostNetV2(GhostNetBase):
    """GhostNetV2: ``GhostNetV2(width=1.0, num_classes=1000, features_only=False, pretrained=None)``.

    Paper table (params / MACs at 224): 1.0x 6.2M/167M, 1.3x 9.0M/269M, 1.6x 12.4M/399M.
    The first two bottlenecks (stride 2 and 4, large maps) keep the plain ghost module, as in the paper.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1000, features_only: bool = False,
                 pretrained: str | os.PathLike | None = None, dropout: float = 0.2, in_chans: int = 3):
        # explicit arguments (no **block_options): the registry checks a spec's keys against this signature
        super().__init__(width, num_classes, features_only, pretrained, dropout, in_chans)


    def make_block(self, in_chs, mid_chs, out_chs, kernel, stride, se_ratio, block_index) -> nn.Module:
        expand = GhostModuleV2 if block_index > 1 else GhostModule
        return GhostBottleneck(in_chs, mid_chs, out_chs, kernel, stride, se_ratio, expand_module=expand)


# the paper's widths under timm's names
GHOSTNETV2_VARIANTS = {"ghostnetv2_100": 1.0, "ghostnetv2_130": 1.3, "ghostnetv2_160": 1.6}
for _name, _width in GHOSTNETV2_VARIANTS.items():
    register_variant(_name, GhostNetV2, width=_width)
