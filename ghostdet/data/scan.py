"""Scanning and validation shared by every format: image probing, box checks, the report, the scan cache.

A scan turns a split into ``ImageRecord``s (usable images with clean boxes in original, upright pixels)
and a ``ScanReport`` (what was skipped or dropped, and why). Every problem is a line naming the file
(and the label line or annotation id); nothing is silently lost, nothing crashes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ghostdet.data.image_io import ImageProbe, probe_image
from ghostdet.utils.atomic import atomic_write
from ghostdet.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump whenever scanning rules change: old caches are rescanned
MAX_LOGGED_PROBLEMS = 30  # the rest are counted in the summary and listed by tools/check_data.py
CLIP_WARN_PX = 1.0  # clipping by more than this is reported; sub-pixel overshoot (common in COCO) is not


@dataclass
class ImageRecord:
    """One usable image: boxes xyxy in original (upright) pixels, contiguous labels, crowd boxes apart."""

    file: str
    image_id: int
    height: int
    width: int
    # float64 keeps the annotation values exact for the ground truth; samples are float32
    boxes: np.ndarray  # float64 (N, 4)
    labels: np.ndarray  # int64 (N,)
    areas: np.ndarray | None = None  # float64 (N,): annotated (segment) areas from a COCO json, for eval
    crowd_boxes: np.ndarray | None = None  # float64 (M, 4): iscrowd regions, for evaluation only
    crowd_labels: np.ndarray | None = None  # int64 (M,)
    crowd_areas: np.ndarray | None = None

    def to_json(self) -> dict:
        out = {"file": self.file, "image_id": self.image_id, "height": self.height, "width": self.width,
               "boxes": self.boxes.tolist(), "labels": self.labels.tolist()}
        for key in ("areas", "crowd_boxes", "crowd_labels", "crowd_areas"):
            value = getattr(self, key)
            out[key] = None if value is None else value.tolist()
        return out

    @classmethod
    def from_json(cls, d: dict) -> "ImageRecord":
        def arr(value, dtype, shape=None):
            if value is None:
                return None
            a = np.asarray(value, dtype=dtype)
            return a.reshape(shape) if shape else a

        return cls(d["file"], int(d["image_id"]), int(d["height"]), int(d["width"]),
                   arr(d["boxes"], np.float64, (-1, 4)), arr(d["labels"], np.int64),
                   arr(d.get("areas"), np.float64), arr(d.get("crowd_boxes"), np.float64, (-1, 4)),
                   arr(d.get("crowd_labels"), np.int64), arr(d.get("crowd_areas"), np.float64))


@dataclass
class ScanReport:
    """Counts and problems of one split's scan; ``summary()`` is the line logged at the end."""

    split: str
    source: str  # the root / annotation file scanned
    images_found: int = 0
    images_used: int = 0
    backgrounds: int = 0  # usable images without any box
    boxes_kept: int = 0
    boxes_clipped: int = 0  # kept after clipping to the image by more than CLIP_WARN_PX
    crowd_kept: int = 0
    orphan_labels: int = 0  # YOLO label files (or VOC xml files) without an image
    images_skipped: Counter = field(default_factory=Counter)  # reason -> count
    boxes_dropped: Counter = field(default_factory=Counter)  # reason -> count
    json_problems: Counter = field(default_factory=Counter)  # reason -> count (COCO json structure)
    class_counts: Counter = field(default_factory=Counter)  # class index -> kept boxes
    problems: list = field(default_factory=list)  # one line per problem, naming the file
    annotation_kind: str = "json"  # what json_problems are about in the summary ("xml" for Pascal VOC)
    crowd_kind: str = "crowd"  # what the ignore regions are called in the summary ("difficult" for Pascal VOC)
    from_cache: bool = False

    def skip_image(self, file: str, reason: str, detail: str = "") -> None:
        self.images_skipped[reason] += 1
        self.problems.append(f"{file}: image skipped, {detail or reason}")

    def drop_box(self, where: str, reason: str, detail: str = "") -> None:
        self.boxes_dropped[reason] += 1
        self.problems.append(f"{where}: box dropped, {detail or reason}")

    def json_problem(self, where: str, reason: str, detail: str) -> None:
        self.json_problems[reason] += 1
        self.problems.append(f"{where}: {detail}")

    def summary(self) -> str:
        def fmt(counter):
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        parts = [
            f"{self.split}: {self.images_used}/{self.images_found} images used ({self.backgrounds} background)",
            f"skipped: {fmt(self.images_skipped)}",
            f"{self.boxes_kept} boxes kept ({self.boxes_clipped} clipped"
            + (f", {self.crowd_kept} {self.crowd_kind} for eval)" if self.crowd_kept else ")"),
            f"dropped: {fmt(self.boxes_dropped)}",
        ]
        if self.json_problems:
            parts.append(f"{self.annotation_kind} problems: {fmt(self.json_problems)}")
        if self.orphan_labels:
            parts.append(f"{self.orphan_labels} label files without an image")
        return "; ".join(parts) + (" [from cache]" if self.from_cache else "")

    def log(self, logger: logging.Logger = log) -> None:
        for line in self.problems[:MAX_LOGGED_PROBLEMS]:
            logger.warning(line)
        if len(self.problems) > MAX_LOGGED_PROBLEMS:
            logger.warning("... and %d more problems (list them all with tools/check_data.py)",
                           len(self.problems) - MAX_LOGGED_PROBLEMS)
        logger.info("scan %s (%s)", self.summary(), self.source)

    def to_json(self) -> dict:
        return {k: (dict(v) if isinstance(v, Counter) else v) for k, v in self.__dict__.items() if k != "from_cache"}

    @classmethod
    def from_json(cls, d: dict) -> "ScanReport":
        report = cls(d["split"], d["source"])
        for key, value in d.items():
            if isinstance(getattr(report, key, None), Counter):
                value = Counter({(int(k) if key == "class_counts" else k): v for k, v in value.items()})
            setattr(report, key, value)
        return report


def probe_images(paths: list[str]) -> list[ImageProbe]:
    """Probe many images; threads overlap the file reads (the work is mostly I/O and C)."""
    if len(paths) < 64:
        return [probe_image(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        return list(pool.map(probe_image, paths, chunksize=32))


def clean_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int, num_classes: int,
                where: list[str], report: ScanReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate xyxy pixel boxes of one image; return ``(boxes, labels, kept_index)`` of the boxes kept.

    Dropped with a report line (``where[i]`` names the file and line/annotation): class out of range,
    non-finite values, zero/negative size, nothing left after clipping to the image, exact duplicates.
    Boxes partly outside the image are clipped.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    keep = []
    seen = set()
    out = np.empty_like(boxes)
    for i, (box, cls) in enumerate(zip(boxes, labels)):
        if not 0 <= cls < num_classes:
            report.drop_box(where[i], "class out of range", f"class {cls} not in 0..{num_classes - 1}")
            continue
        if not np.isfinite(box).all():
            report.drop_box(where[i], "non-finite", f"non-finite coordinates {box.tolist()}")
            continue
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            report.drop_box(where[i], "zero area", f"zero or negative size {_fmt(box)}")
            continue
        clipped = np.array([min(max(x1, 0), width), min(max(y1, 0), height),
                            min(max(x2, 0), width), min(max(y2, 0), height)])
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            report.drop_box(where[i], "outside image", f"{_fmt(box)} outside the {width}x{height} image")
            continue
        key = (int(cls), *np.round(clipped, 3).tolist())
        if key in seen:
            report.drop_box(where[i], "duplicate", f"duplicate of an earlier box {_fmt(clipped)}")
            continue
        seen.add(key)
        if np.abs(clipped - box).max() > CLIP_WARN_PX:
            report.boxes_clipped += 1
            report.problems.append(f"{where[i]}: box clipped to the {width}x{height} image: {_fmt(box)} -> {_fmt(clipped)}")
        out[len(keep)] = clipped
        keep.append(i)
    kept = np.asarray(keep, dtype=np.int64)
    return out[: len(keep)], labels[kept], kept


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:.1f}" for v in box) + "]"


def finish_report(records: list[ImageRecord], report: ScanReport) -> None:
    report.images_used = len(records)
    report.backgrounds = sum(1 for r in records if len(r.boxes) == 0)
    report.boxes_kept = sum(len(r.boxes) for r in records)
    report.crowd_kept = sum(0 if r.crowd_boxes is None else len(r.crowd_boxes) for r in records)
    report.class_counts = Counter()
    for r in records:
        report.class_counts.update(r.labels.tolist())


# ---------------------------------------------------------------------------------------------- paths
def resolve_root(cfg: dict, layout: str) -> Path:
    root = cfg.get("root")
    if root in (None, "", "???"):
        raise ConfigError(f"data.root is not set: pass data.root=DIR, a folder with {layout}")
    path = Path(str(root)).expanduser().resolve()  # absolute: records and caches do not depend on the cwd
    if not path.is_dir():
        raise DataError(f"dataset root {path} not found: expected a folder with {layout}; set data.root=DIR")
    return path


def split_path(cfg: dict, root: Path, key: str, layout: str, is_file: bool = False) -> Path:
    value = cfg.get(key)
    if value in (None, ""):
        raise ConfigError(f"data.{key} is not set: expected {layout} under {root}")
    path = root / str(value)
    if not (path.is_file() if is_file else path.is_dir()):
        what = "file" if is_file else "folder"
        raise DataError(f"{what} {path} not found: expected {layout} under data.root={root}; set data.{key}=...")
    return path


# ---------------------------------------------------------------------------------------------- cache
def files_fingerprint(paths: list[str], extra: dict) -> str:
    """Hash of paths, sizes and mtimes (missing files count too) plus the scan settings in ``extra``."""
    h = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    h.update(str(CACHE_VERSION).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def load_cache(path: Path, fingerprint: str):
    """``(records, report)`` from the cache file when its fingerprint matches, else None."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("version") != CACHE_VERSION or data.get("fingerprint") != fingerprint:
            log.debug("scan cache %s is stale; rescanning", path)
            return None
        records = [ImageRecord.from_json(r) for r in data["records"]]
        report = ScanReport.from_json(data["report"])
        report.from_cache = True
        return records, report
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:  # a corrupt cache is just rescanned
        log.debug("ignoring unreadable scan cache %s (%s)", path, e)
        return None


def folder_is_writable(folder: Path) -> bool:
    """Writable by us AND not marked read-only: root ignores permission bits, we still respect them."""
    try:
        mode = os.stat(folder).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)


def save_cache(path: Path, fingerprint: str, records: list[ImageRecord], report: ScanReport) -> None:
    """Write the cache atomically; a read-only folder (shared data) means no cache, silently."""
    if not folder_is_writable(path.parent):
        log.debug("no scan cache: %s is read-only", path.parent)
        return
    data = {"version": CACHE_VERSION, "fingerprint": fingerprint,
            "records": [r.to_json() for r in records], "report": report.to_json()}
    try:
        # 0644: the cache should be as readable as the labels
        with atomic_write(path, "w", encoding="utf-8", file_mode=0o644) as f:
            json.dump(data, f, separators=(",", ":"))
        log.debug("scan cache written to %s", path)
    except OSError as e:
        log.debug("no scan cache (%s is not writable: %s)", path.parent, e)
