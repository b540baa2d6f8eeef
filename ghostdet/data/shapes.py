"""The embedded ``shapes`` dataset: coloured geometric shapes on noisy backgrounds, generated on first use.

Deterministic (numpy ``default_rng`` seeded per image, OpenCV drawing and JPEG encoding), written as
COCO json + JPEGs so it goes through exactly the same code as real COCO data. Each class has its own
shape and colour family, objects are 28–110 px on 256–384 px images, and some overlap: a small
Ghost-YOLO learns it within minutes on a CPU.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ghostdet.utils.errors import DataError

log = logging.getLogger(__name__)

CLASSES = ("circle", "square", "triangle", "star", "cross")
# RGB colour family per class (jittered per object): distinct hues, all saturated against muted backgrounds
COLOURS = ((220, 40, 40), (40, 190, 60), (40, 80, 230), (235, 200, 30), (200, 50, 210))
SIDES = (256, 288, 320, 352, 384)
MIN_OBJECT, MAX_OBJECT = 28, 110
MAX_OVERLAP_IOU = 0.3


def generate_shapes(root: str | Path, num_train: int = 400, num_val: int = 100, image_size: int = 320,
                    seed: int = 0) -> Path:
    """Write the dataset into ``root`` (``images/{train,val}/*.jpg``, ``annotations/instances_{train,val}.json``)."""
    root = Path(root)
    settings = {"num_train": num_train, "num_val": num_val, "image_size": image_size, "seed": seed}
    for split_index, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        image_dir = root / "images" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            rng = np.random.default_rng([seed, split_index, i])
            img, objects = render_image(rng, image_size)
            name = f"{split}_{i:05d}.jpg"
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
                raise DataError(f"could not encode {image_dir / name}")
            (image_dir / name).write_bytes(buf.tobytes())
            image_id = i + 1
            images.append({"id": image_id, "file_name": name, "height": img.shape[0], "width": img.shape[1]})
            for cls, box, area in objects:
                x1, y1, x2, y2 = box
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cls + 1,
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "area": area, "iscrowd": 0})
        data = {"info": {"description": "ghostdet shapes (generated)", "generator": settings},
                "images": images, "annotations": annotations,
                "categories": [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(CLASSES)]}
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data), encoding="utf-8")
    return root


def render_image(rng: np.random.Generator, image_size: int = 320):
    """One image (HxWx3 uint8 RGB) and its objects ``[(class, [x1, y1, x2, y2], area)]`` in pixels."""
    scale = image_size / 320
    h, w = (int(round(rng.choice(SIDES) * scale)) for _ in range(2))
    img = _background(rng, h, w)
    objects, placed = [], []
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(20):
            size = rng.uniform(MIN_OBJECT, MAX_OBJECT) * scale
            cx, cy = rng.uniform(size / 2 + 2, w - size / 2 - 2), rng.uniform(size / 2 + 2, h - size / 2 - 2)
            cls = int(rng.integers(len(CLASSES)))
            # draw into a patch around the object (not a full-image mask): generation stays fast
            side = int(np.ceil(size * 1.2)) + 4  # rotated corners reach ~0.53·size from the centre
            x0, y0 = int(cx) - side // 2, int(cy) - side // 2
            mask = np.zeros((side, side), np.uint8)
            _draw(mask, cls, cx - x0, cy - y0, size, rng.uniform(0, 360))
            ys, xs = np.nonzero(mask)
            inside = (x0 + xs >= 0) & (x0 + xs < w) & (y0 + ys >= 0) & (y0 + ys < h)
            ys, xs = ys[inside], xs[inside]
            if len(xs) == 0:
                continue
            box = [float(x0 + xs.min()), float(y0 + ys.min()), float(x0 + xs.max() + 1), float(y0 + ys.max() + 1)]
            if all(_iou(box, other) <= MAX_OVERLAP_IOU for other in placed):
                break
        else:
            continue
        colour = np.clip(np.array(COLOURS[cls]) + rng.integers(-25, 26, size=3), 0, 255).astype(np.float32)
        img[y0 + ys, x0 + xs] = colour
        placed.append(box)
        objects.append((cls, box, float(len(xs))))
    img += rng.standard_normal(img.shape, dtype=np.float32) * 6.0
    return np.clip(img, 0, 255, out=img).astype(np.uint8), objects


def _background(rng, h, w):
    """Muted low-frequency texture: a coarse random grid upsampled, plus a grey base."""
    base = rng.uniform(70, 170)
    coarse = rng.normal(0, 18, (int(rng.integers(3, 8)), int(rng.integers(3, 8)), 3))
    coarse = coarse.mean(axis=2, keepdims=True) * 0.7 + coarse * 0.3  # mostly grey, a little colour
    texture = cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    return texture + np.float32(base)  # float32 until the final clip


def _draw(mask, cls, cx, cy, size, angle_deg):
    r = size / 2
    if CLASSES[cls] == "circle":
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 255, -1, cv2.LINE_8)
        return
    if CLASSES[cls] == "square":
        pts = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        pts = [(x * r * 0.72, y * r * 0.72) for x, y in pts]  # diagonal ≈ size when rotated 45°
    elif CLASSES[cls] == "triangle":
        pts = [(r * np.cos(np.radians(a)), r * np.sin(np.radians(a))) for a in (-90, 30, 150)]
    elif CLASSES[cls] == "star":
        pts = [((r if k % 2 == 0 else 0.42 * r) * np.cos(np.radians(-90 + 36 * k)),
                (r if k % 2 == 0 else 0.42 * r) * np.sin(np.radians(-90 + 36 * k))) for k in range(10)]
    else:  # cross (a plus sign)
        a, b = r, r * 0.33
        pts = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    pts = np.asarray(pts) @ rot.T + (cx, cy)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_8)


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def ensure_shapes(cfg: dict) -> Path:
    """Generate the shapes dataset at ``cfg['root']`` unless it is already there (safe when run concurrently)."""
    root = Path(str(cfg.get("root") or "data/shapes")).expanduser()
    anns = [root / str(cfg.get(f"{split}_ann") or f"annotations/instances_{split}.json") for split in ("train", "val")]
    if all(a.is_file() for a in anns):
        return root
    if root.exists() and any(root.iterdir()):
        raise DataError(f"{root} exists but lacks {anns[0].relative_to(root)}: delete the folder to regenerate "
                        f"the shapes dataset")
    settings = {k: cfg.get(k, d) for k, d in (("num_train", 400), ("num_val", 100), ("image_size", 320), ("seed", 0))}
    log.info("generating the shapes dataset into %s (%s)", root, settings)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        generate_shapes(tmp, **{k: int(v) for k, v in settings.items()})
        if root.exists():
            root.rmdir()  # empty (checked above)
        os.rename(tmp, root)  # atomic: a concurrent generator either wins or finds the finished folder
    except OSError as e:
        if not all(a.is_file() for a in anns):  # not a lost race with a concurrent generator
            raise DataError(f"cannot write the shapes dataset to {root} ({e}); set data.root to a writable folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
