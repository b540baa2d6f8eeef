"""COCO instances json: images folder + json; category ids ↔ contiguous classes; crowd kept for evaluation."""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict

import numpy as np

from ghostdet.data.image_io import exif_upright_boxes
from ghostdet.data.scan import (ImageRecord, ScanReport, clean_boxes, files_fingerprint, finish_report, load_cache,
                                probe_images, resolve_root, save_cache, split_path)
from ghostdet.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def scan_coco(cfg: dict, split: str, use_cache: bool = True):
    """Scan a COCO-json split: ``(records, report, names, category_ids)``."""
    img_key, ann_key = split, f"{split}_ann"
    layout = f"images in {cfg.get(img_key)}/ and a COCO instances json at {cfg.get(ann_key)}"
    root = resolve_root(cfg, layout)
    ann_file = split_path(cfg, root, ann_key, layout, is_file=True)
    images_dir = split_path(cfg, root, img_key, layout)
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot read COCO json {ann_file}: {' '.join(str(e).split())}; fix or regenerate it") from None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("categories"), list)):
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
        # boxes refer to the upright image, unless the json's size fits only the stored (un-rotated) pixels of
        # a 90°-rotated photo (annotated where the EXIF tag was ignored, as in COCO itself): then they are mapped
        stored_frame = json_size == probe.stored_size != (probe.height, probe.width)
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
            report.json_problem(str(ann_file), "bad image entry",
                                f"image entry {str(img)[:80]} lacks an integer 'id' or a 'file_name'; ignored")
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
    boxes, crowd = [], []
    for ann in anns:
        loc = f"{ann_file} annotation id {ann.get('id')} ({os.path.basename(file)})"
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

    def columns(entries):  # (box, class, area, where) rows -> arrays
        return (np.array([e[0] for e in entries], dtype=np.float64).reshape(-1, 4),
                np.array([e[1] for e in entries], dtype=np.int64), np.array([e[2] for e in entries], dtype=np.float64),
                [e[3] for e in entries])

    xyxy, classes, areas, where = columns(boxes)
    kept_boxes, kept_labels, kept = clean_boxes(xyxy, classes, width, height, num_classes, where, report)
    rec = ImageRecord(file, int(img["id"]), height, width, kept_boxes, kept_labels, areas=areas[kept])
    if crowd:  # crowd regions: validated the same way, reported, not counted among training boxes
        crowd_report = ScanReport(report.split, report.source)
        xyxy, classes, areas, where = columns(crowd)
        rec.crowd_boxes, rec.crowd_labels, kept = clean_boxes(xyxy, classes, width, height, num_classes, where, crowd_report)
        rec.crowd_areas = areas[kept]
        report.problems.extend(p.replace("box dropped", "crowd region dropped") for p in crowd_report.problems)
    return rec
