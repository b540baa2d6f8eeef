"""Reading images: upright (EXIF orientation applied), 8-bit RGB, whatever the file's mode.

``cv2.imread(IMREAD_COLOR)`` is the fast path: it applies the EXIF orientation and turns grayscale,
RGBA (alpha dropped), palette and 16-bit images into 8-bit 3-channel. PIL is the fallback for what
OpenCV cannot decode and the scan-time probe (header only, no full decode).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ghostdet.utils.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".dng", ".mpo", ".pfm")
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90°/270°
_EXIF_FORMATS = ("JPEG", "MPO", "TIFF", "WEBP", "PNG")


class ImageProbe:
    """What the scan learns from an image header: upright size and EXIF orientation, or why it is unusable."""

    __slots__ = ("height", "width", "orientation", "error")

    def __init__(self, height: int = 0, width: int = 0, error: str | None = None, orientation: int = 1):
        self.height, self.width, self.error, self.orientation = height, width, error, orientation

    @property
    def stored_size(self) -> tuple[int, int]:
        """(h, w) of the pixel array as stored, before the EXIF rotation."""
        return (self.width, self.height) if self.orientation in _SWAPS_AXES else (self.height, self.width)


def probe_image(path: str | Path) -> ImageProbe:
    """Check that ``path`` is a decodable image without decoding all of it; return its upright size.

    Catches empty files, random bytes, text, corrupt PNG chunks (``verify``) and truncated JPEGs (no
    end-of-image marker, confirmed by a full decode so trailing bytes after a valid image are fine).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return ImageProbe(error="empty file")
        with Image.open(path) as im:
            width, height = im.size
            fmt = im.format
            im.verify()  # must come straight after open: checks PNG chunk CRCs and the like
        if width < 1 or height < 1:
            return ImageProbe(error=f"invalid size {width}x{height}")
        with Image.open(path) as im:  # a second, header-only open for EXIF
            orientation = im.getexif().get(_EXIF_ORIENTATION, 1) if fmt in _EXIF_FORMATS else 1
        if orientation not in range(1, 9):
            orientation = 1
        if fmt == "JPEG" and not _has_jpeg_end(path):
            with Image.open(path) as im:
                im.load()  # raises on a truly truncated file (LOAD_TRUNCATED_IMAGES is off)
    except UnidentifiedImageError:
        return ImageProbe(error="not an image (unrecognised format)")
    except Exception as e:  # noqa: BLE001 - any parse failure of a broken file means "unusable", never a crash
        return ImageProbe(error=f"unreadable image ({type(e).__name__}: {_one_line(e)})")
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return ImageProbe(height, width, orientation=orientation)


def exif_upright_boxes(boxes: np.ndarray, orientation: int, stored_size: tuple[int, int]) -> np.ndarray:
    """Map xyxy boxes drawn on the stored pixel array into the upright (EXIF-applied) image.

    ``stored_size`` is (h, w) before rotation. Orientation 6 means "rotate 90° clockwise to display".
    """
    h, w = stored_size
    x1, y1, x2, y2 = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T)
    corners = {  # where the stored corners (x1, y1) and (x2, y2) land, per orientation
        1: (x1, y1, x2, y2), 2: (w - x1, y1, w - x2, y2), 3: (w - x1, h - y1, w - x2, h - y2),
        4: (x1, h - y1, x2, h - y2), 5: (y1, x1, y2, x2), 6: (h - y1, x1, h - y2, x2),
        7: (h - y1, w - x1, h - y2, w - x2), 8: (y1, w - x1, y2, w - x2),
    }[orientation]
    ax, ay, bx, by = corners
    return np.stack([np.minimum(ax, bx), np.minimum(ay, by), np.maximum(ax, bx), np.maximum(ay, by)], axis=1)


def _has_jpeg_end(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-2, 2)
        return f.read(2) == b"\xff\xd9"


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split()) or type(e).__name__


_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def read_image(path: str | Path, expected_size: tuple[int, int] | None = None, reduce: int = 1) -> np.ndarray:
    """Decode ``path`` to an upright HxWx3 uint8 RGB array: the one image reader of training, evaluation and
    detection, so detect sees exactly what training saw.

    ``expected_size`` (h, w) is the upright size from the scan: if OpenCV's result disagrees (a format
    whose EXIF it ignores), PIL decodes instead. ``reduce`` (2, 4 or 8) asks for an image about that many
    times smaller: JPEG decodes it directly from the DCT, several times faster than a full decode and a
    resize; the caller must accept a full-size result (the PIL fallback). Raises ``DataError`` naming the file
    when it is missing or neither library can decode it.
    """
    bgr = cv2.imread(str(path), _REDUCED_FLAGS.get(reduce, cv2.IMREAD_COLOR))
    if bgr is not None and _size_ok(bgr.shape[:2], expected_size, reduce):
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    try:
        with Image.open(path) as im:
            return pil_to_rgb(ImageOps.exif_transpose(im))
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        if not Path(path).is_file():
            raise DataError(f"{path}: no such file; check the path") from None
        reason = probe_image(path).error or f"could not be decoded ({_one_line(e)})"
        raise DataError(f"{path}: {reason}; is it an image file (jpg, png, bmp, tif, webp)?") from None


def pil_to_rgb(im) -> np.ndarray:
    """Any PIL image -> HxWx3 uint8 RGB: alpha dropped, palette expanded, 16-bit and float images scaled to 8 bits
    (PIL's own ``convert("RGB")`` clips them at 255)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if im.mode == "F":
            arr = arr * (255.0 if arr.max() <= 1.0 else 1.0)
        else:
            arr = arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0
        gray = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def to_chw_batch(images) -> np.ndarray:
    """Same-size HxWx3 uint8 images -> one B x 3 x H x W float32 0-1 batch, in one pass per image (several times
    cheaper than stack -> transpose -> astype -> divide): the input every ghostdet model and runtime takes."""
    h, w = images[0].shape[:2]
    batch = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, image in enumerate(images):
        np.divide(image.transpose(2, 0, 1), np.float32(255.0), out=batch[i], dtype=np.float32)
    return batch


def _size_ok(shape, expected_size, reduce: int) -> bool:
    if expected_size is None:
        return True
    if reduce in _REDUCED_FLAGS:  # JPEG rounds the reduced size up, other formats down
        return all(abs(got - want / reduce) <= 1 for got, want in zip(shape, expected_size))
    return tuple(shape) == tuple(expected_size)
