"""One place that turns a user's device string into a usable torch.device."""
from __future__ import annotations

import logging
import os

import torch

from ghostdet.utils.errors import ConfigError

log = logging.getLogger(__name__)

_EXPECTED = "expected auto, cpu, cuda, cuda:N, N (GPU index) or mps"


def select_device(spec: str | int | torch.device | None = "auto", local_rank: int = 0,
                  world_size: int = 1) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``N`` (ultralytics style), ``mps``.

    Under a distributed launch (torchrun: ``world_size`` > 1, ``local_rank`` = LOCAL_RANK) every process gets the
    same device string, so ``auto``/``cuda``/``cuda:0``/``0`` all mean "this rank's GPU": ``cuda:LOCAL_RANK``
    (logged). When each process sees exactly one GPU (``CUDA_VISIBLE_DEVICES`` set per process) that GPU is
    ``cuda:0`` for every rank. Another index (``cuda:1``) is only accepted on LOCAL_RANK 0 (one process per
    machine, on the GPU the user picked); on a rank > 0 it would put several ranks on one GPU, a ConfigError
    that says to use ``device=cuda``.
    Raises ConfigError with a one-line message when the device does not exist here.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    s = str(spec if spec not in (None, "") else "auto").strip().lower()
    if s.isdigit():
        s = f"cuda:{s}"
    if s == "auto":
        s = "cuda" if torch.cuda.is_available() else "cpu"
    if s == "cpu":
        return torch.device("cpu")
    if s == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device=mps: MPS is not available on this machine; use device=cpu or device=auto")
        return torch.device("mps")
    if s == "cuda" or s.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device={spec}: CUDA is not available (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}); use device=cpu or device=auto"
            )
        index = None
        if ":" in s:
            try:
                index = int(s.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"device={spec}: {_EXPECTED}") from None
        count = torch.cuda.device_count()
        if world_size > 1:
            index = _rank_gpu(spec, index, local_rank, world_size, count)
        elif index is None:
            index = local_rank
        if index >= count:
            where = f" (LOCAL_RANK={local_rank}: start at most {count} process(es) per machine)" \
                if world_size > 1 else ""
            raise ConfigError(f"device={spec}: there are only {count} CUDA device(s){where}; "
                              f"use cuda:0..cuda:{count - 1}")
        return torch.device("cuda", index)
    raise ConfigError(f"device={spec}: {_EXPECTED}")


def _rank_gpu(spec, index: int | None, local_rank: int, world_size: int, count: int) -> int:
    """The GPU index of this process under a distributed launch (the rule in ``select_device``)."""
    if count == 1 and os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        chosen = 0 if index is None else index  # each process was given its own single GPU
    elif index in (None, 0):
        chosen = local_rank
    elif local_rank == 0:
        chosen = index
    else:
        raise ConfigError(f"device={spec} under a distributed launch (LOCAL_RANK={local_rank}, "
                          f"WORLD_SIZE={world_size}) would put every process on GPU {index}; use device=cuda "
                          f"(each rank takes cuda:LOCAL_RANK) or give each process its own GPU with CUDA_VISIBLE_DEVICES")
    log.info("device=%s, distributed launch (WORLD_SIZE=%d): LOCAL_RANK %d uses cuda:%d",
             spec, world_size, local_rank, chosen)
    return chosen


# the instruction-set extensions that decide which runtime/precision is fastest (bf16, VNNI int8, AMX)
CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_name() -> str:
    """The CPU's model name with the features above that it reports, e.g. ``AMD EPYC (avx2 avx512f ...)``."""
    import platform
    from pathlib import Path

    name, flags = platform.processor() or platform.machine() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == (platform.processor() or platform.machine() or "unknown CPU"):
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    found = [f for f in CPU_FEATURES if f in flags]
    return f"{name} ({' '.join(found)})" if found else name

