"""Training augmentation (mosaic, random affine, mixup, HSV, flips) and the eval letterbox.

Geometry: mosaic places 4 images (long side = imgsz) on a 2·imgsz canvas around a random centre, and ONE
``cv2.warpAffine`` maps that canvas (scale/rotate/shear/translate) straight into the imgsz×imgsz input, so
the expensive warp is done at output size (albumentations' ``Affine`` keeps the input size: a 4× larger
warp). Without mosaic the letterboxed image goes through the same affine. Photometric jitter, flips and
the final box filtering are albumentations (``ColorJitter``, ``HorizontalFlip``, ``VerticalFlip``,
``BboxParams``). Hyper-parameter names and defaults follow ultralytics (``DEFAULT_AUG``).

Crowd (``iscrowd``) regions ride through the whole pipeline as box rows labelled ``IGNORE_LABEL`` (-1), so
they get exactly the geometry of the objects (mosaic placement, affine, mixup, flips, clipping) at no extra
cost; they are dropped only when they become degenerate (``min_box_size`` / ``min_box_area``; not by the
visibility or aspect filters: a cut crowd region is still a crowd region). ``TrainTransform`` returns them
apart from the objects, as the regions the loss ignores; they never become targets.
"""
from __future__ import annotations

import logging
import math

import albumentations as A
import cv2
import numpy as np

from ghostdet.data.letterbox import PAD_VALUE, letterbox, letterbox_boxes
from ghostdet.utils.errors import ConfigError

log = logging.getLogger(__name__)

IGNORE_LABEL = -1  # label of a crowd (ignore) region inside the augmentation pipeline; never a training target

DEFAULT_AUG = {
    "mosaic": 1.0,  # probability of a 4-image mosaic (the trainer turns it off for the last close_mosaic epochs)
    "mixup": 0.0,  # probability of blending with a second augmented sample
    "degrees": 0.0,  # rotation range ±deg
    "translate": 0.1,  # translation range ±fraction of imgsz
    "scale": 0.5,  # scale gain range 1±scale
    "shear": 0.0,  # shear range ±deg
    "fliplr": 0.5,  # horizontal flip probability
    "flipud": 0.0,  # vertical flip probability
    "hsv_h": 0.015,  # hue jitter, fraction of the hue circle
    "hsv_s": 0.7,  # saturation factor range 1±hsv_s
    "hsv_v": 0.4,  # brightness factor range 1±hsv_v
    "min_box_size": 2.0,  # boxes narrower or lower than this (input px) after augmentation are dropped
    "min_box_area": 0.0,  # ... or smaller than this area (input px²)
    "min_visibility": 0.1,  # ... or keeping less than this fraction of their (scaled) area after the affine
    "max_aspect": 20.0,  # ... or more elongated than this
}
_TRAINER_KEYS = {"close_mosaic"}  # belongs to the trainer; accepted here so one aug node serves both


def resolve_aug(aug_cfg) -> dict:
    """``DEFAULT_AUG`` updated with ``aug_cfg`` (dict/DictConfig/None); unknown keys are a ``ConfigError``."""
    cfg = dict(DEFAULT_AUG)
    if aug_cfg is None:
        return cfg
    if not hasattr(aug_cfg, "items"):
        raise ConfigError(f"aug must be a mapping of augmentation settings, got {type(aug_cfg).__name__}")
    for key, value in aug_cfg.items():
        if key in _TRAINER_KEYS:
            continue
        if key not in DEFAULT_AUG:
            raise ConfigError(f"unknown augmentation setting aug.{key}; valid keys: {', '.join(DEFAULT_AUG)}")
        try:
            cfg[key] = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"aug.{key} must be a number, got {value!r}") from None
    for key in ("mosaic", "mixup", "fliplr", "flipud", "min_visibility"):
        if not 0.0 <= cfg[key] <= 1.0:
            raise ConfigError(f"aug.{key} is a probability/fraction in [0, 1], got {cfg[key]}")
    if not 0.0 <= cfg["scale"] < 1.0:
        raise ConfigError(f"aug.scale must be in [0, 1) (scale gain 1±scale), got {cfg['scale']}")
    return cfg


def mosaic4(items, size: int, rng: np.random.Generator, canvas: np.ndarray | None = None):
    """Place 4 ``(image, boxes, labels)`` (long side ≈ ``size``) around a random centre of a 2·size canvas.

    Returns ``(canvas, boxes, labels)``; boxes are clipped to the canvas (each image is cut only by it).
    Rows labelled ``IGNORE_LABEL`` (crowd regions) are placed like the others.
    ``canvas`` (2·size square uint8) is reused when given: refilling warm memory is far cheaper than a
    fresh 2·size allocation per sample.
    """
    s = size
    if canvas is None or canvas.shape != (2 * s, 2 * s, 3):
        canvas = np.empty((2 * s, 2 * s, 3), dtype=np.uint8)
    canvas.fill(PAD_VALUE)
    xc, yc = (int(v) for v in rng.uniform(0.5 * s, 1.5 * s, size=2))
    all_boxes, all_labels = [], []
    for k, (img, boxes, labels) in enumerate(items):
        h, w = img.shape[:2]
        if k == 0:  # top-left: the image's bottom-right corner sits at the centre
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:  # top-right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:  # bottom-left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(yc + h, 2 * s)
            x1b, y1b = w - (x2a - x1a), 0
        else:  # bottom-right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(yc + h, 2 * s)
            x1b, y1b = 0, 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b:y1b + (y2a - y1a), x1b:x1b + (x2a - x1a)]
        if len(boxes):
            all_boxes.append(boxes + np.array([x1a - x1b, y1a - y1b] * 2, dtype=np.float32))
            all_labels.append(labels)
    if all_boxes:
        boxes = np.concatenate(all_boxes)
        np.clip(boxes, 0, 2 * s, out=boxes)
        labels = np.concatenate(all_labels)
    else:
        boxes, labels = np.zeros((0, 4), np.float32), np.zeros((0,), np.int64)
    return canvas, boxes, labels


def random_affine(img, boxes, labels, out_size: int, aug: dict, rng: np.random.Generator):
    """Warp ``img`` (any size, centred) into an ``out_size`` square: random scale/rotation/shear/translation.

    Boxes follow their 4 corners (exact without rotation/shear) and are clipped; a box is dropped when
    it becomes smaller than ``min_box_size``, keeps less than ``min_visibility`` of its scaled area, or
    is more elongated than ``max_aspect``. Rows labelled ``IGNORE_LABEL`` (crowd regions) are dropped only
    when degenerate (narrower/lower than ``min_box_size`` or below ``min_box_area``).
    """
    h, w = img.shape[:2]
    centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], dtype=np.float64)
    angle = rng.uniform(-aug["degrees"], aug["degrees"])
    gain = rng.uniform(1 - aug["scale"], 1 + aug["scale"])
    rot = np.eye(3)
    rot[:2] = cv2.getRotationMatrix2D((0, 0), angle, gain)
    shear = np.eye(3)
    shear[0, 1] = math.tan(math.radians(rng.uniform(-aug["shear"], aug["shear"])))
    shear[1, 0] = math.tan(math.radians(rng.uniform(-aug["shear"], aug["shear"])))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - aug["translate"], 0.5 + aug["translate"]) * out_size
    move[1, 2] = rng.uniform(0.5 - aug["translate"], 0.5 + aug["translate"]) * out_size
    matrix = move @ shear @ rot @ centre
    img = cv2.warpAffine(img, matrix[:2], (out_size, out_size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3)
    if len(boxes) == 0:
        return img, boxes, labels
    corners = boxes[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)  # (4N, 2): tl, tr, br, bl
    corners = corners @ matrix[:2, :2].T + matrix[:2, 2]
    corners = corners.reshape(-1, 4, 2)
    new = np.concatenate([corners.min(1), corners.max(1)], axis=1).clip(0, out_size).astype(np.float32)
    keep = _box_candidates(boxes * gain, new, aug)
    crowd = labels == IGNORE_LABEL
    if crowd.any():
        keep = np.where(crowd, _region_candidates(new, aug), keep)
    return img, new[keep], labels[keep]


def _region_candidates(after, aug):
    """Crowd regions: only degenerate ones go (the same size limits albumentations' final filter applies)."""
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    min_size = max(aug["min_box_size"], 1e-3)
    return (w1 >= min_size) & (h1 >= min_size) & (w1 * h1 >= aug["min_box_area"])


def _box_candidates(before, after, aug, eps=1e-9):
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    aspect = np.maximum(w1 / (h1 + eps), h1 / (w1 + eps))
    min_size = max(aug["min_box_size"], 1e-3)
    return ((w1 >= min_size) & (h1 >= min_size) & (w1 * h1 >= aug["min_box_area"])
            & (w1 * h1 / (w0 * h0 + eps) > aug["min_visibility"]) & (aspect < aug["max_aspect"]))


def mixup(a, b, rng: np.random.Generator):
    """Blend two augmented samples (ratio ~ Beta(32, 32)) and keep the boxes (and crowd regions) of both."""
    ratio = float(rng.beta(32.0, 32.0))
    img = cv2.addWeighted(a[0], ratio, b[0], 1.0 - ratio, 0.0)
    return img, np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])


def build_photometric(aug: dict) -> A.Compose:
    """Colour jitter + flips + final box filter (albumentations; boxes pascal_voc = xyxy px)."""
    steps = []
    if aug["hsv_h"] or aug["hsv_s"] or aug["hsv_v"]:
        # ColorJitter's factors are multiplicative like ultralytics' HSV gains: hue ±h of the circle, s/v 1±gain
        steps.append(A.ColorJitter(brightness=aug["hsv_v"], contrast=0.0, saturation=aug["hsv_s"],
                                   hue=min(aug["hsv_h"], 0.5), p=1.0))
    if aug["fliplr"] > 0:
        steps.append(A.HorizontalFlip(p=aug["fliplr"]))
    if aug["flipud"] > 0:
        steps.append(A.VerticalFlip(p=aug["flipud"]))
    if not steps:
        steps.append(A.NoOp())  # the box filter below still has to run
    bbox_params = A.BboxParams(format="pascal_voc", label_fields=["labels"], min_area=aug["min_box_area"],
                               min_width=aug["min_box_size"], min_height=aug["min_box_size"], clip=True,
                               filter_invalid_bboxes=True)
    return A.Compose(steps, bbox_params=bbox_params, strict=False)


class TrainTransform:
    """The training pipeline over a dataset's ``load_resized(i) -> (img, boxes, labels)`` (long side = imgsz;
    crowd regions as rows labelled ``IGNORE_LABEL``).

    ``transform(i, use_mosaic)`` → ``(img, boxes, labels, ignore_boxes)``: the objects (labels 0..C-1) and,
    apart, the crowd regions (float32 (M, 4) xyxy input pixels; (0, 4) when none), both transformed alike.
    """

    def __init__(self, load_resized, num_items: int, imgsz: int, aug_cfg=None, seed: int | None = None):
        self.load_resized = load_resized
        self.num_items = num_items
        self.imgsz = imgsz
        self.aug = resolve_aug(aug_cfg)
        self.photometric = build_photometric(self.aug)
        self._canvas = None
        self.set_random_seed(seed)

    def set_random_seed(self, seed: int | None) -> None:
        self.rng = np.random.default_rng(seed)
        self.photometric.set_random_seed(seed)

    def geometric(self, index: int, use_mosaic: bool):
        s = self.imgsz
        if use_mosaic and self.rng.random() < self.aug["mosaic"]:
            others = self.rng.integers(0, self.num_items, size=3).tolist()
            items = [self.load_resized(i) for i in [index, *others]]
            img, boxes, labels = mosaic4(items, s, self.rng, self._canvas)
            self._canvas = img  # random_affine below writes a new array, so the canvas can be reused
        else:
            img, boxes, labels = self.load_resized(index)
            img, ratio, pad = letterbox(img, s, pad_value=PAD_VALUE)
            boxes = letterbox_boxes(boxes, ratio, pad) if len(boxes) else boxes
        return random_affine(img, boxes, labels, s, self.aug, self.rng)

    def __call__(self, index: int, use_mosaic: bool = True):
        img, boxes, labels = self.geometric(index, use_mosaic)
        if self.aug["mixup"] > 0 and self.rng.random() < self.aug["mixup"]:
            other = int(self.rng.integers(0, self.num_items))
            img, boxes, labels = mixup((img, boxes, labels), self.geometric(other, use_mosaic), self.rng)
        out = self.photometric(image=img, bboxes=boxes.reshape(-1, 4), labels=labels)
        boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
        labels = np.asarray(out["labels"], dtype=np.int64).reshape(-1)
        crowd = labels == IGNORE_LABEL
        if crowd.any():
            return out["image"], boxes[~crowd], labels[~crowd], boxes[crowd]
        return out["image"], boxes, labels, boxes[:0]


def eval_transform(img, boxes, imgsz: int):
    """Letterbox only; returns ``(img, boxes, ratio, pad)`` with boxes in input pixels."""
    img, ratio, pad = letterbox(img, imgsz, pad_value=PAD_VALUE)
    boxes = letterbox_boxes(boxes, ratio, pad) if len(boxes) else np.zeros((0, 4), np.float32)
    return img, np.asarray(boxes, dtype=np.float32), ratio, pad
