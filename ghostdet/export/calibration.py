"""Images an export works on, preprocessed exactly as at inference (the detect reader, letterbox to the export size
with pad 114, RGB, 0-1, 1 x 3 x H x W float32): the check image of ``verify_export`` (a real photo: ``--source``, else
one of the checkpoint's data, else the shared demo photo; a synthetic scene only as a last resort, with a warning),
and the calibration set of every int8 quantizer (up to ``CALIBRATION_IMAGES`` train images, spread evenly)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ghostdet.utils.errors import ConfigError, DataError, GhostdetError

log = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300
SHARED_PHOTO = Path("images") / "dog.jpg"  # under $GHOSTDET_SHARED_DATA or ../shared/data (the tests' data)


def check_image(source: str | os.PathLike | None, imgsz: tuple[int, int]) -> tuple[np.ndarray, str]:
    """A 1 x 3 x H x W float 0-1 letterboxed batch from ``source`` (an image file), or a synthetic scene
    (coloured shapes on a gradient, deterministic) when None. Returns ``(batch, description)``."""
    from ghostdet.data.image_io import read_image, to_chw_batch
    from ghostdet.data.letterbox import letterbox

    if source is not None:
        image, what = read_image(source), str(source)
    else:
        image, what = synthetic_scene(), "a synthetic image (pass --source IMAGE to check on a real photo)"
    padded, _, _ = letterbox(image, imgsz)
    return to_chw_batch([padded]), what


def shared_photo() -> Path | None:
    """The shared demo photo (``images/dog.jpg`` of the test data), when it is there."""
    root = Path(os.environ.get("GHOSTDET_SHARED_DATA", "../shared/data"))
    path = root / SHARED_PHOTO
    return path if path.is_file() else None


def find_check_image(data_cfg=None) -> Path | None:
    """A real photo to check an export on: the first val image of ``data_cfg`` (the checkpoint's data, read only),
    else the shared demo photo; None when neither is at hand (the caller falls back to a synthetic scene, warning)."""
    if data_cfg is not None:
        from ghostdet.data import build_dataset

        try:
            records = build_dataset(data_cfg, split="val", imgsz=64, augment=False, read_only=True).records
            if records:
                return Path(records[0].file)
        except (GhostdetError, OSError) as e:  # moved or absent data: the next candidate
            log.debug("no check image from the data config: %s", e)
    return shared_photo()


def synthetic_scene(height: int = 480, width: int = 640) -> np.ndarray:
    """An RGB uint8 test scene with edges and colours (pure noise would leave every score near zero)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([xs / width * 255, ys / height * 255, np.full_like(xs, 128)], -1).astype(np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        w, h = int(rng.integers(30, 200)), int(rng.integers(30, 200))
        if rng.random() < 0.5:
            cv2.rectangle(image, (x, y), (x + w, y + h), color, -1)
        else:
            cv2.circle(image, (x + w // 2, y + h // 2), min(w, h) // 2, color, -1)
    return image


def calibration_images(data_cfg, imgsz: tuple[int, int], count: int = CALIBRATION_IMAGES, read_only: bool = False
                       ) -> tuple[list[np.ndarray], str]:
    """Up to ``count`` train-split images of ``data_cfg`` as 1 x 3 x H x W float32 0-1 batches, preprocessed as at
    inference; ``(batches, description)``. The images are spread evenly over the split (deterministic)."""
    from ghostdet.data import build_dataset

    if count < 1:
        raise ConfigError(f"calibration images {count}: must be >= 1 (a few hundred is usual)")
    dataset = build_dataset(data_cfg, split="train", imgsz=square(imgsz, "calibration"), augment=False,
                            read_only=read_only)
    files = [rec.file for rec in dataset.records]
    if len(files) > count:
        files = [files[i] for i in np.linspace(0, len(files) - 1, count).round().astype(int)]
    batches = images_to_batches(files, imgsz)
    return batches, f"{len(batches)} images of the train split of {data_root(data_cfg)}"


def images_to_batches(files: Iterable[str | os.PathLike], imgsz: tuple[int, int]) -> list[np.ndarray]:
    """Image files -> letterboxed 1 x 3 x H x W float32 0-1 batches (the inference preprocessing); unreadable files
    are skipped with a warning naming them."""
    batches = []
    for file in files:
        try:
            batches.append(check_image(file, imgsz)[0])
        except DataError as e:
            log.warning("calibration: skipping %s", e)
    if not batches:
        raise DataError("no readable calibration image; check the data config's train split")
    return batches


def synthetic_calibration(imgsz: tuple[int, int], count: int = 32) -> list[np.ndarray]:
    """``count`` synthetic scenes (shapes on a gradient, flipped and shaded variants), letterboxed: calibration when
    no data is at hand. Enough for latency; for accuracy calibrate on real images."""
    from ghostdet.data.letterbox import letterbox

    base = synthetic_scene()
    out = []
    for i in range(count):
        image = base[:, ::-1] if i % 2 else base
        image = image[::-1] if (i // 2) % 2 else image
        image = np.clip(image.astype(np.float32) * (0.6 + 0.8 * ((i * 7) % 11) / 10), 0, 255).astype(np.uint8)
        padded, _, _ = letterbox(np.ascontiguousarray(image), imgsz)
        out.append(np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0))
    return out


def batched(images: Sequence[np.ndarray], batch: int | None) -> list[np.ndarray]:
    """1-image batches -> batches of ``batch`` (a fixed-batch export's input); the last partial batch is dropped
    unless it is the only one (then it is padded by repeating images)."""
    if not batch or batch == 1:
        return list(images)
    groups = [np.concatenate(images[i:i + batch]) for i in range(0, len(images) - batch + 1, batch)]
    if not groups:
        groups = [np.concatenate([images[i % len(images)] for i in range(batch)])]
    return groups


def square(imgsz, what: str) -> int:
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    if h != w:
        raise ConfigError(f"imgsz {h}x{w}: {what} runs at a square size (the val loader's); export with --imgsz {max(h, w)}")
    return int(h)


def data_root(data_cfg) -> str:
    try:
        return str(data_cfg.get("root"))
    except AttributeError:
        return "the data config"


__all__ = ["CALIBRATION_IMAGES", "batched", "calibration_images", "check_image", "find_check_image",
           "images_to_batches", "shared_photo", "synthetic_calibration", "synthetic_scene"]
