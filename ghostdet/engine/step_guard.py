"""The optimizer step's guard against non-finite values: the flags of an accumulation window read on the host in one
device sync (each the minimum over ranks under DDP, so every rank skips and stops together), the window's finite losses
added to the epoch's sums, a warning for each non-finite one, and ``TrainingError`` after ``max_nonfinite_steps`` in a
row. ``Trainer._optimizer_step`` (engine/trainer.py) calls these around the clip and the step."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ghostdet.engine import distributed as dist_utils
from ghostdet.engine.run_log import LOSS_KEYS
from ghostdet.engine.state import EpochStats
from ghostdet.utils.errors import GhostdetError

log = logging.getLogger("ghostdet.engine.trainer")  # the trainer's messages, as before this module was split off


class TrainingError(GhostdetError):
    """Training cannot go on (e.g. the loss stayed non-finite); the last good checkpoint is kept."""


def read_step_flags(flags: list[torch.Tensor], norm: torch.Tensor | None, stop_requested: bool, distributed: bool,
                    device: torch.device) -> tuple[list[bool], bool, bool]:
    """``(finite, norm_finite, stop)``: the window's loss flags, the gradient norm's finiteness (True without a norm)
    and the stop request, on the host: the step's one device sync. Under DDP each is the minimum over ranks (one
    all-reduce)."""
    values = torch.stack(flags).float()
    norm_flag = [torch.isfinite(norm).float().view(1).to(values.device)] if norm is not None else []
    values = torch.cat([values, *norm_flag, values.new_full((1,), 0.0 if stop_requested else 1.0)])
    if distributed:
        values = dist_utils.all_reduce(values, device, torch.distributed.ReduceOp.MIN)
    host = [v > 0 for v in values.tolist()]
    stop = not host.pop()
    norm_finite = host.pop() if norm is not None else True
    return host, norm_finite, stop


def account_window(epoch: int, window: list, finite: list[bool], stats: EpochStats, max_nonfinite: int,
                   last_checkpoint: Path) -> None:
    """Add the window's finite losses (``window``: (iteration, flag, loss items)) to the epoch's sums; warn of each
    non-finite one and raise ``TrainingError`` after ``max_nonfinite`` in a row."""
    for (i, _, items), ok in zip(window, finite):
        if ok:
            stats.bad_in_row = 0
            stats.n_good += 1
            values = loss_items(items)
            stats.loss_sums += torch.tensor([values.get(k, 0.0) for k in LOSS_KEYS], dtype=torch.float64)
            continue
        stats.bad_in_row += 1
        log.warning("epoch %d iteration %d: non-finite loss (%s), step skipped", epoch + 1, i + 1,
                    ", ".join(f"{k} {v:.4g}" for k, v in loss_items(items).items()))
        if stats.bad_in_row >= max_nonfinite:
            raise TrainingError(
                f"{stats.bad_in_row} non-finite losses in a row at epoch {epoch + 1}; stopped "
                f"(last good checkpoint: {last_checkpoint}); lower optimizer.lr or check the data"
            )


def loss_items(items: dict) -> dict:
    """The loss's logging dict as floats (reading a tensor value waits for the device)."""
    return {k: float(v) for k, v in items.items()}


__all__ = ["TrainingError", "account_window", "loss_items", "read_step_flags"]
