"""YOLO txt: ``images/<split>/`` + ``labels/<split>/*.txt`` (``cls cx cy w h`` normalised), names from data.yaml.

A split is one or more image folders and/or ``.txt`` image lists (ultralytics' ``train:``/``val:`` forms); each
image's labels sit where the last ``images`` folder of its path becomes ``labels``. ``data_yaml.py`` turns an
ultralytics/Roboflow dataset file into this config (``data=my_data.yaml``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml

from ghostdet.data.image_io import IMAGE_SUFFIXES
from ghostdet.data.scan import (ImageRecord, ScanReport, clean_boxes, files_fingerprint, finish_report, load_cache,
                                probe_images, resolve_root, save_cache)
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


def resolve_entry(entry: str, base: Path) -> Path:
    """One ``train:``/``val:`` entry (a folder or a ``.txt`` list) as a path: absolute as written, else under
    ``base``. A ``../x`` that is not there while ``base/x`` is becomes ``base/x``: Roboflow writes
    ``train: ../train/images`` beside ``train/``, and ultralytics reads it that way too."""
    path = Path(entry).expanduser()
    if path.is_absolute():
        return path.resolve()
    found = (base / path).resolve()
    if not found.exists() and entry.replace("\\", "/").startswith("../") and (base / entry[3:]).exists():
        return (base / entry[3:]).resolve()
    return found


def split_entries(cfg: dict, split: str, data_yaml: dict, yaml_file: Path) -> tuple[list[str], str]:
    """The entries of a split (folders and/or .txt image lists, relative to data.root) and where they came from:
    ``data.<split>``, else the data.yaml's ``<split>:``, else ``images/<split>``."""
    value, source = cfg.get(split), f"data.{split}"
    if value in (None, "", []):
        value, source = data_yaml.get(split), f"{yaml_file}: {split}:"
    if value in (None, "", []):
        value, source = f"images/{split}", f"data.{split}"
    entries = list(value) if isinstance(value, (list, tuple)) else [value]
    if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        raise ConfigError(f"{source} must be an image folder, a .txt list of images, or a list of those; got {value!r}")
    return [e.strip() for e in entries], source


def label_file_for(image_file: str) -> str:
    """ultralytics' rule for a listed image: the last ``images`` folder of its path becomes ``labels``."""
    path = Path(image_file)
    return str((labels_dir_for(path.parent) / path.name).with_suffix(".txt"))


def _read_image_list(txt: Path, root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Images named in a .txt list (one path a line; ``./x`` and other relative paths from the list's folder,
    else from data.root, as ultralytics and Darknet lists are written) and the ``(file, where)`` of missing ones."""
    try:
        lines = txt.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the image list {txt} ({e})") from None
    files, missing = [], []
    for line_no, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        path = Path(line).expanduser()
        if not path.is_absolute():
            path = txt.parent / path if (txt.parent / path).exists() or not (root / path).exists() else root / path
        path = path.resolve()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            missing.append((str(path), f"{txt}:{line_no}: not an image suffix ({path.suffix or 'none'})"))
        elif not path.is_file():
            missing.append((str(path), f"{txt}:{line_no}: listed image not found"))
        else:
            files.append(str(path))
    return files, missing


def _gather_images(entries: list[Path], root: Path):
    """Image and label files of a split's entries, the listed-but-missing images and the folders (for orphans)."""
    images, missing, folders = {}, [], []
    for entry in entries:
        if entry.is_dir():
            labels_dir = labels_dir_for(entry)
            folders.append((entry, labels_dir))
            for p in sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
                images.setdefault(str(p), str((labels_dir / p.relative_to(entry)).with_suffix(".txt")))
        else:
            files, gone = _read_image_list(entry, root)
            missing += gone
            for f in files:
                images.setdefault(f, label_file_for(f))
    image_files = sorted(images)
    return image_files, [images[f] for f in image_files], missing, folders


def _cache_file(entries: list[Path], root: Path, split: str) -> Path:
    if len(entries) == 1 and entries[0].is_dir():
        labels_dir = labels_dir_for(entries[0])
        if labels_dir != entries[0]:
            return labels_dir.parent / f"{labels_dir.name}.ghostdet.cache"
        return entries[0] / f"{split}.ghostdet.cache"
    if len(entries) == 1:
        return entries[0].with_name(f"{entries[0].stem}.ghostdet.cache")
    return root / f"{split}.ghostdet.cache"


def yolo_names(cfg: dict, root: Path, data_yaml: dict | None = None, yaml_file: Path | None = None) -> list[str]:
    """Class names: ``data.names`` (list or {index: name}), else ROOT/data.yaml ``names`` (or ``nc`` alone:
    ``class0``, ``class1``, ... as ultralytics does), else ROOT/classes.txt."""
    names = cfg.get("names")
    source = "data.names"
    if not names:
        if data_yaml is None:
            data_yaml, yaml_file = read_data_yaml(cfg, root)
        if data_yaml.get("names"):
            names, source = data_yaml["names"], str(yaml_file)
        elif isinstance(data_yaml.get("nc"), int) and not isinstance(data_yaml["nc"], bool) and data_yaml["nc"] > 0:
            names, source = [f"class{i}" for i in range(data_yaml["nc"])], str(yaml_file)
            log.warning("%s has nc: %d but no names: classes are called class0..class%d", yaml_file, data_yaml["nc"],
                        data_yaml["nc"] - 1)
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
    """Scan a YOLO-txt split (image folders and/or .txt image lists): ``(records, report, names, None)``."""
    layout = f"{cfg.get(split) or f'images/{split}'}/*.jpg and the matching labels/*.txt (one 'cls cx cy w h' line per box)"
    root = resolve_root(cfg, layout)
    data_yaml, yaml_file = read_data_yaml(cfg, root)
    raw_entries, source = split_entries(cfg, split, data_yaml, yaml_file)
    entries = []
    for raw in raw_entries:
        path = resolve_entry(raw, root)
        if not (path.is_dir() or (path.is_file() and path.suffix.lower() == ".txt")):
            what = "image list" if raw.lower().endswith(".txt") else "folder"
            raise DataError(f"{what} {path} not found ({source} {raw}): expected an image folder (labels in the "
                            f"matching labels/ folder) or a .txt list of images under data.root={root}; "
                            f"set data.{split}=...")
        entries.append(path)
    names = yolo_names(cfg, root, data_yaml, yaml_file)
    image_files, label_files, missing, folders = _gather_images(entries, root)
    extra = [str(e) for e in entries if e.is_file()]  # an edited list rescans
    fingerprint = files_fingerprint(image_files + label_files + extra, {"split": split, "names": names,
                                                                        "missing": missing})
    cache_file = _cache_file(entries, root, split)
    if use_cache and (hit := load_cache(cache_file, fingerprint)) is not None:
        _check_classes(cfg, hit[1], names)
        return hit[0], hit[1], names, None

    report = ScanReport(split, str(entries[0]) if len(entries) == 1 else f"{root} ({', '.join(raw_entries)})")
    report.images_found = len(image_files) + len(missing)
    for file, where in missing:
        report.skip_image(file, "missing", where)
    image_ids = _yolo_image_ids(image_files)
    records = []
    for file, label_file, image_id, probe in zip(image_files, label_files, image_ids, probe_images(image_files)):
        if probe.error:
            report.skip_image(file, "unreadable", probe.error)
            continue
        boxes, labels = _read_yolo_labels(label_file, probe.width, probe.height, len(names), report)
        records.append(ImageRecord(file, image_id, probe.height, probe.width, boxes, labels))
    known = set(label_files)
    for images_dir, labels_dir in folders:  # (folders only: a list's label folder may hold other splits' labels)
        orphans = sorted(set(map(str, labels_dir.rglob("*.txt"))) - known) if labels_dir.is_dir() else []
        for orphan in orphans:  # usually a naming mismatch between images and labels
            report.problems.append(f"{orphan}: label file without an image in {images_dir}; ignored")
        report.orphan_labels += len(orphans)
    finish_report(records, report)
    _check_classes(cfg, report, names)
    if use_cache and records:
        save_cache(cache_file, fingerprint, records, report)
    return records, report, names, None


def _check_classes(cfg: dict, report: ScanReport, names: list[str]) -> None:
    """With ``data.strict_names`` (set for ``data=FILE.yaml``), labels using a class the names do not cover are a
    wrong names list, not a few faulty lines: one error naming the dataset file, before any training."""
    count = report.boxes_dropped.get("class out of range", 0)
    if not cfg.get("strict_names") or not count:
        return
    first = next((p for p in report.problems if ", class " in p and " not in 0.." in p), "")
    source = cfg.get("data_yaml") or "data.names"
    raise DataError(f"{source}: names has {len(names)} classes but {count} label line(s) of the {report.split} split "
                    f"use a class id outside 0..{len(names) - 1} (first: {first.replace(': box dropped, ', ': ')}); "
                    f"list every class in names:")


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
