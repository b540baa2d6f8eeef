"""Pascal VOC / LabelImg xml: a VOC devkit, several devkit years under one root, or a plain LabelImg folder.

Layouts (``data.root``):

- a devkit: ``JPEGImages/*.jpg``, ``Annotations/*.xml``, ``ImageSets/Main/<list>.txt`` (image ids, one a
  line); ``data.train=trainval data.val=test`` pick the lists;
- several years under one root (``VOCdevkit/VOC2007``, ``VOC2012``, as YOLOX and mmdetection read them):
  ``data.train=[2007/trainval,2012/trainval] data.val=2007/test``;
- a LabelImg folder: images with their ``.xml`` beside them, or ``images/`` + ``annotations/``, no
  ImageSets: ``train``/``val`` are a deterministic split by ``data.val_fraction`` (seeded by
  ``data.split_seed``), or ``.txt`` files of image ids.

Boxes are 1-based pixel indices in VOC (a box covers pixels ``xmin..xmax``): they become continuous
0-based xyxy as ``[xmin - 1, ymin - 1, xmax, ymax]`` (Detectron2's reading: ``(1, 1, W, H)`` is the whole image).
``difficult`` objects are ignore regions, exactly like COCO ``iscrowd``: never targets, never misses.
The xml is parsed by expat into an ElementTree (``ghostdet.data.voc_xml``); any ``<!DOCTYPE``/``<!ENTITY``
declaration is refused (the file is reported as malformed), so a hostile file cannot expand entities.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ghostdet.data.image_io import IMAGE_SUFFIXES, exif_upright_boxes
from ghostdet.data.scan import (ImageRecord, ScanReport, clean_boxes, files_fingerprint, finish_report, load_cache,
                                probe_images, resolve_root, save_cache)
from ghostdet.data.voc_xml import VocAnnotation, XmlRefused, parse_flag, parse_voc_xml
from ghostdet.data.yolo import yolo_names
from ghostdet.utils.errors import ConfigError, DataError, GhostdetError

log = logging.getLogger(__name__)

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
LAYOUT = ("JPEGImages/*.jpg, Annotations/*.xml and ImageSets/Main/<split>.txt (a VOC devkit), VOC2007/, VOC2012/ "
          "devkits, or a LabelImg folder (images with their .xml beside them or in annotations/)")
FRACTION_PARTS = ("train", "val")  # what data.train/data.val may name in a folder without ImageSets
_YEAR = re.compile(r"VOC\d{4}$")


# ------------------------------------------------------------------------------------------------ layout
@dataclass(frozen=True)
class VocFolder:
    """One devkit (year) or LabelImg folder: where its images, xml files and id lists are."""

    path: Path
    images: Path
    annotations: Path
    image_sets: Path | None  # ImageSets/Main, where it exists


@dataclass
class _Part:
    """One id list of a split: ids of ``folder``'s images, from a list file or a ``val_fraction`` split."""

    folder: VocFolder
    ids: list[str]
    source: str
    listed: bool  # ids from a list file: a listed id without image or xml is a fault of the list


def _subdir(path: Path, *names: str) -> Path | None:
    return next((path / n for n in names if (path / n).is_dir()), None)


def voc_folder(path: Path) -> VocFolder:
    images = _subdir(path, "JPEGImages", "images") or path
    annotations = _subdir(path, "Annotations", "annotations") or images
    return VocFolder(path, images, annotations, _subdir(path, "ImageSets/Main"))


def _year_folders(root: Path) -> list[Path]:
    """``VOC<year>`` devkits directly under root or under ``root/VOCdevkit``."""
    found = []
    for base in (root, root / "VOCdevkit"):
        if base.is_dir():
            found += sorted(p for p in base.iterdir() if p.is_dir() and _YEAR.match(p.name))
    return found


def _is_multi_year(root: Path) -> bool:
    return voc_folder(root).images == root and bool(_year_folders(root)) and not _listing(root, IMAGE_SUFFIXES)[0]


def is_voc_devkit(root: Path) -> bool:
    """The real Pascal VOC: a ``VOC<year>`` folder, or a root holding them (then the 20 VOC classes are the default)."""
    return bool(_YEAR.match(root.name)) or _is_multi_year(root)


def _year_folder(root: Path, head: str, split: str) -> Path:
    candidates = [root / head, root / f"VOC{head}", root / "VOCdevkit" / head, root / "VOCdevkit" / f"VOC{head}"]
    for path in candidates:
        if path.is_dir():
            return path
    years = ", ".join(p.name for p in _year_folders(root)) or "none"
    raise DataError(f"no devkit folder {head!r} under {root} (looked for {candidates[1].name}/ and "
                    f"VOCdevkit/{candidates[1].name}/; devkit years found: {years}); fix data.{split}")


def _owning_folder(list_file: Path, root: Path) -> VocFolder:
    """The devkit a ``.txt`` id list belongs to: its nearest ancestor with JPEGImages/ or Annotations/, else root."""
    for parent in list_file.parents:
        if (parent / "JPEGImages").is_dir() or (parent / "Annotations").is_dir():
            return voc_folder(parent)
        if parent == root or parent == parent.parent:
            break
    return voc_folder(root)


def _read_ids(list_file: Path) -> list[str]:
    """Image ids, one a line (the first word: ``ImageSets/Main/<class>_<set>.txt`` lines are ``id flag``)."""
    try:
        lines = list_file.read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as e:
        raise DataError(f"cannot read id list {list_file}: {e}") from None
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _listing(folder: Path, suffixes) -> tuple[dict[str, Path], list[Path]]:
    """``{stem: path}`` of the files with one of ``suffixes`` (case-insensitive) and the repeated stems' files."""
    try:
        paths = sorted(Path(e.path) for e in os.scandir(folder) if e.is_file() and
                       os.path.splitext(e.name)[1].lower() in suffixes)
    except OSError:
        return {}, []
    found, repeated = {}, []
    for p in paths:
        if p.stem in found:
            repeated.append(p)
        else:
            found[p.stem] = p
    return found, repeated


def _fraction_ids(folder: VocFolder, part: str, fraction: float, seed: int) -> list[str]:
    """The ``train`` or ``val`` part of the folder's images: a seeded permutation of the sorted file stems."""
    stems = sorted(_listing(folder.images, IMAGE_SUFFIXES)[0])
    n_val = int(len(stems) * fraction + 0.5)
    val = set(np.random.default_rng(seed).permutation(len(stems))[:n_val].tolist())
    return [s for i, s in enumerate(stems) if (i in val) == (part == "val")]


def _split_parts(cfg: dict, root: Path, split: str) -> list[_Part]:
    value = cfg.get(split)
    entries = list(value) if isinstance(value, (list, tuple)) else [value]
    if not entries or any(e in (None, "") for e in entries):
        raise ConfigError(f"data.{split} is not set: name an ImageSets/Main list (data.{split}=trainval), "
                          f"a devkit year and list (2007/trainval), or a .txt file of image ids")
    fraction = cfg.get("val_fraction", 0.2)
    if not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise ConfigError(f"data.val_fraction must be a number in [0, 1), got {fraction!r}")
    return [_resolve_entry(str(e), root, split, float(fraction), int(cfg.get("split_seed") or 0)) for e in entries]


def _resolve_entry(entry: str, root: Path, split: str, fraction: float, seed: int) -> _Part:
    if entry.endswith(".txt"):  # an explicit list of image ids
        list_file = Path(entry).expanduser()
        list_file = list_file if list_file.is_absolute() else root / list_file
        if not list_file.is_file():
            raise DataError(f"id list {list_file} not found: data.{split}={entry} must be a .txt file of image ids "
                            f"(one a line), relative to data.root={root}")
        return _Part(_owning_folder(list_file.resolve(), root), _read_ids(list_file), str(list_file), True)
    head, _, name = entry.strip("/").rpartition("/")
    if head:
        base = _year_folder(root, head, split)
    elif _is_multi_year(root):
        years = [p.name[3:] for p in _year_folders(root)]
        every = ",".join(f"{y}/{name}" for y in years)
        raise ConfigError(f"{root} holds several devkits (VOC{', VOC'.join(years)}): name the year in data.{split}, "
                          f"e.g. data.{split}={years[0]}/{name} or data.{split}=[{every}]")
    else:
        base = root
    folder = voc_folder(base)
    if folder.image_sets is not None:
        list_file = folder.image_sets / f"{name}.txt"
        if not list_file.is_file():
            have = ", ".join(sorted(p.stem for p in folder.image_sets.glob("*.txt") if "_" not in p.stem)) or "no lists"
            raise DataError(f"image set {list_file} not found ({folder.image_sets} has: {have}); set data.{split}=<list>")
        return _Part(folder, _read_ids(list_file), str(list_file), True)
    if name not in FRACTION_PARTS:
        raise ConfigError(f"{base} has no ImageSets/Main/ lists: data.{split} must be train or val (a split by "
                          f"data.val_fraction) or a .txt file of image ids, got {entry!r}")
    if not folder.images.is_dir() or not _listing(folder.images, IMAGE_SUFFIXES)[0]:
        raise DataError(f"no images in {folder.images}: expected {LAYOUT}; set data.root=DIR")
    return _Part(folder, _fraction_ids(folder, name, fraction, seed),
                 f"{folder.images} ({name} part, val_fraction={fraction:g}, split_seed={seed})", False)


# ------------------------------------------------------------------------------------------------ names
def voc_names(cfg: dict, root: Path, folders: list[VocFolder], parsed: dict) -> tuple[list[str], bool]:
    """``(names, inferred)``: ``data.names``, else the 20 VOC classes for a VOC devkit, else the sorted set of
    object names found in the xml files of ``folders`` (logged as a warning that lists them)."""
    if cfg.get("names"):
        return yolo_names(cfg, root, {}, None), False
    if is_voc_devkit(root):
        return list(VOC_CLASSES), False
    found = set()
    for folder in dict.fromkeys(f.annotations for f in folders):
        for xml_file in _listing(folder, (".xml",))[0].values():
            ann = _parse_memo(xml_file, parsed)
            if isinstance(ann, VocAnnotation):
                found.update(o.name for o in ann.objects if o.name)
    where = ", ".join(str(f) for f in dict.fromkeys(f.annotations for f in folders))
    if not found:
        raise DataError(f"no class names for {root}: no <object><name> in the xml files of {where}; "
                        f"set data.names=[...]")
    names = sorted(found)
    log.warning("data.names not set: the classes are the <name>s found in the xml files of %s, sorted: %s; set "
                "data.names=[...] to choose them and their order", where, names)
    return names, True


def _parse_memo(xml_file: Path, parsed: dict):
    key = str(xml_file)
    if key not in parsed:
        try:
            parsed[key] = parse_voc_xml(xml_file)
        except XmlRefused as e:
            parsed[key] = str(e)
    return parsed[key]


# ------------------------------------------------------------------------------------------------ scan
def scan_voc(cfg: dict, split: str, use_cache: bool = True):
    """Scan a Pascal VOC / LabelImg split: ``(records, report, names, None)``."""
    root = resolve_root(cfg, LAYOUT)
    parts = _split_parts(cfg, root, split)
    folders = [p.folder for p in parts]
    other = "val" if split == "train" else "train"
    if not cfg.get("names") and cfg.get(other):  # inferred names must be the same for both splits
        try:
            folders += [p.folder for p in _split_parts(cfg, root, other)]
        except GhostdetError:  # that split reports its own error when it is built
            pass
    parsed: dict = {}
    names, _ = voc_names(cfg, root, folders, parsed)

    items, listings = [], {}  # items: (part, id, image path | None, xml path | None)
    for part in parts:
        for key in ((part.folder.images, IMAGE_SUFFIXES), (part.folder.annotations, (".xml",))):
            if key not in listings:  # one directory listing per folder and kind
                listings[key] = _listing(*key)
        images, xmls = listings[part.folder.images, IMAGE_SUFFIXES][0], listings[part.folder.annotations, (".xml",)][0]
        items += [(part, i, images.get(i), xmls.get(i)) for i in part.ids]
    files = [str(p) for part, _, img, xml in items for p in (img, xml) if p is not None]
    extra = {"split": split, "names": names, "entries": cfg.get(split), "val_fraction": cfg.get("val_fraction"),
             "split_seed": cfg.get("split_seed"), "ids": [(str(p.folder.path), i) for p, i, *_ in items]}
    fingerprint = files_fingerprint(files + [p.source for p in parts if p.listed], extra)
    cache_file = root / f"{split}.ghostdet.cache"
    if use_cache and (hit := load_cache(cache_file, fingerprint)) is not None:
        return hit[0], hit[1], names, None

    report = ScanReport(split, ", ".join(dict.fromkeys(p.source for p in parts)), annotation_kind="xml",
                        crowd_kind="difficult")
    report.images_found = len(items)
    usable, seen = [], {}  # seen: (folder, id) -> position among the split's distinct images
    for part, image_id, image, xml in items:
        key = (part.folder.path, image_id)
        where = f"{part.source}: id {image_id}" if part.listed else str(image or xml)
        if key in seen:
            report.json_problem(where, "duplicate id", f"image id {image_id} listed again; used once")
            report.images_found -= 1
            continue
        seen[key] = len(seen)
        if image is None:
            has = f"{xml} exists, but " if xml is not None else ""
            report.skip_image(str(xml) if xml is not None else f"{part.source}: id {image_id}", "missing image",
                              f"listed in {part.source}; {has}no image {image_id}.* in {part.folder.images}")
        elif xml is None:
            why = (f"listed in {part.source}" if part.listed else
                   "LabelImg writes one, without <object>, for an image without objects")
            report.skip_image(str(image), "no xml", f"no annotation {part.folder.annotations / (image_id + '.xml')} "
                              f"({why})")
        else:
            usable.append((seen[key], image, xml))
    for folder in dict.fromkeys(p.folder for p in parts if not p.listed):  # xml without an image (naming mismatch?)
        images, repeated = listings[folder.images, IMAGE_SUFFIXES]
        xmls = listings[folder.annotations, (".xml",)][0]
        for dup in repeated:
            report.json_problem(str(dup), "duplicate image", f"another image has the id {dup.stem}; this one is ignored")
        orphans = sorted(set(xmls) - set(images))
        for stem in orphans:
            report.problems.append(f"{xmls[stem]}: annotation without an image in {folder.images}; ignored")
        report.orphan_labels += len(orphans)

    index = {name: i for i, name in enumerate(names)}
    image_ids = _image_ids([image_id for _, image_id in seen])  # of every listed image: stable when some are skipped
    records = []
    for (position, image, xml), probe in zip(usable, probe_images([str(u[1]) for u in usable])):
        image_id = image_ids[position]
        if probe.error:
            report.skip_image(str(image), "unreadable", probe.error)
            continue
        ann = _parse_memo(xml, parsed)
        if not isinstance(ann, VocAnnotation):
            report.skip_image(str(image), "malformed xml", f"{xml}: {ann}")
            continue
        records.append(_voc_record(str(image), image_id, probe, ann, str(xml), index, report))
    finish_report(records, report)
    if use_cache and records:
        save_cache(cache_file, fingerprint, records, report)
    return records, report, names, None


def _image_ids(stems: list[str]) -> list[int]:
    """Numeric ids (VOC2007's ``000005`` → 5) when every id is a number and they are unique, else indices."""
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(len(stems)))


def _voc_record(file: str, image_id: int, probe, ann: VocAnnotation, xml: str, index: dict,
                report: ScanReport) -> ImageRecord:
    height, width = probe.height, probe.width
    stored = probe.stored_size[::-1]  # (w, h) of the pixels as stored, before the EXIF rotation
    # boxes refer to the upright image (as EXIF-aware viewers and LabelImg builds that apply EXIF show it), unless
    # the xml's <size> fits only the stored pixels of a 90°-rotated photo: then they were drawn there and are mapped
    stored_frame = ann.size is not None and ann.size == stored != (width, height)
    if stored_frame:
        report.json_problem(xml, "exif rotated", f"<size> {ann.size[0]}x{ann.size[1]} is the stored size of this "
                            f"EXIF-rotated photo (upright {width}x{height}): boxes mapped onto the upright image")
    elif ann.size is not None and ann.size != (width, height):
        report.json_problem(xml, "size mismatch", f"<size> {ann.size[0]}x{ann.size[1]} differs from the image "
                            f"{os.path.basename(file)} ({width}x{height}); using the image's size")
    elif ann.size_text is not None:
        report.json_problem(xml, "bad size", f"<size> {ann.size_text} is not numbers; using the image's size")
    rows = {False: [], True: []}  # difficult -> [(box, class, where)]
    for k, obj in enumerate(ann.objects, 1):
        where = f"{xml}:{obj.line}" if obj.line else f"{xml} object {k}"
        if obj.coords is None:
            report.drop_box(where, "malformed", "object without <bndbox>")
            continue
        try:
            xmin, ymin, xmax, ymax = (float(v) for v in obj.coords)
        except (TypeError, ValueError):
            shown = dict(zip(("xmin", "ymin", "xmax", "ymax"), obj.coords))
            report.drop_box(where, "malformed", f"<bndbox> coordinates are not numbers: {shown}")
            continue
        if not obj.name:
            report.drop_box(where, "malformed", "object without <name>")
            continue
        if obj.name not in index:
            report.drop_box(where, "unknown class", f"class {obj.name!r} not in data.names {_short(list(index))}")
            continue
        difficult = parse_flag(obj.difficult)
        if difficult is None:
            report.problems.append(f"{where}: <difficult> {obj.difficult!r} is not 0 or 1; taken as 0")
            difficult = False
        box = [xmin - 1.0, ymin - 1.0, xmax, ymax]  # 1-based pixel indices -> continuous 0-based xyxy
        if stored_frame and np.isfinite(box).all():
            box = exif_upright_boxes(box, probe.orientation, probe.stored_size)[0].tolist()
        rows[difficult].append((box, index[obj.name], where))

    def columns(entries):
        return (np.array([e[0] for e in entries], dtype=np.float64).reshape(-1, 4),
                np.array([e[1] for e in entries], dtype=np.int64), [e[2] for e in entries])

    boxes, labels, where = columns(rows[False])
    kept_boxes, kept_labels, _ = clean_boxes(boxes, labels, width, height, len(index), where, report)
    rec = ImageRecord(file, image_id, height, width, kept_boxes, kept_labels)
    if rows[True]:  # difficult objects: ignore regions like COCO crowd, validated the same way
        crowd_report = ScanReport(report.split, report.source)
        boxes, labels, where = columns(rows[True])
        rec.crowd_boxes, rec.crowd_labels, _ = clean_boxes(boxes, labels, width, height, len(index), where, crowd_report)
        report.problems.extend(p.replace("box dropped", "difficult object dropped") for p in crowd_report.problems)
    return rec


def _short(names: list[str]) -> str:
    return str(names) if len(names) <= 8 else f"[{', '.join(map(repr, names[:8]))}, ... ({len(names)})]"
