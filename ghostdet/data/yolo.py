"""YOLO txt: ``images/<split>/`` + ``labels/<split>/*.txt`` (``cls cx cy w h`` normalised), names from data.yaml."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml

from ghostdet.data.image_io import IMAGE_SUFFIXES
from ghostdet.data.scan import (ImageRecord, ScanReport, clean_boxes, files_fingerprint, finish_report, load_cache,
                                probe_images, resolve_root, save_cache, split_path)
from ghostdet.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)


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
        raise DataError(f"no class names for {root}: add 'names:' to {root / 'data.yaml'} (or classes.txt), "
                        f"or set data.names=[...]")
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
    root = resolve_root(cfg, layout)
    data_yaml, yaml_file = read_data_yaml(cfg, root)
    cfg = dict(cfg, **{split: yolo_split_folder(cfg, root, split, data_yaml, yaml_file)})
    layout = f"{cfg[split]}/*.jpg and the matching labels/*.txt (one 'cls cx cy w h' line per box)"
    images_dir = split_path(cfg, root, split, layout)
    labels_dir = labels_dir_for(images_dir)
    names = yolo_names(cfg, root, data_yaml, yaml_file)
    image_files = sorted(str(p) for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    label_files = [str((labels_dir / Path(f).relative_to(images_dir)).with_suffix(".txt")) for f in image_files]
    fingerprint = files_fingerprint(image_files + label_files, {"split": split, "names": names})
    if labels_dir != images_dir:
        cache_file = labels_dir.parent / f"{labels_dir.name}.ghostdet.cache"
    else:
        cache_file = images_dir / f"{split}.ghostdet.cache"
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
    orphans = sorted(set(map(str, labels_dir.rglob("*.txt"))) - set(label_files)) if labels_dir.is_dir() else []
    for orphan in orphans:  # usually a naming mismatch between images and labels
        report.problems.append(f"{orphan}: label file without an image in {images_dir}; ignored")
    report.orphan_labels = len(orphans)
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
    kept_boxes, kept_labels, _ = clean_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4),
                                             np.array(labels, dtype=np.int64), width, height, num_classes, where, report)
    return kept_boxes, kept_labels
