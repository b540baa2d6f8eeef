"""G-GhostNet on RegNetX (Han et al., "GhostNets on Heterogeneous Devices via Cheap Operations", IJCV 2022).

The GPU-oriented branch of the Ghost family: no depthwise convs inside a stage; instead a stage's later
blocks run on part of the channels only and the rest ("ghost" features) come cheaply from the stage's
first block. Layout, channel rounding and key names follow the authors' ``g_ghost_regnet.py``
(huawei-noah/Efficient-AI-Backbones, g_ghost_pytorch), so their checkpoints load strictly by name.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from ghostdet.models.backbones.pretrained import load_pretrained
from ghostdet.utils.errors import ConfigError
from ghostdet.models.registry import register_backbone

# variant: (blocks per stage, stage widths, group width) of the RegNetX design each one is built on.
GGHOST_REGNETX_CFG = {
    "002": ((1, 1, 4, 7), (24, 56, 152, 368), 8),
    "004": ((1, 2, 7, 12), (32, 64, 160, 384), 16),
    "006": ((1, 3, 5, 7), (48, 96, 240, 528), 24),
    "008": ((1, 3, 7, 5), (64, 128, 288, 672), 16),
    "016": ((2, 4, 10, 2), (72, 168, 408, 912), 24),
    "032": ((2, 6, 15, 2), (96, 192, 432, 1008), 48),
    "040": ((2, 5, 14, 2), (80, 240, 560, 1360), 40),
    "064": ((2, 4, 10, 1), (168, 392, 784, 1624), 56),
    "080": ((2, 5, 15, 1), (80, 240, 720, 1920), 120),
    "120": ((2, 5, 11, 1), (224, 448, 896, 2240), 112),
    "160": ((2, 6, 13, 1), (256, 512, 896, 2048), 128),
    "320": ((2, 7, 13, 1), (336, 672, 1344, 2520), 168),
}
STEM_CHANNELS = 32
CHEAP_RATIO = 0.5


class RegNetBottleneck(nn.Module):
    """RegNetX block: 1x1 conv, grouped 3x3 conv (stride here), 1x1 conv, each with BN; ReLU after the
    first two and after the residual sum. ``downsample`` (1x1 conv + BN) projects the shortcut when needed."""

    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))  # for layers.fuse_conv_bn_modules

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1, group_width: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        groups = out_chs // min(out_chs, group_width)
        self.conv1 = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv3 = nn.Conv2d(out_chs, out_chs, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _downsample(in_chs: int, out_chs: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))


def plain_stage(in_chs: int, out_chs: int, blocks: int, group_width: int, stride: int = 2) -> nn.Sequential:
    """A RegNetX stage: ``blocks`` bottlenecks, the first strided with a projected shortcut."""
    layers = [RegNetBottleneck(in_chs, out_chs, stride, group_width, _downsample(in_chs, out_chs, stride))]
    layers += [RegNetBottleneck(out_chs, out_chs, 1, group_width) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class GGhostStage(nn.Module):
    """G-Ghost stage of ``blocks`` (>= 3) bottlenecks.

    ``base`` (strided) makes ``out_chs`` maps. Its first ``raw_chs`` channels run through the ``layers``
    (blocks - 2 bottlenecks, grouped with 3/4 of the group width); the other ``cheap_chs`` channels are the
    cheap "ghost" features: a 1x1 conv + BN of them plus ``merge`` (global pool of every intermediate
    output, concatenated, then 1x1 conv-BN-ReLU-1x1 conv-BN), ReLU. Both parts are concatenated and go
    through ``end``. ``raw_chs`` = (1 - cheap_ratio) * out_chs rounded down to the inner group width.
    """

    def __init__(self, in_chs: int, out_chs: int, blocks: int, group_width: int, stride: int = 2,
                 cheap_ratio: float = CHEAP_RATIO):
        super().__init__()
        if blocks < 3:
            raise ConfigError(f"a G-Ghost stage needs at least 3 blocks, got {blocks}; use plain_stage")
        self.base = RegNetBottleneck(in_chs, out_chs, stride, group_width, _downsample(in_chs, out_chs, stride))
        self.end = RegNetBottleneck(out_chs, out_chs, 1, group_width)

        inner_group_width = int(group_width * 0.75)
        self.raw_chs = int(out_chs * (1 - cheap_ratio) / inner_group_width) * inner_group_width
        self.cheap_chs = cheap_chs = out_chs - self.raw_chs
        self.merge = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(out_chs + self.raw_chs * (blocks - 2), cheap_chs, 1, bias=False),
            nn.BatchNorm2d(cheap_chs),
            nn.ReLU(inplace=True),
            nn.Conv2d(cheap_chs, cheap_chs, 1, bias=False),
            nn.BatchNorm2d(cheap_chs),
        )
        self.cheap = nn.Sequential(nn.Conv2d(cheap_chs, cheap_chs, 1, bias=False), nn.BatchNorm2d(cheap_chs))
        self.cheap_relu = nn.ReLU(inplace=True)
        # the authors' first inner block has a channel-slicing "downsample" without weights; its input
        # already has raw_chs channels, so it is an identity here
        self.layers = nn.Sequential(*[RegNetBottleneck(self.raw_chs, self.raw_chs, 1, inner_group_width)
                                      for _ in range(blocks - 2)])

    def forward(self, x):
        x0 = self.base(x)
        intermediates = [x0]
        raw = x0[:, : self.raw_chs]
        for layer in self.layers:
            raw = layer(raw)
            intermediates.append(raw)
        mixed = self.merge(torch.cat(intermediates, 1))
        cheap = self.cheap_relu(self.cheap(x0[:, self.raw_chs:]) + mixed)
        return self.end(torch.cat((raw, cheap), 1))


@register_backbone("gghost_regnet")
class GGhostRegNet(nn.Module):
    """G-Ghost RegNetX: ``GGhostRegNet(variant="032", num_classes=1000, features_only=False, pretrained=None)``.

    Stem 3x3 s2 conv (32) -> layer1 (plain RegNetX stage) -> layer2 (G-Ghost when > 2 blocks) -> layer3
    (G-Ghost) -> layer4 (G-Ghost when > 2 blocks) -> pool -> dropout -> fc. Published (params / MACs at 224):
    032 10.5M/1.8G, 040 15.7M/2.2G, 080 24.6M/4.2G, 160 32.4M/9.0G.
    ``features_only=True`` returns layer2/3/4 outputs (strides 8/16/32), ``out_channels`` = their widths.
    """

    conv_bn_pairs = (("conv1", "bn1"),)  # for layers.fuse_conv_bn_modules

    def __init__(self, variant: str = "032", num_classes: int = 1000, features_only: bool = False,
                 pretrained: str | os.PathLike | None = None, dropout: float = 0.2, in_chans: int = 3):
        super().__init__()
        variant = str(variant).zfill(3)  # Hydra/YAML reads 032 as the int 32
        if variant not in GGHOST_REGNETX_CFG:
            raise ConfigError(f"unknown G-Ghost RegNet variant {variant!r}; choose one of "
                              f"{', '.join(GGHOST_REGNETX_CFG)}")
        depths, widths, group_width = GGHOST_REGNETX_CFG[variant]
        self.variant = variant
        self.num_classes = num_classes
        self.features_only = features_only

        self.conv1 = nn.Conv2d(in_chans, STEM_CHANNELS, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        in_chs = STEM_CHANNELS
        for i, (blocks, width) in enumerate(zip(depths, widths), start=1):
            ghost = i == 3 or (i in (2, 4) and blocks > 2)
            stage = GGhostStage(in_chs, width, blocks, group_width) if ghost else \
                plain_stage(in_chs, width, blocks, group_width)
            self.add_module(f"layer{i}", stage)
            in_chs = width

        if features_only:
            self.out_channels = list(widths[1:])
            self.strides = [8, 16, 32]
            skip = ("fc.",)
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(dropout)
            self.fc = nn.Linear(widths[-1], num_classes)
            skip = ()

        # the authors' initialisation (matters when training from scratch)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if pretrained:
            load_pretrained(self, pretrained, skip_prefixes=skip,
                            hint="build the model with the variant (and num_classes) the file was trained for")

    def forward(self, x: torch.Tensor):
        x = self.layer1(self.relu(self.bn1(self.conv1(x))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        if self.features_only:
            return [c3, c4, c5]
        return self.fc(self.dropout(torch.flatten(self.avgpool(c5), 1)))
