"""The dataset object and its builder over the formats: COCO json (``coco.py``), YOLO txt (``yolo.py``), Pascal
VOC / LabelImg xml (``voc.py``) and the generated ``shapes`` set (``shapes.py``, COCO json on disk).

``build_dataset`` validates the ``data`` config node, scans the split (or loads its scan cache), logs the
report and returns a ``DetectionDataset``. Setup faults (no root, no annotation file, no usable image)
raise ``DataError`` with one line naming the path and the expected layout.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ghostdet.data.coco import json_ground_truth, scan_coco
from ghostdet.data.image_io import read_image
from ghostdet.data.scan import ImageRecord, ScanReport
from ghostdet.data.letterbox import PAD_VALUE, letterbox_boxes
from ghostdet.data.transforms import IGNORE_LABEL, TrainTransform, eval_transform
from ghostdet.data.voc import scan_voc
from ghostdet.data.yolo import scan_yolo
from ghostdet.utils.errors import ConfigError, DataError
from ghostdet.utils.imgsz import check_imgsz

log = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "voc", "shapes")


# ------------------------------------------------------------------------------------------------ dataset
class DetectionDataset(Dataset):
    """Scanned records of one split plus the transform (training augmentation or eval letterbox)."""

    def __init__(self, records: list[ImageRecord], names: list[str], category_ids: list[int] | None,
                 imgsz: int = 640, augment: bool = False, aug_cfg=None, report: ScanReport | None = None,
                 seed: int | None = None):
        check_imgsz(imgsz)  # no model at hand: the Ghost-YOLO stride rule (utils/imgsz.py)
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
        """The original image, upright, HxWx3 uint8 RGB (``DataError`` naming the file if it cannot be decoded)."""
        rec = self.records[index]
        return read_image(rec.file, (rec.height, rec.width))

    def load_resized(self, index: int):
        """Image resized so its long side is ``imgsz``, with its boxes/labels in those pixels.

        Crowd regions (COCO ``iscrowd``) follow the objects as rows labelled ``IGNORE_LABEL`` (-1), so the
        training augmentation moves them exactly like the boxes (``TrainTransform`` separates them again).
        """
        rec = self.records[index]
        ratio = self.imgsz / max(rec.height, rec.width)
        boxes, labels = rec.boxes, rec.labels
        if rec.crowd_boxes is not None and len(rec.crowd_boxes):
            boxes = np.concatenate([boxes, rec.crowd_boxes])
            labels = np.concatenate([labels, np.full(len(rec.crowd_boxes), IGNORE_LABEL, dtype=np.int64)])
        boxes = (boxes * ratio).astype(np.float32)
        if self._ram is not None and self.augment and self._ram[index] is not None:  # (eval caches letterboxed samples)
            return self._ram[index], boxes, labels
        size = (max(1, round(rec.width * ratio)), max(1, round(rec.height * ratio)))
        # let the JPEG decoder shrink big images by 2/4/8 (never below imgsz): most of the decode cost saved
        reduce = next((f for f in (8, 4, 2) if max(rec.height, rec.width) / f >= self.imgsz), 1)
        img = self._load_or_substitute(index, reduce)
        if img is None:  # undecodable now: a plain grey image without boxes (its boxes would teach grey = object)
            img, boxes, labels = np.full((size[1], size[0], 3), PAD_VALUE, np.uint8), boxes[:0], labels[:0]
            return img, boxes, labels
        if img.shape[1::-1] != size:
            shrink = img.shape[1] > 2 * size[0]
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return img, boxes, labels

    def _load_or_substitute(self, index: int, reduce: int = 1) -> np.ndarray | None:
        """The image, or None (with a warning naming the file) when it passed the scan but fails to decode now."""
        rec = self.records[index]
        try:
            return read_image(rec.file, (rec.height, rec.width), reduce=reduce)
        except DataError as e:  # deleted or damaged since the scan: keep going, say which file
            log.warning("%s (changed since the scan: an empty image without boxes stands in for this sample)", e)
            return None

    def _eval_sample(self, index: int):
        if self._ram is not None and not self.augment:
            return self._ram[index]
        rec = self.records[index]
        img = self._load_or_substitute(index)
        if img is None:
            return eval_transform(np.full((rec.height, rec.width, 3), PAD_VALUE, np.uint8), rec.boxes[:0], self.imgsz)
        return eval_transform(img, rec.boxes, self.imgsz)

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
        if self.augment:
            # an image that failed to decode is not cached: its grey stand-in must never come back with the record's
            # boxes (load_resized returns the stand-in without boxes, which is how a failure shows here)
            expected = [len(r.boxes) + (len(r.crowd_boxes) if r.crowd_boxes is not None else 0) for r in self.records]
            self._ram = [img if len(boxes) == n else None for (img, boxes, _), n in zip(items, expected)]
        else:
            self._ram = items  # an eval stand-in is cached with its (empty) boxes; __getitem__ drops its labels too
        log.info("cached %d images in RAM (%.2f GB) in %.1f s", len(self), need / 1e9, time.perf_counter() - start)
        return True

    def __getitem__(self, index: int | tuple[int, int]) -> dict:
        if isinstance(index, tuple):  # (index, seed) from the training sampler: the augmentation follows from it alone
            index, seed = index
            self.set_random_seed(seed)
        rec = self.records[index]
        if self.augment:
            img, boxes, labels, crowd = self.transform(index, use_mosaic=self.mosaic_enabled)
            ratio = pad = None
        else:
            img, boxes, ratio, pad = self._eval_sample(index)
            decoded = len(boxes) == len(rec.boxes)  # the stand-in for an image that no longer decodes has none
            labels = rec.labels if decoded else rec.labels[:0]
            has_crowd = decoded and rec.crowd_boxes is not None and len(rec.crowd_boxes)
            crowd = letterbox_boxes(rec.crowd_boxes, ratio, pad) if has_crowd else np.zeros((0, 4), np.float32)
        return {"image": img, "boxes": boxes, "labels": labels, "crowd_boxes": crowd, "image_id": rec.image_id,
                "file": rec.file, "orig_size": (rec.height, rec.width), "ratio": ratio, "pad": pad}

    # -- evaluation ground truth
    def category_id(self, label: int) -> int:
        """COCO category id of a contiguous class (the class index itself when there are no ids)."""
        return self.category_ids[label] if self.category_ids is not None else int(label)

    ann_file: str | None = None  # the instances json of a COCO-format split (set by build_dataset)

    def coco_gt(self, from_json: bool = True):
        """pycocotools ``COCO`` of this split in original pixels; crowd regions included as ``iscrowd=1``.

        A COCO-format split (``ann_file`` set) gets its json as it is, restricted to the scanned images
        (``coco.json_ground_truth``): the official protocol, with the json's own boxes, areas, crowd flags
        and ids. YOLO and ``shapes`` data, or ``from_json=False``, get a ground truth built from the scanned
        records (boxes as cleaned and clipped by the scan, class index = category id when there are no ids).
        """
        from pycocotools.coco import COCO

        gt = COCO()
        if from_json and self.ann_file is not None:
            gt.dataset = json_ground_truth(self.ann_file, self.records, self.names, self.category_ids)
            log.info("evaluation ground truth: %s as it is, %d of its images (the scanned ones), %d annotations",
                     self.ann_file, len(gt.dataset["images"]), len(gt.dataset["annotations"]))
        else:
            gt.dataset = self._records_ground_truth()
            log.info("evaluation ground truth: built from the %d scanned images of %s",
                     len(self.records), self.report.source if self.report is not None else "the dataset")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            gt.createIndex()
        return gt

    def _records_ground_truth(self) -> dict:
        images, annotations = [], []
        for rec in self.records:
            images.append({"id": rec.image_id, "file_name": os.path.basename(rec.file), "width": rec.width,
                           "height": rec.height})
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
        return {"images": images, "annotations": annotations, "categories": categories}


# ------------------------------------------------------------------------------------------------ builder
def build_dataset(data_cfg, split: str = "train", imgsz: int = 640, augment: bool | None = None, aug_cfg=None,
                  cache: bool | None = None, seed: int | None = None, read_only: bool = False) -> DetectionDataset:
    """Scan and validate one split of the dataset described by the Hydra ``data`` node.

    ``data_cfg``: ``format`` (coco | yolo | voc | shapes), ``root``, ``train``/``val`` (image folders, relative to
    root), ``train_ann``/``val_ann`` (COCO json, relative to root), optional ``names``, ``cache`` (scan
    cache; ``cache`` here overrides it). ``augment`` defaults to ``split == "train"``; ``seed`` seeds the
    augmentation when no DataLoader worker re-seeds it. ``read_only`` (a data config read from a checkpoint)
    writes nothing: no scan cache, no generated shapes set. Returns a ``DetectionDataset``.
    """
    cfg = _as_dict(data_cfg)
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise ConfigError(f"data.format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if split not in ("train", "val"):
        raise ConfigError(f"split must be 'train' or 'val', got {split!r}")
    use_cache = (bool(cfg.get("cache", True)) if cache is None else bool(cache)) and not read_only
    if fmt == "shapes" and not read_only:
        from ghostdet.data.shapes import ensure_shapes

        ensure_shapes(cfg)
    if fmt in ("coco", "shapes"):
        records, report, names, category_ids = scan_coco(cfg, split, use_cache)
    elif fmt == "voc":
        records, report, names, category_ids = scan_voc(cfg, split, use_cache)
    else:
        records, report, names, category_ids = scan_yolo(cfg, split, use_cache)
    report.log(log)
    if not records:
        raise DataError(f"no usable image in {report.source} ({report.summary()}); "
                        f"run tools/check_data.py data.root=... to list the problems")
    if report.boxes_kept == 0:
        log.warning("%s split of %s has no boxes at all: every image is a background image; check that the labels "
                    "are where expected (YOLO: labels/ beside images/, same file stems)", split, report.source)
    augment = split == "train" if augment is None else augment
    dataset = DetectionDataset(records, names, category_ids, imgsz=imgsz, augment=augment, aug_cfg=aug_cfg,
                               report=report, seed=seed)
    if fmt == "coco":  # its json is the evaluation ground truth (report.source: the json scanned)
        dataset.ann_file = report.source
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
        raise ConfigError("no data config: pass data=<shapes|coco128|coco|yolo|voc>")
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
