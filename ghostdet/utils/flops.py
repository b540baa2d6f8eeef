"""Parameter and multiply-add counts.

Convention of the GhostNet/RepGhost/G-Ghost papers: multiply-adds of convolutions and linear layers only
(BN, activations, pooling, element-wise ops not counted). Counted by ``torch.utils.flop_counter``, which
reports 2 FLOPs per multiply-add for exactly those ops (bias adds excluded).
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared ones once); buffers such as BN statistics are not parameters."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_params_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 224, 224)) -> tuple[int, int]:
    """``(params, MACs)`` of one eval-mode forward pass on a zero input of ``input_size`` (batch included).

    The model's train/eval mode is restored afterwards.
    """
    ref = next(model.parameters(), None)
    x = torch.zeros(input_size, device=ref.device if ref is not None else "cpu",
                    dtype=ref.dtype if ref is not None else torch.float32)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return count_params(model), counter.get_total_flops() // 2


def gflops(model: nn.Module, imgsz: int | tuple[int, int] = 640) -> float:
    """GFLOPs at batch 1 and ``imgsz`` (int or (h, w)) in the YOLO convention: 2 x MACs / 1e9."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    return 2 * count_params_macs(model, (1, 3, h, w))[1] / 1e9
