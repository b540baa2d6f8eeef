"""Letterbox resize and its exact inverse: the one place that maps between original and input pixels."""
from __future__ import annotations

import cv2
import numpy as np
import torch

PAD_VALUE = 114  # the grey of letterbox borders, mosaic canvases and stand-ins for unreadable images (YOLO's)


def letterbox(image: np.ndarray, new_shape: int | tuple[int, int] = 640, pad_value: int = PAD_VALUE,
              scaleup: bool = True):
    """Resize ``image`` (HxWxC uint8) keeping its aspect ratio and pad it to ``new_shape`` (h, w).

    Returns ``(padded, ratio, (pad_left, pad_top))``. A point p in the original image lands at
    ``p * ratio + pad`` in the padded image; ``unletterbox_boxes`` is the inverse.
    """
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    h, w = image.shape[:2]
    ratio = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        ratio = min(ratio, 1.0)
    new_w, new_h = max(1, int(round(w * ratio))), max(1, int(round(h * ratio)))
    if (new_w, new_h) != (w, h):
        interp = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, (new_w, new_h), interpolation=interp)
    pad_w, pad_h = new_shape[1] - new_w, new_shape[0] - new_h
    left, top = pad_w // 2, pad_h // 2
    padded = cv2.copyMakeBorder(
        image, top, pad_h - top, left, pad_w - left, cv2.BORDER_CONSTANT, value=(pad_value,) * 3
    )
    if padded.ndim == 2:  # copyMakeBorder drops a trailing channel axis of size 1
        padded = padded[..., None]
    return padded, ratio, (left, top)


def letterbox_boxes(boxes, ratio: float, pad: tuple[float, float]):
    """Map xyxy boxes from original-image pixels into letterboxed input pixels."""
    offset = [pad[0], pad[1], pad[0], pad[1]]
    if isinstance(boxes, torch.Tensor):
        return boxes * ratio + boxes.new_tensor(offset)
    return np.asarray(boxes, dtype=np.float32) * ratio + np.asarray(offset, dtype=np.float32)


def unletterbox_boxes(boxes, ratio: float, pad: tuple[float, float], orig_shape: tuple[int, int] | None = None):
    """Map xyxy boxes from letterboxed input pixels back to original-image pixels (clipped to ``orig_shape`` (h, w))."""
    offset = [pad[0], pad[1], pad[0], pad[1]]
    if isinstance(boxes, torch.Tensor):
        out = (boxes - boxes.new_tensor(offset)) / ratio
        if orig_shape is not None:
            h, w = orig_shape
            out[..., 0::2] = out[..., 0::2].clamp(0, w)
            out[..., 1::2] = out[..., 1::2].clamp(0, h)
        return out
    out = (np.asarray(boxes, dtype=np.float32) - np.asarray(offset, dtype=np.float32)) / ratio
    if orig_shape is not None:
        h, w = orig_shape
        out[..., 0::2] = out[..., 0::2].clip(0, w)
        out[..., 1::2] = out[..., 1::2].clip(0, h)
    return out
