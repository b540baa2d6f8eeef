"""Input sizes, one rule: every side of a detector's input is a multiple of its largest stride (32 for every
Ghost-YOLO head). A size that breaks it is refused with a message that names the nearest valid sizes."""
from __future__ import annotations

from typing import Sequence

from ghostdet.utils.errors import ConfigError

MAX_STRIDE = 32  # the largest stride of the detectors ghostdet builds (strides 8/16/32), when no model is at hand


def max_stride(model=None, strides: Sequence[int] | None = None) -> int:
    """The largest stride of ``model`` (its ``strides``), or of ``strides``; ``MAX_STRIDE`` when neither says."""
    strides = strides if strides is not None else getattr(model, "strides", None)
    return int(max(strides)) if strides else MAX_STRIDE


def _nearest(side: int, stride: int) -> tuple[int, int]:
    """The valid sides just below (at least ``stride``) and just above ``side``."""
    return max(side // stride * stride, stride), -(-side // stride) * stride


def check_imgsz(imgsz, stride: int = MAX_STRIDE, what: str = "imgsz"):
    """``imgsz`` (an int or a sequence of sides) unchanged when every side is a positive multiple of ``stride``;
    else a ConfigError such as ``imgsz=100 is not a multiple of 32 (...); use 96 or 128``."""
    one = isinstance(imgsz, str) or not isinstance(imgsz, Sequence)
    sides = [int(imgsz)] if one else [int(s) for s in imgsz]
    shown = sides[0] if one else tuple(sides)
    if not sides or min(sides) <= 0:
        raise ConfigError(f"{what}={shown}: sizes must be positive multiples of {stride}")
    if all(s % stride == 0 for s in sides):
        return imgsz
    lower, upper = zip(*(_nearest(s, stride) for s in sides))
    fmt = (lambda v: str(v[0])) if one else (lambda v: str(tuple(v)))
    options = fmt(lower) if lower == upper else f"{fmt(lower)} or {fmt(upper)}"
    raise ConfigError(f"{what}={shown} is not a multiple of {stride} (the detector's largest stride); use {options}")


def input_hw(imgsz, stride: int = MAX_STRIDE, what: str = "imgsz") -> tuple[int, int]:
    """``640``, ``[640]`` or ``(h, w)`` -> ``(h, w)``, refused (ConfigError, as ``check_imgsz``) unless every side is a
    positive multiple of ``stride``: the same rule for training, inference and export (no silent rounding)."""
    if isinstance(imgsz, str) or not isinstance(imgsz, Sequence):
        side = int(check_imgsz(int(imgsz), stride, what))
        return side, side
    sides = [int(v) for v in imgsz]
    if len(sides) == 1:
        sides *= 2
    if len(sides) != 2:
        raise ConfigError(f"{what}={list(imgsz)}: give one size or two (height width)")
    check_imgsz(sides, stride, what)
    return sides[0], sides[1]


__all__ = ["MAX_STRIDE", "check_imgsz", "input_hw", "max_stride"]
