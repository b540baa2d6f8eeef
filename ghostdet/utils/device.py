"""One place that turns a user's device string into a usable torch.device."""
from __future__ import annotations

import torch

from ghostdet.utils.errors import ConfigError

_EXPECTED = "expected auto, cpu, cuda, cuda:N, N (GPU index) or mps"


def select_device(spec: str | int | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N``, ``N`` (ultralytics style), ``mps``.

    Under torchrun, ``auto``/``cuda`` give each process its own GPU (``cuda:LOCAL_RANK``).
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
        index = local_rank
        if ":" in s:
            try:
                index = int(s.split(":", 1)[1])
            except ValueError:
                raise ConfigError(f"device={spec}: {_EXPECTED}") from None
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device={spec}: there are only {torch.cuda.device_count()} CUDA device(s); "
                              f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
        return torch.device("cuda", index)
    raise ConfigError(f"device={spec}: {_EXPECTED}")
