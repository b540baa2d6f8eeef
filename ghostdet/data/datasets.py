"""Datasets: COCO instances json, YOLO txt, and the generated ``shapes`` set (COCO json on disk).

``build_dataset`` validates the ``data`` config node, scans the split (or loads its scan cache), logs the
report and returns a ``DetectionDataset``. Setup faults (no root, no annotation file, no usable image)
raise ``DataError`` with one line naming the path and the expected layout.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from ghostdet.data.image_io import IMAGE_SUFFIXES, exif_upright_boxes, read_image
from ghostdet.data.scan import (ImageRecord, ScanReport, clean_boxes, files_fingerprint, finish_report,
                                load_cache, probe_images, save_cache)
from ghostdet.data.transforms import TrainTransform, eval_transform
from ghostdet.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "shapes")
_MAX_LOAD_RETRIES = 10


# ------------------------------------------------------------------------------------------------ dataset
class DetectionDataset(Dataset):
    """Scanned records of one split plus the transform (training augmentation or eval letterbox)."""

    def __init__(self, records: list[ImageRecord], names: list[str], category_ids: list[int] | None,
                 imgsz: int = 640, augment: bool = False, aug_cfg=None, report: ScanReport | None = None,
                 seed: int | None = None):
        if imgsz % 32:
            raise ConfigError(f"imgsz must be a multiple of 32, got {imgsz}")
        self.records = records
        self.names = list(names)
        self.num_classes = len(self.names)
        self.category_ids = None if category_ids is None else [int(c) for c in category_ids]
        self.imgsz = int(imgsz)
        self.augment = bool(augment)
        self.report = report
        # shared memory, so set_mosaic() reaches DataLoader workers that are already running
        self._mosaic = torch.ones(1, dtype=torch.uint8).share_memory_()
        self._ram = None  # decoded images when cache_in_ram() ran
        self.transform = TrainTransform(self.load_resized, len(records), self.imgsz, aug_cfg, seed) if augment else None

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} images, {self.num_classes} classes, imgsz={self.imgsz}, "
                f"augment={self.augment})")

    # -- switches the trainer and loader use
    def set_mosaic(self, enabled: bool) -> None:
        """Turn mosaic on/off (close-mosaic); visible at once in persistent workers."""
        self._mosaic.fill_(int(bool(enabled)))

    @property
    def mosaic_enabled(self) -> bool:
        return bool(self._mosaic.item())

    def set_random_seed(self, seed: int | None) -> None:
        if self.transform is not None:
            self.transform.set_random_seed(seed)

    # -- loading
    def load_image(self, index: int) -> np.ndarray:
        """The original image, upright, HxWx3 uint8 RGB (``OSError`` if it cannot be decoded)."""
        rec = self.records[index]
        return read_image(rec.file, (rec.height, rec.width))

    def load_resized(self, index: int):
        """Image resized so its long side is ``imgsz``, with its boxes/labels in those pixels."""
        rec = self.records[index]
        ratio = self.imgsz / max(rec.height, rec.width)
        boxes = (rec.boxes * ratio).astype(np.float32)
        if self._ram is not None:
            return self._ram[index], boxes, rec.labels
        size = (max(1, round(rec.width * ratio)), max(1, round(rec.height * ratio)))
        # let the JPEG decoder shrink big images by 2/4/8 (never below imgsz): most of the decode cost saved
        reduce = next((f for f in (8, 4, 2) if max(rec.height, rec.width) / f >= self.imgsz), 1)
        img = self._load_or_substitute(index, reduce)
        if img.shape[1::-1] != size:
            shrink = img.shape[1] > 2 * size[0]
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return img, boxes, rec.labels

    def _load_or_substitute(self, index: int, reduce: int = 1) -> np.ndarray:
        rec = self.records[index]
        try:
            return read_image(rec.file, (rec.height, rec.width), reduce=reduce)
        except OSError as e:  # passed the scan but fails to decode now: keep training, say which file
            log.warning("%s: cannot decode image (%s); using an empty image for this sample", rec.file, e)
            return np.full((rec.height, rec.width, 3), 114, dtype=np.uint8)

    def _eval_sample(self, index: int):
        if self._ram is not None:
            return self._ram[index]
        rec = self.records[index]
        return eval_transform(self._load_or_substitute(index), rec.boxes, self.imgsz)

    def cache_in_ram(self, max_fraction: float = 0.5) -> bool:
        """Decode every image once and keep it in memory (training: long side imgsz; eval: letterboxed).

        Skipped with a warning when it would take more than ``max_fraction`` of the available memory.
        DataLoader workers share the cache (fork, copy-on-write).
        """
        sides = [self.imgsz / max(r.height, r.width) for r in self.records]
        need = sum(3 * round(r.height * s) * round(r.width * s) for r, s in zip(self.records, sides))
        if not self.augment:
            need = 3 * self.imgsz * self.imgsz * len(self.records)
        available = _available_memory()
        if available is not None and need > max_fraction * available:
            log.warning("not caching images in RAM: %.1f GB needed, %.1f GB available", need / 1e9, available / 1e9)
            return False
        start = time.perf_counter()
        load = self.load_resized if self.augment else self._eval_sample
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoding releases the GIL
            items = list(pool.map(load, range(len(self))))
        self._ram = [item[0] for item in items] if self.augment else items
        log.info("cached %d images in RAM (%.2f GB) in %.1f s", len(self), need / 1e9, time.perf_counter() - start)
        return True

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        if self.augment:
            img, boxes, labels = self.transform(index, use_mosaic=self.mosaic_enabled)
            ratio = pad = None
        else:
            img, boxes, ratio, pad = self._eval_sample(index)
            labels = rec.labels
        return {"image": img, "boxes": boxes, "labels": labels, "image_id": rec.image_id, "file": rec.file,
                "orig_size": (rec.height, rec.width), "ratio": ratio, "pad": pad}

    # -- evaluation ground truth
    def category_id(self, label: int) -> int:
        """COCO category id of a contiguous class (the class index itself when there are no ids)."""
        return self.category_ids[label] if self.category_ids is not None else int(label)

    def coco_gt(self):
        """pycocotools ``COCO`` of this split in original pixels; crowd regions included as ``iscrowd=1``."""
        from pycocotools.coco import COCO

        images, annotations = [], []
        for rec in self.records:
            images.append({"id": rec.image_id, "file_name": os.path.basename(rec.file), "width": rec.width, "height": rec.height})
            groups = [(rec.boxes, rec.labels, rec.areas, 0)]
            if rec.crowd_boxes is not None and len(rec.crowd_boxes):
                groups.append((rec.crowd_boxes, rec.crowd_labels, rec.crowd_areas, 1))
            for boxes, labels, areas, crowd in groups:
                for k, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist())):
                    w, h = box[2] - box[0], box[3] - box[1]
                    area = float(areas[k]) if areas is not None else w * h
                    annotations.append({"id": len(annotations) + 1, "image_id": rec.image_id,
                                        "category_id": self.category_id(label), "bbox": [box[0], box[1], w, h],
                                        "area": area, "iscrowd": crowd})
        categories = [{"id": self.category_id(i), "name": name} for i, name in enumerate(self.names)]
        gt = COCO()
        gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            gt.createIndex()
        return gt


# ------------------------------------------------------------------------------------------------ builder
def build_dataset(data_cfg, split: str = "train", imgsz: int = 640, augment: bool | None = None, aug_cfg=None,
                  cache: bool | None = None, seed: int | None = None) -> DetectionDataset:
    """Scan and validate one split of the dataset described by the Hydra ``data`` node.

    ``data_cfg``: ``format`` (coco | yolo | shapes), ``root``, ``train``/``val`` (image folders, relative to
    root), ``train_ann``/``val_ann`` (COCO json, relative to root), optional ``names``, ``cache`` (scan
    cache; ``cache`` here overrides it). ``augment`` defaults to ``split == "train"``; ``seed`` seeds the
    augmentation when no DataLoader worker re-seeds it. Returns a ``DetectionDataset``.
    """
    cfg = _as_dict(data_cfg)
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
    use_cache = bool(cfg.get("cache", True)) if cache is None else bool(cache)
    if fmt == "shapes":
        from ghostdet.data.shapes import ensure_shapes

        ensure_shapes(cfg)
    if fmt in ("coco", "shapes"):
        records, report, names, category_ids = scan_coco(cfg, split, use_cache)
    else:
        records, report, names, category_ids = scan_yolo(cfg, split, use_cache)
    report.log(log)
    if not records:
        raise DataError(f"no usable image in {report.source} ({report.summary()}); "
                        f"run tools/check_data.py data.root=... to list the problems")
    augment = split == "train" if augment is None else augment
    dataset = DetectionDataset(records, names, category_ids, imgsz=imgsz, augment=augment, aug_cfg=aug_cfg,
                               report=report, seed=seed)
    if cfg.get("cache_images"):
        dataset.cache_in_ram()
    return dataset


def _available_memory() -> int | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux: no limit check
        return None


def _as_dict(data_cfg) -> dict:
    if data_cfg is None:
        raise ConfigError("no data config: pass data=<shapes|coco128|coco|yolo>")
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(data_cfg, DictConfig):
        try:
            return OmegaConf.to_container(data_cfg, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"cannot resolve the data config: {' '.join(str(e).split())}") from None
    if not isinstance(data_cfg, dict):
        raise ConfigError(f"data config must be a mapping, got {type(data_cfg).__name__}")
    return dict(data_cfg)


def _root(cfg: dict, layout: str) -> Path:
    root = cfg.get("root")
    if root in (None, "", "???"):
        raise ConfigError(f"data.root is not set: pass data.root=DIR, a folder with {layout}")
    path = Path(str(root)).expanduser().resolve()  # absolute: records and caches do not depend on the cwd
    if not path.is_dir():
        raise DataError(f"dataset root {path} not found: expected a folder with {layout}; set data.root=DIR")
    return path


def _split_path(cfg: dict, root: Path, key: str, layout: str, is_file: bool = False) -> Path:
    value = cfg.get(key)
    if value in (None, ""):
        raise ConfigError(f"data.{key} is not set: expected {layout} under {root}")
    path = root / str(value)
    if not (path.is_file() if is_file else path.is_dir()):
        what = "file" if is_file else "folder"
        raise DataError(f"{what} {path} not found: expected {layout} under data.root={root}; set data.{key}=...")
    return path


# --------------------------------------------------------------------------------------------------- COCO
def scan_coco(cfg: dict, split: str, use_cache: bool = True):
    """Scan a COCO-json split: ``(records, report, names, category_ids)``."""
    img_key, ann_key = split, f"{split}_ann"
    layout = f"images in {cfg.get(img_key)}/ and a COCO instances json at {cfg.get(ann_key)}"
    root = _root(cfg, layout)
    ann_file = _split_path(cfg, root, ann_key, layout, is_file=True)
    images_dir = _split_path(cfg, root, img_key, layout)
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot read COCO json {ann_file}: {' '.join(str(e).split())}; fix or regenerate it") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise DataError(f"{ann_file} is not a COCO instances json (needs 'images', 'annotations', 'categories' lists)")
    annotations = data.get("annotations") or []
    if not isinstance(annotations, list):
        raise DataError(f"{ann_file}: 'annotations' must be a list")

    report = ScanReport(split, str(ann_file))
    names, category_ids = _coco_categories(data["categories"], ann_file, report)
    if not names:
        raise DataError(f"{ann_file} has no usable categories; each needs an integer 'id' and a 'name'")
    if cfg.get("names"):  # renaming the json's categories (same count, same order)
        override = list(cfg["names"].values()) if isinstance(cfg["names"], dict) else list(cfg["names"])
        if len(override) != len(names):
            raise ConfigError(f"data.names has {len(override)} names but {ann_file} has {len(names)} categories; "
                              f"drop data.names to use the json's")
        names = [str(n) for n in override]

    images = _coco_images(data["images"], ann_file, images_dir, report)
    files = [str(images_dir / img["file_name"]) for img in images]
    fingerprint = files_fingerprint([str(ann_file), *files], {"split": split, "images": str(images_dir), "names": names})
    cache_file = ann_file.with_name(f"{ann_file.stem}.{split}.ghostdet.cache")
    if use_cache and (hit := load_cache(cache_file, fingerprint)) is not None:
        records, report = hit
        return records, report, names, category_ids

    cat_index = {cid: i for i, cid in enumerate(category_ids)}
    anns_by_image = _coco_annotations(annotations, ann_file, {img["id"] for img in images}, cat_index, report)
    report.images_found = len(images) + report.images_skipped["missing file"]
    probes = probe_images(files)
    records = []
    for img, file, probe in zip(images, files, probes):
        if probe.error:
            report.skip_image(file, "unreadable", probe.error)
            continue
        json_size = (img.get("height"), img.get("width"))
        # the json's size says which frame its boxes are in: a json sized like the stored (un-rotated) pixels
        # of an EXIF-rotated photo has boxes on those pixels, which are mapped to the upright image
        stored_frame = probe.orientation != 1 and json_size == probe.stored_size
        if json_size != (probe.height, probe.width) and not stored_frame:
            report.json_problem(file, "size mismatch", f"json size {img.get('width')}x{img.get('height')} differs from "
                                f"the upright image {probe.width}x{probe.height}; using the image's size")
        records.append(_coco_record(img, file, probe, anns_by_image.get(img["id"], []), ann_file, cat_index, report,
                                    stored_frame))
    finish_report(records, report)
    if use_cache:
        save_cache(cache_file, fingerprint, records, report)
    return records, report, names, category_ids


def _coco_categories(categories, ann_file, report):
    seen = {}
    for cat in categories:
        cid = cat.get("id") if isinstance(cat, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            report.json_problem(str(ann_file), "bad category", f"category {cat!r} has no integer id; ignored")
        elif cid in seen:
            report.json_problem(str(ann_file), "duplicate category id", f"category id {cid} defined twice; the first kept")
        else:
            seen[cid] = str(cat.get("name", cid))
    category_ids = sorted(seen)
    return [seen[c] for c in category_ids], category_ids


def _coco_images(images, ann_file, images_dir, report):
    kept, ids = [], set()
    for img in images:
        if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
            report.json_problem(str(ann_file), "bad image entry", f"image entry {str(img)[:80]} lacks an integer 'id' or a 'file_name'; ignored")
            continue
        if img["id"] in ids:
            report.json_problem(str(ann_file), "duplicate image id",
                                f"image id {img['id']} used again by {img['file_name']}; that entry is ignored")
            continue
        ids.add(img["id"])
        if not (images_dir / img["file_name"]).is_file():
            report.skip_image(str(images_dir / img["file_name"]), "missing file", f"listed in {ann_file.name} but not found")
            continue
        kept.append(img)
    return kept


def _coco_annotations(annotations, ann_file, image_ids, cat_index, report):
    by_image = defaultdict(list)
    ann_ids = set()
    for ann in annotations:
        where = f"{ann_file} annotation id {ann.get('id') if isinstance(ann, dict) else '?'}"
        if not isinstance(ann, dict):
            report.drop_box(where, "malformed", "annotation is not an object")
            continue
        if ann.get("id") in ann_ids:
            report.json_problem(where, "duplicate annotation id", f"annotation id {ann.get('id')} used twice; both kept")
        ann_ids.add(ann.get("id"))
        if ann.get("image_id") not in image_ids:
            report.drop_box(where, "unknown image", f"refers to image id {ann.get('image_id')}, which is not a usable image")
            continue
        if ann.get("category_id") not in cat_index:
            report.drop_box(where, "unknown category", f"category id {ann.get('category_id')} is not in 'categories'")
            continue
        by_image[ann["image_id"]].append(ann)
    return by_image


def _coco_record(img, file, probe, anns, ann_file, cat_index, report, stored_frame=False) -> ImageRecord:
    height, width = probe.height, probe.width
    boxes, labels, areas, where, crowd = [], [], [], [], []
    for ann in anns:
        loc = f"{ann_file.name} annotation id {ann.get('id')} ({os.path.basename(file)})"
        bbox = ann.get("bbox")
        try:
            x, y, w, h = (float(v) for v in bbox)
        except (TypeError, ValueError):
            report.drop_box(loc, "malformed", f"bbox {bbox!r} is not 4 numbers")
            continue
        area = ann.get("area")  # COCO's area is the segment's; APs/m/l depend on it, so keep it for eval
        area = float(area) if isinstance(area, (int, float)) and np.isfinite(area) and area > 0 else w * h
        box = [x, y, x + w, y + h]
        if stored_frame and np.isfinite(box).all():
            box = exif_upright_boxes(box, probe.orientation, probe.stored_size)[0].tolist()
        entry = (box, cat_index[ann["category_id"]], area, loc)
        (crowd if ann.get("iscrowd") else boxes).append(entry)
    num_classes = len(cat_index)

    def columns(entries):
        return (np.array([e[0] for e in entries], dtype=np.float64).reshape(-1, 4), np.array([e[1] for e in entries], dtype=np.int64),
                np.array([e[2] for e in entries], dtype=np.float64), [e[3] for e in entries])

    b, l, a, where = columns(boxes)
    kept_boxes, kept_labels, kept = clean_boxes(b, l, width, height, num_classes, where, report)
    rec = ImageRecord(file, int(img["id"]), height, width, kept_boxes, kept_labels, areas=a[kept])
    if crowd:  # crowd regions: validated the same way, reported, not counted among training boxes
        crowd_report = ScanReport(report.split, report.source)
        b, l, a, where = columns(crowd)
        rec.crowd_boxes, rec.crowd_labels, kept = clean_boxes(b, l, width, height, num_classes, where, crowd_report)
        rec.crowd_areas = a[kept]
        report.problems.extend(p.replace("box dropped", "crowd region dropped") for p in crowd_report.problems)
    return rec


# --------------------------------------------------------------------------------------------------- YOLO
def labels_dir_for(images_dir: Path) -> Path:
    """YOLO convention: the last ``images`` path component becomes ``labels`` (else labels sit beside images)."""
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir


def read_data_yaml(cfg: dict, root: Path) -> tuple[dict, Path]:
    """The ultralytics-style ``data.yaml`` of a YOLO root (``{}`` when there is none)."""
    yaml_file = root / str(cfg.get("data_yaml") or "data.yaml")
    if not yaml_file.is_file():
        return {}, yaml_file
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {yaml_file}: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise DataError(f"{yaml_file} must be a mapping with 'names:' (and optionally 'train:'/'val:' folders)")
    return data, yaml_file


def yolo_split_folder(cfg: dict, root: Path, split: str, data_yaml: dict, yaml_file: Path) -> str:
    """``data.<split>``, else the data.yaml's ``<split>:`` folder, else ``images/<split>`` (relative to data.root)."""
    if cfg.get(split):
        return str(cfg[split])
    value = data_yaml.get(split)
    if value is None:
        return f"images/{split}"
    if not isinstance(value, str) or value.endswith(".txt"):
        raise ConfigError(f"{yaml_file}: '{split}:' must be one image folder here (lists and .txt image lists "
                          f"are not supported); set data.{split}=FOLDER")
    return value  # relative to data.root (the yaml's own `path:` is ignored: data.root says where the set is)


def yolo_names(cfg: dict, root: Path, data_yaml: dict | None = None, yaml_file: Path | None = None) -> list[str]:
    """Class names: ``data.names`` (list or {index: name}), else ROOT/data.yaml ``names``, else ROOT/classes.txt."""
    names = cfg.get("names")
    source = "data.names"
    if not names:
        if data_yaml is None:
            data_yaml, yaml_file = read_data_yaml(cfg, root)
        if data_yaml.get("names"):
            names, source = data_yaml["names"], str(yaml_file)
        elif (root / "classes.txt").is_file():
            names = [n.strip() for n in (root / "classes.txt").read_text(encoding="utf-8").splitlines() if n.strip()]
            source = str(root / "classes.txt")
    if not names:
        raise DataError(f"no class names for {root}: add 'names:' to {root / 'data.yaml'} (or classes.txt), or set data.names=[...]")
    if isinstance(names, dict):
        try:
            index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DataError(f"{source}: names must be a list or an {{index: name}} mapping") from None
        if sorted(index) != list(range(len(index))):
            raise DataError(f"{source}: names indices must be 0..{len(index) - 1} without gaps")
        return [index[i] for i in range(len(index))]
    if not isinstance(names, (list, tuple)):
        raise DataError(f"{source}: names must be a list or an {{index: name}} mapping")
    return [str(n) for n in names]


def scan_yolo(cfg: dict, split: str, use_cache: bool = True):
    """Scan a YOLO-txt split: ``(records, report, names, None)``."""
    layout = f"{cfg.get(split) or f'images/{split}'}/*.jpg and the matching labels/*.txt (one 'cls cx cy w h' line per box)"
    root = _root(cfg, layout)
    data_yaml, yaml_file = read_data_yaml(cfg, root)
    cfg = dict(cfg, **{split: yolo_split_folder(cfg, root, split, data_yaml, yaml_file)})
    layout = f"{cfg[split]}/*.jpg and the matching labels/*.txt (one 'cls cx cy w h' line per box)"
    images_dir = _split_path(cfg, root, split, layout)
    labels_dir = labels_dir_for(images_dir)
    names = yolo_names(cfg, root, data_yaml, yaml_file)
    image_files = sorted(str(p) for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    label_files = [str((labels_dir / Path(f).relative_to(images_dir)).with_suffix(".txt")) for f in image_files]
    fingerprint = files_fingerprint(image_files + label_files, {"split": split, "names": names})
    cache_file = labels_dir.parent / f"{labels_dir.name}.ghostdet.cache" if labels_dir != images_dir else images_dir / f"{split}.ghostdet.cache"
    if use_cache and (hit := load_cache(cache_file, fingerprint)) is not None:
        return hit[0], hit[1], names, None

    report = ScanReport(split, str(images_dir))
    report.images_found = len(image_files)
    image_ids = _yolo_image_ids(image_files)
    records = []
    for file, label_file, image_id, probe in zip(image_files, label_files, image_ids, probe_images(image_files)):
        if probe.error:
            report.skip_image(file, "unreadable", probe.error)
            continue
        boxes, labels = _read_yolo_labels(label_file, probe.width, probe.height, len(names), report)
        records.append(ImageRecord(file, image_id, probe.height, probe.width, boxes, labels))
    finish_report(records, report)
    if use_cache and records:
        save_cache(cache_file, fingerprint, records, report)
    return records, report, names, None


def _yolo_image_ids(files: list[str]) -> list[int]:
    """COCO-style numeric stems (``000000000009.jpg`` → 9) when they are all numeric and unique, else indices."""
    stems = [Path(f).stem for f in files]
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(len(files)))


def _read_yolo_labels(label_file: str, width: int, height: int, num_classes: int, report: ScanReport):
    try:
        with open(label_file, encoding="utf-8-sig", errors="replace") as f:  # -sig: Windows editors add a BOM
            lines = f.read().splitlines()
    except FileNotFoundError:
        return np.zeros((0, 4), np.float64), np.zeros((0,), np.int64)  # no label file: a background image
    except OSError as e:
        report.drop_box(label_file, "unreadable label file", f"cannot read the label file ({e}); image used as background")
        return np.zeros((0, 4), np.float64), np.zeros((0,), np.int64)
    boxes, labels, where = [], [], []
    for line_no, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        loc = f"{label_file}:{line_no}"
        try:
            values = [float(v) for v in fields]
        except ValueError:
            report.drop_box(loc, "malformed", f"not numbers: {line.strip()[:60]!r}")
            continue
        if not all(np.isfinite(values)):
            report.drop_box(loc, "non-finite", f"non-finite value in {line.strip()[:60]!r}")
            continue
        if len(values) == 5:
            cls, cx, cy, w, h = values
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        elif len(values) >= 7 and len(values) % 2 == 1:  # a segmentation polygon: its bounding box
            cls, xs, ys = values[0], values[1::2], values[2::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        else:
            report.drop_box(loc, "malformed", f"expected 'cls cx cy w h', got {len(values)} values")
            continue
        if cls != int(cls):
            report.drop_box(loc, "malformed", f"class {fields[0]!r} is not an integer")
            continue
        boxes.append([box[0] * width, box[1] * height, box[2] * width, box[3] * height])
        labels.append(int(cls))
        where.append(loc)
    kept_boxes, kept_labels, _ = clean_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels, dtype=np.int64),
                                             width, height, num_classes, where, report)
    return kept_boxes, kept_labels
