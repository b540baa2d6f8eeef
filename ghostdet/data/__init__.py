"""Datasets, scanning/validation, transforms and loaders.

Public API (what the trainer, eval, detect and tools call)::

    from ghostdet.data import build_dataset, build_dataloader

    train_set = build_dataset(cfg.data, split="train", imgsz=640, augment=True, aug_cfg=cfg.augment, seed=0)
    val_set = build_dataset(cfg.data, split="val", imgsz=640, augment=False)
    train_loader = build_dataloader(train_set, batch_size=16, workers=2, shuffle=True, seed=0)
    for images, targets, metas, ignore in train_loader: ...   # see collate_fn (ignore: crowd regions)
    train_set.set_mosaic(False)                        # close-mosaic: takes effect in running workers too

``build_dataset`` raises ``DataError`` (one line naming the path and the expected layout) when the
root, the annotation file or every image is missing/unusable, and ``ConfigError`` for a bad ``data``
node; it does so before anything else is built. Faulty images and label lines are skipped with a
warning naming the file (and line); the scan summary is logged and kept in ``dataset.report``.

A dataset (``DetectionDataset``) exposes:
  - ``names`` (list[str]), ``num_classes``, ``category_ids`` (COCO category id per contiguous class, or
    None for YOLO and VOC data), ``coco_gt()`` (pycocotools COCO of the split in original pixels,
    crowd annotations included; category ids are ``category_ids`` or, when None, the class index);
  - ``records`` (scanned ``ImageRecord`` list: file, image_id, height, width, boxes, labels, crowd boxes),
    ``report`` (``ScanReport``), ``imgsz``, ``augment``;
  - ``dataset[i]`` → sample dict: ``image`` HxWx3 uint8 RGB (transformed), ``boxes`` float32 (N,4) xyxy
    input pixels, ``labels`` int64 (N,), ``crowd_boxes`` float32 (M,4) (COCO ``iscrowd`` / VOC ``difficult`` regions, transformed
    like the boxes; never targets, the loss ignores them), ``image_id``, ``file``, ``orig_size`` (h, w), ``ratio`` and
    ``pad`` (left, top) of the letterbox (None for augmented training samples, whose geometry is random);
  - ``load_image(i)`` → original image (upright, RGB uint8); ``set_mosaic(enabled)``;
    ``set_random_seed(seed)`` (seeds the augmentation RNGs; the loader calls it per worker);
    ``cache_in_ram()`` (decode every image once; done by ``build_dataset`` when ``data.cache_images``).

Augmentation keys of ``aug_cfg`` (plain dict or DictConfig; defaults in ``transforms.DEFAULT_AUG``,
ultralytics names and meanings): ``mosaic`` (probability), ``mixup`` (probability), ``degrees``,
``translate``, ``scale``, ``shear``, ``fliplr``, ``flipud``, ``hsv_h``, ``hsv_s``, ``hsv_v``,
``min_box_size`` (px), ``min_box_area`` (px²), ``min_visibility``, ``max_aspect``. Unknown keys are a
``ConfigError``.
``close_mosaic`` (epochs) belongs to the trainer, which calls ``set_mosaic(False)``.
"""
from __future__ import annotations

from ghostdet.data.coco import scan_coco
from ghostdet.data.datasets import DetectionDataset, build_dataset
from ghostdet.data.image_io import probe_image, read_image
from ghostdet.data.letterbox import letterbox, letterbox_boxes, unletterbox_boxes
from ghostdet.data.loader import build_dataloader, collate_fn
from ghostdet.data.scan import ImageRecord, ScanReport
from ghostdet.data.shapes import generate_shapes
from ghostdet.data.transforms import DEFAULT_AUG, eval_transform
from ghostdet.data.voc import scan_voc
from ghostdet.data.yolo import scan_yolo

__all__ = [
    "DEFAULT_AUG",
    "DetectionDataset",
    "ImageRecord",
    "ScanReport",
    "build_dataloader",
    "build_dataset",
    "collate_fn",
    "eval_transform",
    "generate_shapes",
    "letterbox",
    "letterbox_boxes",
    "probe_image",
    "read_image",
    "scan_coco",
    "scan_voc",
    "scan_yolo",
    "unletterbox_boxes",
]
