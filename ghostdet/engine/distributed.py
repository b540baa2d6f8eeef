"""torch.distributed helpers for runs launched by ``torchrun`` (one process per GPU, or gloo on CPU)."""
from __future__ import annotations

import datetime
import logging
import os

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
    """Join the process group when launched by torchrun (WORLD_SIZE > 1). NCCL on CUDA, gloo on CPU."""
    _, _, world = env_world()
    if world <= 1 or is_distributed():
        return is_distributed()
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    log.info("distributed: rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """Send a small picklable Python object from ``src`` to every rank (e.g. a stop flag)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over ranks (for logging losses)."""
    if not is_distributed():
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / dist.get_world_size()


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
