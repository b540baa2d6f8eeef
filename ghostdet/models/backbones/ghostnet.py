"""GhostNet (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020).

Layout and key names follow the authors' release (huawei-noah/Efficient-AI-Backbones, ghostnet_pytorch),
which timm's ``ghostnet_*`` models share, so ``ghostnet_1x.pth`` loads strictly by name.
The stem / stage table / head skeleton here is shared by GhostNetV2 and RepGhostNet.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from ghostdet.models.backbones.pretrained import load_pretrained
from ghostdet.models.layers import GhostModule, SqueezeExcite, add_residual, fuse_conv_bn, make_divisible
from ghostdet.models.registry import register_backbone, register_variant

# One row per block: (dw kernel, expansion channels, out channels, SE ratio, stride); one list per stage
# (the stage grouping decides the authors' ``blocks.<stage>.<block>`` key names).
GHOSTNET_CFG = [
    [(3, 16, 16, 0, 1)],
    [(3, 48, 24, 0, 2)],
    [(3, 72, 24, 0, 1)],
    [(5, 72, 40, 0.25, 2)],
    [(5, 120, 40, 0.25, 1)],
    [(3, 240, 80, 0, 2)],
    [(3, 200, 80, 0, 1),
     (3, 184, 80, 0, 1),
     (3, 184, 80, 0, 1),
     (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)],
    [(5, 672, 160, 0.25, 2)],
    [(5, 960, 160, 0, 1),
     (5, 960, 160, 0.25, 1),
     (5, 960, 160, 0, 1),
     (5, 960, 160, 0.25, 1)],
]

HEAD_CHANNELS = 1280
FEATURE_STRIDES = (8, 16, 32)


class LastStageConv(nn.Module):
    """The 1x1 conv + BN + ReLU that widens the last stage before pooling (the authors' ``ConvBnAct``). Not
    ``layers.ConvBNAct``: its keys are ``conv``/``bn1`` as in the authors' release, so their checkpoints load."""

    conv_bn_pairs = (("conv", "bn1"),)  # for layers.fuse_conv_bn_modules

    def __init__(self, in_chs: int, out_chs: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act1(self.bn1(self.conv(x)))


class GhostBottleneck(nn.Module):
    """Ghost bottleneck: ghost module (expand, ReLU) -> depthwise conv when strided -> optional SE ->
    ghost module (project, linear), plus a shortcut (identity, or depthwise + 1x1 when shape changes).

    ``expand_module``/``project_module`` build the two ghost modules as ``f(in_chs, out_chs, act=...)``,
    so GhostNetV2 (DFC attention) and RepGhostNet reuse this block with their own modules.
    """

    conv_bn_pairs = (("conv_dw", "bn_dw"),)  # for layers.fuse_conv_bn_modules

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.0, expand_module=GhostModule, project_module=GhostModule):
        super().__init__()
        self.stride = stride
        self.ghost1 = expand_module(in_chs, mid_chs, act=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2,
                                     groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        else:
            self.conv_dw = self.bn_dw = None
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = project_module(mid_chs, out_chs, act=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride, (dw_kernel_size - 1) // 2, groups=in_chs,
                          bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x):
        y = self.ghost1(x)
        if self.conv_dw is not None:
            y = self.bn_dw(self.conv_dw(y))
        if self.se is not None:
            y = self.se(y)
        return add_residual(self.ghost2(y), self.shortcut(x))

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Deploy form of a strided block whose expansion is a plain Ghost module: the strided depthwise conv
        moves in front of the Ghost module's concatenation (see ``GhostDownsample``). Same outputs."""
        if self.conv_dw is None or type(self.ghost1) is not GhostModule:
            return
        conv_dw = self.conv_dw if isinstance(self.bn_dw, nn.Identity) else fuse_conv_bn(self.conv_dw, self.bn_dw)
        self.ghost1 = GhostDownsample(self.ghost1, conv_dw)
        self.conv_dw = self.bn_dw = None


class GhostDownsample(nn.Module):
    """A Ghost module followed by a strided depthwise conv, in deploy form.

    A depthwise conv acts on each channel alone, so ``dw(cat(x1, x2)) == cat(dw_a(x1), dw_b(x2))``: applying it
    to the primary and the cheap half separately lets the concatenation happen at the strided resolution
    (4x fewer pixels). In GhostNet 1.0x at 640x640 that removes a 48-channel 320x320 concatenation, the single
    most expensive memory copy of the detector on a CPU.
    """

    def __init__(self, ghost: GhostModule, conv_dw: nn.Conv2d):
        super().__init__()
        self.primary_conv, self.cheap_operation = ghost.primary_conv, ghost.cheap_operation
        primary_chs = ghost.primary_conv[0].out_channels
        self.cheap_chs = ghost.out_chs - primary_chs  # the cheap half may make more maps than the output keeps
        self.dw_primary = self._slice_depthwise(conv_dw, 0, primary_chs)
        self.dw_cheap = self._slice_depthwise(conv_dw, primary_chs, ghost.out_chs)

    @staticmethod
    def _slice_depthwise(conv: nn.Conv2d, start: int, stop: int) -> nn.Conv2d:
        part = nn.Conv2d(stop - start, stop - start, conv.kernel_size, conv.stride, conv.padding,
                         groups=stop - start, bias=True).to(conv.weight.device, conv.weight.dtype)
        part.weight.copy_(conv.weight[start:stop])
        part.bias.copy_(conv.bias[start:stop] if conv.bias is not None else torch.zeros(stop - start))
        return part

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        if x2.shape[1] != self.cheap_chs:
            x2 = x2[:, : self.cheap_chs]
        return torch.cat([self.dw_primary(x1), self.dw_cheap(x2)], 1)


class GhostNetBase(nn.Module):
    """Stem (3x3 s2 conv-BN-ReLU) -> stages of ghost bottlenecks from ``cfg`` -> 1x1 LastStageConv ->
    global pool -> 1x1 conv 1280 + ReLU -> dropout -> linear, with the authors' key names.

    ``features_only=True`` builds only stem and bottleneck stages and returns ``[C3, C4, C5]`` (strides
    8/16/32, each taken after the last block at that stride). The final 1x1 LastStageConv (160 -> 960 at 1.0x)
    is part of the ImageNet head, not built: a detection neck gets the 160-channel bottleneck output,
    which saves ~0.15M params and a 960-channel neck input. Pretrained files load with those head keys
    ignored; everything else matches strictly.
    """

    conv_bn_pairs = (("conv_stem", "bn1"),)  # for layers.fuse_conv_bn_modules
    cfg: list = GHOSTNET_CFG
    head_width_factor: float = 1.0  # final 1x1 conv width = last expansion * width * this
    pretrained_hint = "build the model with the width (and num_classes) the file was trained for"

    def __init__(self, width: float = 1.0, num_classes: int = 1000, features_only: bool = False,
                 pretrained: str | os.PathLike | None = None, dropout: float = 0.2, in_chans: int = 3,
                 **block_options):
        super().__init__()
        self.width = width
        self.num_classes = num_classes
        self.features_only = features_only

        stem_chs = make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(in_chans, stem_chs, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_chs)
        self.act1 = nn.ReLU(inplace=True)

        stages, stage_strides, stage_channels = [], [], []
        in_chs, net_stride, block_index = stem_chs, 2, 0
        for stage_cfg in self.cfg:
            layers = []
            for kernel, exp, out, se_ratio, stride in stage_cfg:
                out_chs, mid_chs = make_divisible(out * width, 4), make_divisible(exp * width, 4)
                layers.append(self.make_block(in_chs, mid_chs, out_chs, kernel, stride, se_ratio, block_index,
                                              **block_options))
                in_chs, net_stride, block_index = out_chs, net_stride * stride, block_index + 1
            stages.append(nn.Sequential(*layers))
            stage_strides.append(net_stride)
            stage_channels.append(in_chs)

        if features_only:
            # last stage at each stride; stages after the stride-32 tap (none here) are not built
            self.feature_indices = [max(i for i, s in enumerate(stage_strides) if s == target)
                                    for target in FEATURE_STRIDES]
            self.out_channels = [stage_channels[i] for i in self.feature_indices]
            self.strides = list(FEATURE_STRIDES)
            self.blocks = nn.Sequential(*stages[: self.feature_indices[-1] + 1])
            unbuilt = range(self.feature_indices[-1] + 1, len(stages) + 1)  # + the final LastStageConv stage
            skip = tuple(f"blocks.{i}." for i in unbuilt) + ("conv_head.", "classifier.")
        else:
            last_exp = self.cfg[-1][-1][1]
            feat_chs = make_divisible(last_exp * width * self.head_width_factor, 4)
            stages.append(nn.Sequential(LastStageConv(in_chs, feat_chs)))
            self.blocks = nn.Sequential(*stages)
            self.global_pool = nn.AdaptiveAvgPool2d(1)
            self.conv_head = nn.Conv2d(feat_chs, HEAD_CHANNELS, 1, bias=True)
            self.act2 = nn.ReLU(inplace=True)
            self.dropout = nn.Dropout(dropout)
            self.classifier = nn.Linear(HEAD_CHANNELS, num_classes)
            skip = ()

        if pretrained:
            load_pretrained(self, pretrained, skip_prefixes=skip, hint=self.pretrained_hint)

    def make_block(self, in_chs, mid_chs, out_chs, kernel, stride, se_ratio, block_index) -> nn.Module:
        """One bottleneck of the table; subclasses swap the ghost modules. ``block_index`` counts from 0."""
        return GhostBottleneck(in_chs, mid_chs, out_chs, kernel, stride, se_ratio)

    def forward(self, x: torch.Tensor):
        x = self.act1(self.bn1(self.conv_stem(x)))
        if self.features_only:
            features = []
            for i, stage in enumerate(self.blocks):
                x = stage(x)
                if i in self.feature_indices:
                    features.append(x)
            return features
        x = self.global_pool(self.blocks(x))
        x = self.act2(self.conv_head(x)).flatten(1)
        return self.classifier(self.dropout(x))


@register_backbone("ghostnet")
class GhostNet(GhostNetBase):
    """GhostNet: ``GhostNet(width=1.0, num_classes=1000, features_only=False, pretrained=None)``.

    Paper table (params / MACs at 224): 0.5x 2.6M/42M, 1.0x 5.2M/141M, 1.3x 7.3M/226M.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1000, features_only: bool = False,
                 pretrained: str | os.PathLike | None = None, dropout: float = 0.2, in_chans: int = 3):
        # explicit arguments (no **block_options): the registry checks a spec's keys against this signature
        super().__init__(width, num_classes, features_only, pretrained, dropout, in_chans)


# the paper's widths under timm's names: {"name": "ghostnet_130", "features_only": true}
GHOSTNET_VARIANTS = {"ghostnet_050": 0.5, "ghostnet_100": 1.0, "ghostnet_130": 1.3}
for _name, _width in GHOSTNET_VARIANTS.items():
    register_variant(_name, GhostNet, width=_width)
