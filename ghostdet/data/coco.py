"""COCO instances json: images folder + json; category ids ↔ contiguous classes; crowd kept for evaluation."""
from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ghostdet.data.image_io import exif_upright_boxes, probe_image
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
    data = _read_coco_json(ann_file)
    annotations = data["annotations"]

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


def _read_coco_json(ann_file: Path) -> dict:
    """The parsed instances json (``annotations`` defaulting to ``[]``); a one-line DataError when it is not one."""
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"cannot read COCO json {ann_file}: {' '.join(str(e).split())}; fix or regenerate it") from None
    if not (isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("categories"), list)):
        raise DataError(f"{ann_file} is not a COCO instances json (needs 'images', 'annotations', 'categories' lists)")
    data["annotations"] = data.get("annotations") or []
    if not isinstance(data["annotations"], list):
        raise DataError(f"{ann_file}: 'annotations' must be a list")
    return data


def json_ground_truth(ann_file: str | Path, records: list[ImageRecord], names: list[str],
                      category_ids: list[int]) -> dict:
    """The split's COCO json as it is, restricted to the images in ``records``: the official ground truth.

    The kept images and annotations are the json's own entries with all their fields (original ``bbox``
    even where it leaves the image, ``area``, ``iscrowd``, image and annotation ids), so COCOeval gives
    what it gives on the json itself with ``imgIds`` = the evaluated images. Images the scan skipped
    (unreadable, missing) are left out: they were never evaluated, so their objects are not misses.
    Changed only where pycocotools could not evaluate the json as it is, each logged:

    - a repeated image id keeps its first entry and a repeated category id its first (as the scan does);
      category names are the dataset's (``data.names`` may rename them);
    - annotations whose ``bbox`` is not 4 finite numbers are left out (COCOeval would crash on them);
    - a missing or non-numeric ``area`` becomes w*h, a missing ``iscrowd`` 0 (COCOeval reads both);
    - annotation ids that are missing, not positive or repeated get new unique ids (pycocotools looks
      annotations up by id, and takes id 0 for "unmatched");
    - on a 90°-rotated (EXIF) photo whose json size is that of the stored pixels, the boxes are mapped into
      the upright image, as the scan does, because that is where the model's detections are.
    """
    ann_file = Path(ann_file)
    data = _read_coco_json(ann_file)
    wanted = {rec.image_id: rec for rec in records}
    images = {}
    for img in data["images"]:
        image_id = img.get("id") if isinstance(img, dict) else None
        if isinstance(image_id, int) and image_id in wanted and image_id not in images:
            images[image_id] = img
    missing = sorted(set(wanted) - set(images))
    if missing:
        raise DataError(f"{ann_file} no longer lists image id(s) {missing[:3]} of the scanned split; it changed "
                        f"since the dataset was built: build the dataset again")

    rotated = {}  # image id -> (orientation, stored (h, w)) where the json's boxes are on the stored pixels
    for image_id, img in images.items():
        rec = wanted[image_id]
        json_size = (img.get("height"), img.get("width"))
        if json_size != (rec.height, rec.width):
            probe = probe_image(rec.file)
            if not probe.error and json_size == probe.stored_size != (probe.height, probe.width):
                rotated[image_id] = (probe.orientation, probe.stored_size)
                images[image_id] = dict(img, height=rec.height, width=rec.width)

    wanted_cats = set(category_ids)
    categories, name_of = {}, dict(zip(category_ids, names))
    for cat in data["categories"]:
        cid = cat.get("id") if isinstance(cat, dict) else None
        if isinstance(cid, int) and cid in wanted_cats and cid not in categories:
            categories[cid] = dict(cat, name=name_of[cid])

    annotations, fixed = [], {"malformed bbox": 0, "no area": 0, "no iscrowd": 0, "new id": 0}
    for ann in data["annotations"]:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if not (isinstance(image_id, int) and image_id in images):
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            fixed["malformed bbox"] += 1
            continue
        if not _is_number(ann.get("area")):
            ann["area"] = float(bbox[2]) * float(bbox[3])
            fixed["no area"] += 1
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            fixed["no iscrowd"] += 1
        if image_id in rotated:
            x, y, w, h = (float(v) for v in bbox)
            box = exif_upright_boxes([x, y, x + w, y + h], *rotated[image_id])[0].tolist()
            ann["bbox"] = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
        annotations.append(ann)
    seen, next_id = set(), 1 + max((a["id"] for a in annotations if _is_positive_int(a.get("id"))), default=0)
    for ann in annotations:
        if not _is_positive_int(ann.get("id")) or ann["id"] in seen:
            ann["id"], next_id = next_id, next_id + 1
            fixed["new id"] += 1
        seen.add(ann["id"])
    changes = ", ".join(f"{what} {n}" for what, n in fixed.items() if n)
    if changes:
        log.warning("%s: annotations COCOeval cannot take as they are, changed for evaluation: %s", ann_file, changes)
    if rotated:
        log.info("%s: boxes of %d EXIF-rotated image(s) mapped onto the upright image for evaluation", ann_file, len(rotated))
    return {"images": list(images.values()), "annotations": annotations, "categories": list(categories.values())}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _is_positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


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
