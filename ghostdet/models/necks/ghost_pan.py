"""Ghost-PAN: an FPN top-down path plus a PAN bottom-up path built from Ghost blocks (after NanoDet-Plus).

Every level is first reduced to ``channels`` by a 1x1 conv. Merges concatenate two ``channels``-wide maps and
squeeze them back with a Ghost module, so no merge is wider than ``2 * channels``. All convs are 1x1 or
depthwise: cheap on CPUs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ghostdet.models.layers import ConvBNAct, DepthwiseSeparableConv, GhostModule, add_residual
from ghostdet.models.registry import register_neck


class GhostResidual(nn.Module):
    """GhostNet's stride-1 bottleneck with equal in/out widths: Ghost(expand, ReLU) -> Ghost(linear) + x."""

    def __init__(self, channels: int, expand: float = 1.0):
        super().__init__()
        hidden = max(4, int(round(channels * expand)))
        self.ghost1 = GhostModule(channels, hidden, act=True)
        self.ghost2 = GhostModule(hidden, channels, act=False)

    def forward(self, x):
        return add_residual(self.ghost2(self.ghost1(x)), x)


class GhostBlock(nn.Module):
    """Merge block of the neck: a Ghost module squeezes ``in_chs`` (a concatenation) to ``out_chs``,
    then ``depth`` residual Ghost bottlenecks refine it."""

    def __init__(self, in_chs: int, out_chs: int, depth: int = 1, expand: float = 1.0):
        super().__init__()
        self.squeeze = GhostModule(in_chs, out_chs, act=True)
        self.blocks = nn.Sequential(*(GhostResidual(out_chs, expand) for _ in range(depth)))

    def forward(self, x):
        return self.blocks(self.squeeze(x))


@register_neck("ghost_pan")
class GhostPAN(nn.Module):
    """FPN (top-down) + PAN (bottom-up) over three levels (strides 8/16/32).

    Args:
        in_channels: widths of the three backbone maps, finest first.
        channels: width of every neck level (and of the outputs).
        depth: residual Ghost bottlenecks per merge block.
        expand: hidden-width ratio of those bottlenecks.
        fpn_only: drop the bottom-up path (outputs are the top-down maps).
        down_kernel: kernel of the depthwise stride-2 convs of the bottom-up path.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 96, depth: int = 1, expand: float = 1.0,
                 fpn_only: bool = False, down_kernel: int = 5):
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"GhostPAN expects 3 input levels (strides 8/16/32), got {len(in_channels)}")
        self.fpn_only = fpn_only
        self.out_channels = [channels] * 3
        self.reduce = nn.ModuleList(ConvBNAct(c, channels, 1) for c in in_channels)
        # top_down[i] merges level i with the upsampled level i+1 (i = 1, 0)
        self.top_down = nn.ModuleList(GhostBlock(2 * channels, channels, depth, expand) for _ in range(2))
        if not fpn_only:
            # bottom_up[i] merges the downsampled level i with level i+1 (i = 0, 1)
            self.downsample = nn.ModuleList(
                DepthwiseSeparableConv(channels, channels, down_kernel, stride=2) for _ in range(2))
            self.bottom_up = nn.ModuleList(GhostBlock(2 * channels, channels, depth, expand) for _ in range(2))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = (reduce(f) for reduce, f in zip(self.reduce, features))
        p4 = self.top_down[1](torch.cat((F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4), 1))
        p3 = self.top_down[0](torch.cat((F.interpolate(p4, scale_factor=2.0, mode="nearest"), p3), 1))
        if self.fpn_only:
            return [p3, p4, p5]
        n4 = self.bottom_up[0](torch.cat((self.downsample[0](p3), p4), 1))
        n5 = self.bottom_up[1](torch.cat((self.downsample[1](n4), p5), 1))
        return [p3, n4, n5]
