"""Datasets, scanning/validation, transforms and loaders.

Public API (what the trainer, eval, detect and tools call)::

    from ghostdet.data import build_dataset, build_dataloader

    train_set = build_dataset(cfg.data, split="train", imgsz=640, augment=True, aug_cfg=cfg.aug)
    val_set = build_dataset(cfg.data, split="val", imgsz=640, augment=False)
    train_loader = build_dataloader(train_set, batch_size=16, workers=2, shuffle=True, seed=0)
    for images, targets, metas in train_loader: ...   # see collate_fn
    train_set.set_mosaic(False)                        # close-mosaic: takes effect in running workers too

``build_dataset`` raises ``DataError`` (one line naming the path and the expected layout) when the
root, the annotation file or every image is missing/unusable, and ``ConfigError`` for a bad ``data``
node; it does so before anything else is built. Faulty images and label lines are skipped with a
warning naming the file (and line); the scan summary is logged and kept in ``dataset.report``.

A dataset (``DetectionDataset``) exposes:
  - ``names`` (list[str]), ``num_classes``, ``category_ids`` (COCO category id per contiguous class, or
    None for YOLO/shapes-less-ids data), ``coco_gt()`` (pycocotools COCO of the split in original pixels,
    crowd annotations included; category ids are ``category_ids`` or, when None, the class index);
  - ``records`` (scanned ``ImageRecord`` list: file, image_id, height, width, boxes, labels, crowd boxes),
    ``report`` (``ScanReport``), ``imgsz``, ``augment``;
  - ``dataset[i]`` → sample dict: ``image`` HxWx3 uint8 RGB (transformed), ``boxes`` float32 (N,4) xyxy
    input pixels, ``labels`` int64 (N,), ``image_id``, ``file``, ``orig_size`` (h, w), ``ratio`` and
    ``pad`` (left, top) of the letterbox (None for augmented training samples, whose geometry is random);
  - ``load_image(i)`` → original image (upright, RGB uint8); ``set_mosaic(enabled)``;
    ``set_random_seed(seed)`` (seeds the augmentation RNGs; the loader calls it per worker).

Augmentation keys of ``aug_cfg`` (plain dict or DictConfig; defaults in ``transforms.DEFAULT_AUG``,
ultralytics names and meanings): ``mosaic`` (probability), ``mixup`` (probability), ``degrees``,
``translate``, ``scale``, ``shear``, ``perspective``-free affine, ``fliplr``, ``flipud``, ``hsv_h``,
``hsv_s``, ``hsv_v``, ``min_box_size`` (px), ``min_box_area`` (px²), ``min_visibility``.
``close_mosaic`` (epochs) belongs to the trainer, which calls ``set_mosaic(False)``.
"""
from __future__ import annotations

from ghostdet.data.letterbox import letterbox, letterbox_boxes, unletterbox_boxes

__all__ = [
    "letterbox",
    "letterbox_boxes",
    "unletterbox_boxes",
    "build_dataset",
    "build_dataloader",
    "collate_fn",
    "read_image",
    "DetectionDataset",
    "ImageRecord",
    "ScanReport",
    "DEFAULT_AUG",
    "generate_shapes",
]


def build_dataset(data_cfg, split: str = "train", imgsz: int = 640, augment: bool | None = None, aug_cfg=None, cache: bool | None = None):
    """Scan and validate one split of the dataset described by the Hydra ``data`` node.

    ``data_cfg``: ``format`` (coco | yolo | shapes), ``root``, ``train``/``val`` (image folders),
    ``train_ann``/``val_ann`` (COCO json, relative to root), optional ``names``, ``cache`` (scan cache).
    ``augment`` defaults to ``split == "train"``. Returns a ``DetectionDataset``.
    """
    from ghostdet.data.datasets import build_dataset as _build

    return _build(data_cfg, split=split, imgsz=imgsz, augment=augment, aug_cfg=aug_cfg, cache=cache)


def build_dataloader(dataset, batch_size: int = 16, workers: int = 2, shuffle: bool = True, seed: int = 0,
                     distributed: bool = False, drop_last: bool = False, pin_memory: bool | None = None):
    """A DataLoader yielding ``(images, targets, metas)`` (see ``collate_fn``).

    Seeded sampler and workers (reproducible augmentation), persistent workers when ``workers > 0``,
    pinned memory when CUDA is available (``pin_memory=None``), a ``DistributedSampler`` when
    ``distributed`` (call ``loader.sampler.set_epoch(epoch)`` each epoch).
    """
    from ghostdet.data.loader import build_dataloader as _build

    return _build(dataset, batch_size=batch_size, workers=workers, shuffle=shuffle, seed=seed,
                  distributed=distributed, drop_last=drop_last, pin_memory=pin_memory)


def __getattr__(name):  # lazy re-exports keep `import ghostdet.data` light
    if name in ("collate_fn",):
        from ghostdet.data import loader

        return getattr(loader, name)
    if name in ("read_image",):
        from ghostdet.data import image_io

        return getattr(image_io, name)
    if name in ("DetectionDataset",):
        from ghostdet.data import datasets

        return getattr(datasets, name)
    if name in ("ImageRecord", "ScanReport"):
        from ghostdet.data import scan

        return getattr(scan, name)
    if name in ("DEFAULT_AUG",):
        from ghostdet.data import transforms

        return getattr(transforms, name)
    if name in ("generate_shapes",):
        from ghostdet.data import shapes

        return getattr(shapes, name)
    raise AttributeError(f"module 'ghostdet.data' has no attribute {name!r}")
