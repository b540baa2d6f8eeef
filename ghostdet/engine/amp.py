"""Mixed precision for training, set up in one place: the autocast dtype the ``amp`` setting and the device
give, and the matching gradient scaler (enabled for float16 only; bfloat16 needs none)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ghostdet.utils.errors import ConfigError

AMP_SETTINGS = ("auto", "bf16", "fp16", "off", "false", "none")
_OFF = ("off", "false", "none")


@dataclass
class MixedPrecision:
    dtype: torch.dtype | None  # None: full precision
    scaler: torch.amp.GradScaler

    def autocast(self):
        """The forward pass's context: CUDA autocast in ``dtype``, or nothing."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)


def mixed_precision(setting, device: torch.device) -> MixedPrecision:
    """``amp=auto`` (CUDA: bf16 where supported, else fp16), ``bf16``, ``fp16`` or ``off``; always off on CPU/MPS."""
    amp = str(setting).lower()
    if amp not in AMP_SETTINGS:
        raise ConfigError(f"amp={setting}: expected auto, bf16, fp16 or off")
    dtype = None
    if device.type == "cuda" and amp not in _OFF:
        fp16 = amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported())
        dtype = torch.float16 if fp16 else torch.bfloat16
    return MixedPrecision(dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16))
