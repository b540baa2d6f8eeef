"""Exponential moving average of model weights, with the warm-up ramp YOLOv5/v8 use.

Early in training the weights move fast, so a fixed decay of 0.9999 would average in the random
initialisation for thousands of steps. The effective decay ramps up as ``decay * (1 - exp(-updates / tau))``.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel wrappers."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class ModelEMA:
    """Keeps ``self.module``, an EMA copy of a model (eval mode, no grads), updated after each optimizer step.

    Float tensors of the state dict (parameters and BN running stats) are averaged; integer buffers such as
    BN ``num_batches_tracked`` are copied.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.module = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay_max = float(decay)
        self.tau = float(tau)
        self.updates = int(updates)

    def decay(self) -> float:
        """The decay for the next update (ramps from 0 towards ``decay_max``)."""
        if self.tau <= 0:
            return self.decay_max
        return self.decay_max * (1.0 - math.exp(-self.updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay()
        model_state = unwrap_model(model).state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = model_state[name].detach()
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(d).add_(value.to(ema_value.dtype), alpha=1.0 - d)
            else:
                ema_value.copy_(value)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)
