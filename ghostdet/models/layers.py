"""Building blocks shared by backbones, necks and heads."""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_weights


def make_divisible(v: float, divisor: int = 4, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` without dropping more than 10% (the GhostNet/MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def hard_sigmoid(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """relu6(x + 3) / 6, the gate GhostNet's squeeze-excitation uses."""
    return F.hardsigmoid(x, inplace=inplace)  # one kernel instead of add, clamp, divide


def add_residual(out: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
    """``out + shortcut``, adding in place into ``out`` (a block's freshly made output) when autograd is off:
    one full-size allocation less per residual block, which on a CPU saves the page faults of a new
    high-resolution map."""
    return out + shortcut if torch.is_grad_enabled() else out.add_(shortcut)


class ConvBNAct(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation. ``fuse()`` folds the BN into the conv."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 act: bool | nn.Module = True):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        self.act = (nn.ReLU(inplace=True) if act is True else act) if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class DepthwiseSeparableConv(nn.Module):
    """Depthwise kxk conv + BN + ReLU, then pointwise 1x1 conv + BN + ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 5, stride: int = 1):
        super().__init__()
        self.dw = ConvBNAct(in_chs, in_chs, kernel_size, stride, groups=in_chs)
        self.pw = ConvBNAct(in_chs, out_chs, 1)

    def forward(self, x):
        return self.pw(self.dw(x))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation as in GhostNet/RepGhost: global average pool, 1x1 reduce + ReLU, 1x1 expand,
    hard-sigmoid gate. Reduced channels are rounded to a multiple of 4. Keys ``conv_reduce``/``conv_expand``
    follow the authors' release."""

    def __init__(self, in_chs: int, se_ratio: float = 0.25, divisor: int = 4):
        super().__init__()
        reduced_chs = make_divisible(in_chs * se_ratio, divisor)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)

    def forward(self, x):
        gate = self.conv_expand(self.act1(self.conv_reduce(x.mean((2, 3), keepdim=True))))
        return x * hard_sigmoid(gate)


class GhostModule(nn.Module):
    """Ghost module (Han et al., CVPR 2020): a primary conv makes ``ceil(out/ratio)`` maps, a cheap depthwise
    conv makes the rest from them; both concatenated. Keys follow the authors' release
    (``primary_conv.{0,1}``, ``cheap_operation.{0,1}``) so their checkpoints load by name."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, ratio: int = 2, dw_size: int = 3,
                 stride: int = 1, act: bool = True):
        super().__init__()
        self.out_chs = out_chs
        init_chs = math.ceil(out_chs / ratio)
        new_chs = init_chs * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, init_chs, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_chs),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_chs, new_chs, dw_size, 1, dw_size // 2, groups=init_chs, bias=False),
            nn.BatchNorm2d(new_chs),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        return out if out.shape[1] == self.out_chs else out[:, : self.out_chs]


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to ``bn(conv(x))`` in eval mode (torch's own folding arithmetic; inputs untouched)."""
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                    bn.weight, bn.bias)
    return fused


@torch.no_grad()
def fuse_conv_bn_modules(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d that directly follows a Conv2d into that conv, in place: siblings in a
    Sequential, ``conv``/``bn`` of ConvBNAct, and the ``(conv, bn)`` attribute pairs a block lists in its
    ``conv_bn_pairs`` class attribute (blocks whose forward applies ``bn(conv(x))`` by attribute, e.g. the
    backbones' bottlenecks). Outputs stay the same in eval mode."""
    for module in list(model.modules()):
        if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn(module.conv, module.bn)
            module.bn = nn.Identity()
        elif isinstance(module, nn.Sequential):
            keys = list(module._modules.keys())
            for a, b in zip(keys, keys[1:]):
                conv, bn = module._modules[a], module._modules[b]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module._modules[a] = fuse_conv_bn(conv, bn)
                    module._modules[b] = nn.Identity()
        for conv_name, bn_name in getattr(module, "conv_bn_pairs", ()):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return model
