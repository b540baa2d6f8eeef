"""Optimizer with YOLO-style parameter groups, and the warm-up + cosine/linear learning-rate schedule."""
from __future__ import annotations

import logging
import math
import warnings

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

from ghostdet.utils.errors import ConfigError

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear")
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def check_optimizer_name(name) -> str:
    """``optimizer.name`` (any case) as the lower-case key of ``OPTIMIZERS``, or a ConfigError naming them."""
    key = str(name).lower()
    if key not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name={name!r} is not supported; use one of {', '.join(OPTIMIZERS)}")
    return key


def check_schedule_name(name) -> str:
    """``schedule.name``, one of ``SCHEDULES``, or a ConfigError naming them."""
    if name not in SCHEDULES:
        raise ConfigError(f"schedule.name={name!r} is not supported; use one of {', '.join(SCHEDULES)}")
    return name


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Three groups: conv/linear weights (decayed), norm weights and other 1-D tensors (no decay), biases (no decay).

    Decaying BN scales and biases only shrinks them towards zero and hurts accuracy (Goyal et al. 2017;
    the YOLO and timm recipes). The ``group`` key tells the scheduler which group gets the bias warm-up.
    """
    decay, no_decay, bias = [], [], []
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if name == "bias":
                bias.append(p)
            elif isinstance(module, _NORM_TYPES) or p.ndim <= 1:
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "group": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group": "no_decay"},
        {"params": bias, "weight_decay": 0.0, "group": "bias"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.01, momentum: float = 0.937,
                    weight_decay: float = 5e-4, nesterov: bool = True, betas: tuple[float, float] | None = None,
                    eps: float = 1e-8) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over :func:`param_groups`. ``momentum`` is AdamW's beta1 unless ``betas``."""
    key = check_optimizer_name(name)
    groups = param_groups(model, weight_decay)
    if key == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=bool(nesterov) and momentum > 0)
    b = tuple(betas) if betas is not None else (momentum, 0.999)
    return torch.optim.AdamW(groups, lr=lr, betas=b, eps=eps)


def _momentum_key(group: dict) -> str | None:
    if "betas" in group:
        return "betas"
    return "momentum" if "momentum" in group else None


class WarmupDecayLR(LRScheduler):
    """Per-iteration schedule: linear warm-up over ``warmup_steps``, then cosine or linear decay to
    ``final_lr_ratio * base_lr`` at ``total_steps``. Call ``step()`` once per training iteration.

    During warm-up the bias group starts at ``warmup_bias_lr`` and falls to its scheduled value while the other
    groups rise from 0 (the YOLOv5/v8 recipe, which keeps the head's biases from exploding early), and momentum
    (SGD) / beta1 (AdamW) rises from ``warmup_momentum``. Everything lives in ``state_dict()``, so a resumed run
    continues at exactly the same point.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                 schedule: str = "cosine", final_lr_ratio: float = 0.01, warmup_bias_lr: float = 0.0,
                 warmup_momentum: float | None = None, last_epoch: int = -1):
        check_schedule_name(schedule)
        self.total_steps = max(int(total_steps), 1)
        self.warmup_steps = max(int(warmup_steps), 0)
        self.schedule = schedule
        self.final_lr_ratio = float(final_lr_ratio)
        self.warmup_bias_lr = float(warmup_bias_lr)
        self.warmup_momentum = warmup_momentum
        for group in optimizer.param_groups:
            key = _momentum_key(group)
            if key is not None:
                group.setdefault("initial_momentum", group[key][0] if key == "betas" else group[key])
        super().__init__(optimizer, last_epoch)

    def lr_factor(self, step: int) -> float:
        """Multiplier of the base LR after warm-up (1 at step 0, ``final_lr_ratio`` at ``total_steps``)."""
        progress = min(max(step / self.total_steps, 0.0), 1.0)
        if self.schedule == "cosine":
            return self.final_lr_ratio + (1.0 - self.final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0 - (1.0 - self.final_lr_ratio) * progress

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        factor = self.lr_factor(step)
        lrs = []
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            target = base_lr * factor
            if step < self.warmup_steps:
                w = step / self.warmup_steps
                start = self.warmup_bias_lr if group.get("group") == "bias" else 0.0
                target = start + (target - start) * w
            lrs.append(target)
        return lrs

    def step(self, epoch=None):  # noqa: D102 (same contract as LRScheduler.step)
        with warnings.catch_warnings():
            # stepped per iteration while gradients accumulate: the first iterations come before any optimizer.step()
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            super().step(epoch)
        if self.warmup_momentum is None:
            return
        step = self.last_epoch
        w = min(step / self.warmup_steps, 1.0) if self.warmup_steps else 1.0
        for group in self.optimizer.param_groups:
            key = _momentum_key(group)
            if key is None or "initial_momentum" not in group:
                continue
            m = self.warmup_momentum + (group["initial_momentum"] - self.warmup_momentum) * w
            if key == "betas":
                group["betas"] = (m, group["betas"][1])
            else:
                group["momentum"] = m


def build_training_optimizer(cfg, model: nn.Module, iters_per_epoch: int, world_size: int = 1):
    """``(accumulate, optimizer, scheduler)`` of a train config (``configs/train.yaml``: ``batch``, ``nbs``,
    ``epochs``, ``optimizer``, ``schedule``) for ``world_size`` processes of ``iters_per_epoch`` iterations."""
    opt, sch = cfg.optimizer, cfg.schedule
    nbs = int(cfg.get("nbs", 64))
    total_batch = int(cfg.batch) * world_size
    # accumulate gradients to a nominal batch of `nbs` images; weight decay is defined per nominal batch
    accumulate = max(round(nbs / total_batch), 1)
    weight_decay = float(opt.weight_decay) * total_batch * accumulate / nbs
    optimizer = build_optimizer(model, name=opt.name, lr=float(opt.lr), momentum=float(opt.momentum),
                                weight_decay=weight_decay, nesterov=bool(opt.get("nesterov", True)))
    total_steps = int(cfg.epochs) * iters_per_epoch
    warmup = max(round(float(sch.warmup_epochs) * iters_per_epoch), int(sch.get("min_warmup_iters", 0))) \
        if float(sch.warmup_epochs) > 0 else 0
    scheduler = WarmupDecayLR(optimizer, total_steps=total_steps, warmup_steps=min(warmup, total_steps // 2),
                              schedule=str(sch.name), final_lr_ratio=float(sch.final_lr_ratio),
                              warmup_bias_lr=float(sch.get("warmup_bias_lr", 0.0)),
                              warmup_momentum=sch.get("warmup_momentum"))
    return accumulate, optimizer, scheduler
