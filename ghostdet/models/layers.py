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


# ---------------------------------------------------------------- BatchNorm training in channels_last on the CPU
_LANES = 16  # fp32 values per AVX-512 register (two AVX2 registers)


def _row_fold(channels: int, rows: int) -> int:
    """How many pixels to put side by side so that an NHWC map, seen as a (rows/k, k*C) matrix, has rows that are
    a whole number of vector registers wide (C=12 -> k=4, 48 columns); 1 when the pixel count does not divide."""
    k = _LANES // math.gcd(channels, _LANES)
    return k if rows % k == 0 else 1


class _ChannelsLastBatchNormFn(torch.autograd.Function):
    """Training BatchNorm on an NHWC CPU tensor: the forward is torch's own kernel; the backward is written as
    column sums and two fused multiply-adds over the (pixels, channels) matrix. torch's CPU channels_last
    backward falls off its vector path when C is not a multiple of 16 (8, 12, 20, 24, 36, 60, ... — the Ghost
    widths): 5x slower for C=8 at 160x160, 4.6x for C=12 at 80x80 (benchmarks/bench_batchnorm.py)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        y, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var, True, momentum, eps)
        n, c, h, w = x.shape
        k = _row_fold(c, n * h * w)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.k = k
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, weight, mean, invstd = ctx.saved_tensors
        n, c, h, w = x.shape
        k, m = ctx.k, n * h * w
        xm = x.permute(0, 2, 3, 1).reshape(m // k, k * c)  # a view: x is NHWC-contiguous
        gm = grad_y.permute(0, 2, 3, 1).reshape(m // k, k * c)  # a copy only if autograd hands back another layout
        sum_dy = gm.sum(0).view(k, c).sum(0)
        sum_dy_xmu = (gm * xm).sum(0).view(k, c).sum(0) - mean * sum_dy
        # dx = a*dy + b*x + d, per channel a, b, d (the standard BN gradient, expanded)
        a = weight * invstd
        b = -a * invstd.square() * sum_dy_xmu / m
        d = -a * sum_dy / m - b * mean
        gx = torch.addcmul(d.repeat(k), xm, b.repeat(k)).addcmul_(gm, a.repeat(k))
        return (gx.view(n, h, w, c).permute(0, 3, 1, 2), sum_dy_xmu * invstd, sum_dy, None, None, None, None)


class ChannelsLastBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` (same parameters, buffers and state-dict keys) whose training step on an NHWC CPU
    tensor with a channel count off the vector width uses ``_ChannelsLastBatchNormFn``; everything else (eval,
    CUDA, NCHW, C % 16 == 0, momentum=None, no running statistics) is the parent's forward, unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and self.track_running_stats and self.momentum is not None and x.dim() == 4
                and x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[1] % _LANES
                and x.is_contiguous(memory_format=torch.channels_last) and torch.is_grad_enabled()
                and not torch.jit.is_tracing() and not torch.compiler.is_compiling()):
            self.num_batches_tracked.add_(1)
            return _ChannelsLastBatchNormFn.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                                  self.momentum, self.eps)
        return super().forward(x)


def use_channels_last_batchnorm(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Switch every plain ``nn.BatchNorm2d`` in ``model`` to ``ChannelsLastBatchNorm2d`` (or back), in place.
    Only the class changes: the subclass holds no state of its own, so weights, buffers and checkpoints stay."""
    src, dst = (nn.BatchNorm2d, ChannelsLastBatchNorm2d) if enabled else (ChannelsLastBatchNorm2d, nn.BatchNorm2d)
    for module in model.modules():
        if type(module) is src:
            module.__class__ = dst
    return model


def freeze_batchnorm_stats(model: nn.Module) -> nn.Module:
    """Put every BatchNorm layer of ``model`` in eval mode: it normalizes with its running statistics and stops
    updating them, while its affine weights still train. Call after ``model.train()`` (which undoes it)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    return model
