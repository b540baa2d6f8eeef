"""torch.distributed helpers for runs launched by ``torchrun`` (one process per GPU, or gloo on CPU).

Every collective here takes the training ``device`` and runs on a tensor there: NCCL reduces and broadcasts
CUDA tensors only, and its object collectives talk from the current CUDA device, which the trainer sets
(``torch.cuda.set_device``) before :func:`init_distributed`.
"""
from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def env_world() -> tuple[int, int, int]:
    """``(rank, local_rank, world_size)`` from torchrun's environment; ``(0, 0, 1)`` for a plain run."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def init_distributed(device: torch.device, timeout_s: int = 1800) -> bool:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1). NCCL on CUDA, gloo on CPU.
    A CUDA ``device`` must already be the current one (the process group is bound to it)."""
    _, _, world = env_world()
    if world <= 1 or is_distributed():
        return is_distributed()
    cuda = device.type == "cuda"
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s),
                            device_id=device if cuda else None)
    log.info("distributed: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj, device: torch.device, src: int = 0):
    """Send a small picklable Python object from ``src`` to every rank (e.g. the run dir)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=device)
    return box[0]


def shared_run_dir(run_dir: str | Path, device: torch.device) -> Path:
    """Rank 0's run dir on every rank (their own may differ by a clock tick); ``run_dir`` when not distributed."""
    return Path(broadcast_object(str(run_dir), device))


def all_reduce(t: torch.Tensor, device: torch.device, op=None) -> torch.Tensor:
    """``t`` reduced over ranks (``op``: sum by default), as a new tensor on ``device``; ``t`` when not distributed."""
    if not is_distributed():
        return t
    t = t.to(device, copy=True)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op is None else op)
    return t


def all_reduce_mean(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Mean of ``t`` over ranks (for logging losses), on ``device``."""
    if not is_distributed():
        return t
    return all_reduce(t, device) / dist.get_world_size()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (e.g. Ctrl-C reached one process)."""
    if not is_distributed():
        return bool(flag)
    return bool(all_reduce(torch.tensor([float(flag)]), device, dist.ReduceOp.MAX).item())


def broadcast_tensors(tensors, src: int = 0) -> None:
    """Overwrite every tensor in place with rank ``src``'s (they live on the training device)."""
    if not is_distributed():
        return
    for t in tensors:
        dist.broadcast(t, src)


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
