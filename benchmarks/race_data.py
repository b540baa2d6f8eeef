"""The data sets of the race (bench_learning.py / bench_front.py) made from ../shared/data, written as YOLO folders.

- ``make_multi``: coco128 restricted to its N most frequent classes (``--multi``). Not learnable from scratch in a CPU
  budget (``gghost_yolo`` @256: mAP50-95 0.0013 after 100 epochs; docs/detector.md), kept for the record.
- ``make_raccoon_person``: two classes of real photos, ``raccoon`` (the raccoon set, its own 160 / 40 split) and
  ``person`` (coco128's photos that hold a person, all their person boxes; a stratified split), ``--raccoon-person``.
  Large single animals next to people of every size, often many per photo, in one set.

Each folder is written once (an existing folder with the same recipe is reused), through a temporary folder that is
renamed, so concurrent runs on the same ``--out`` never see half of it. Images are copied, not linked: a link would
lead ghostdet's scan to the source's own labels.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def stratified_split(images: list, classes_of: dict, val_count: int, seed: int) -> dict:
    """Images into train / ``val_count`` val so that each class's val boxes approach its share of all boxes: images
    taken in a seeded permutation of the sorted names while they add boxes of a class still below its val share,
    then filled up in the same order. Deterministic for a seed."""
    order = [images[i] for i in np.random.default_rng(seed).permutation(len(images))]
    totals: dict[int, int] = {}
    for cls in classes_of.values():
        for c in cls:
            totals[c] = totals.get(c, 0) + 1
    share = {c: n * val_count / len(images) for c, n in totals.items()}
    have = {c: 0 for c in totals}
    val = []
    for image in order:
        if len(val) == val_count:
            break
        cls = classes_of[image.name]
        if any(have[c] < share[c] for c in cls):
            val.append(image)
            for c in cls:
                have[c] += 1
    val += [image for image in order if image not in val][:val_count - len(val)]
    return {"train": sorted(image for image in images if image not in val), "val": sorted(val)}


def _coco128(shared: Path) -> tuple[Path, list[Path], list[str], dict]:
    """coco128's images, its 80 class names and each image's YOLO rows (``[cls, cx, cy, w, h]`` as strings)."""
    src = shared / "coco128"
    images = sorted(p for p in (src / "images" / "train2017").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"error: no coco128 images under {src} (set GHOSTDET_SHARED_DATA)")
    names80 = [n.strip() for n in (src / "classes.txt").read_text().splitlines() if n.strip()]
    labels = {}
    for image in images:
        txt = src / "labels" / "train2017" / f"{image.stem}.txt"
        rows = [line.split() for line in txt.read_text().splitlines()] if txt.is_file() else []
        labels[image.name] = [r for r in rows if len(r) == 5]
    return src, images, names80, labels


def _write(root: Path, recipe: dict, files: dict, note: str) -> Path:
    """Write ``files`` (``{split: [(image path, [[cls, cx, cy, w, h], ...]), ...]}``) as a YOLO folder at ``root``
    with ``recipe.json`` and a README, unless ``root`` already holds the same recipe."""
    if (root / "recipe.json").is_file() and json.loads((root / "recipe.json").read_text()) == recipe:
        return root
    if root.exists():
        raise SystemExit(f"error: {root} exists with another recipe; remove it or use another --out")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}_", dir=root.parent))
    boxes = {}
    for split, items in files.items():
        (tmp / "images" / split).mkdir(parents=True)
        (tmp / "labels" / split).mkdir(parents=True)
        per_class = [0] * len(recipe["classes"])
        for image, rows in items:
            shutil.copy2(image, tmp / "images" / split / image.name)
            for r in rows:
                per_class[int(r[0])] += 1
            (tmp / "labels" / split / f"{image.stem}.txt").write_text("".join(" ".join(map(str, r)) + "\n"
                                                                            for r in rows))
        boxes[split] = per_class
    (tmp / "data.yaml").write_text("train: images/train\nval: images/val\nnames:\n"
                                   + "".join(f"  {i}: {n}\n" for i, n in enumerate(recipe["classes"])))
    (tmp / "recipe.json").write_text(json.dumps(recipe, indent=1))
    counts = "; ".join(f"{split}: {len(items)} images, boxes per class {boxes[split]}" for split, items in files.items())
    (tmp / "README.txt").write_text(f"{note} Classes: {', '.join(recipe['classes'])}. {counts}. "
                                    "Written by benchmarks/race_data.py.\n")
    try:
        os.rename(tmp, root)
    except OSError:  # another run wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
        if json.loads((root / "recipe.json").read_text()) != recipe:
            raise SystemExit(f"error: {root} was written with another recipe meanwhile") from None
    return root


def make_multi(out: Path, shared: Path, classes: int = 10, train: int = 100, seed: int = 0) -> Path:
    """coco128 restricted to its ``classes`` most frequent classes (boxes of other classes dropped; images left
    without boxes stay as background), split ``train`` / rest, stratified, as ``<out>/coco128_top<classes>``."""
    src, images, names80, labels = _coco128(shared)
    counts: dict[int, int] = {}
    for rows in labels.values():
        for r in rows:
            counts[int(r[0])] = counts.get(int(r[0]), 0) + 1
    top = sorted(sorted(counts, key=lambda c: (-counts[c], c))[:classes])  # kept in coco's class order
    remap = {c: i for i, c in enumerate(top)}
    split = stratified_split(images, {k: [remap[int(r[0])] for r in v if int(r[0]) in remap] for k, v in labels.items()},
                             len(images) - train, seed)
    recipe = {"source": str(src), "classes": [names80[c] for c in top], "coco_class_index": top, "split": "stratified",
              "train": [p.name for p in split["train"]], "val": [p.name for p in split["val"]], "seed": seed}
    files = {name: [(image, [[remap[int(r[0])], *r[1:]] for r in labels[image.name] if int(r[0]) in remap])
                    for image in split[name]] for name in ("train", "val")}
    return _write(out / f"coco128_top{classes}", recipe, files,
                  f"coco128 ({src}) restricted to its {classes} most frequent classes (stratified split, seed {seed}).")


def yolo_lines(rec) -> list[str]:
    """A scanned record's boxes (``ghostdet.data`` ``ImageRecord``: xyxy pixels, contiguous labels) as YOLO label
    lines ``cls cx cy w h``, normalised."""
    return [f"{int(c)} {(x1 + x2) / 2 / rec.width:.6f} {(y1 + y2) / 2 / rec.height:.6f} "
            f"{(x2 - x1) / rec.width:.6f} {(y2 - y1) / rec.height:.6f}"
            for (x1, y1, x2, y2), c in zip(rec.boxes.tolist(), rec.labels.tolist())]


def voc_records(root: Path, split: str) -> list:
    """ghostdet's own scan of a VOC devkit split (its 1-based pixel convention, ``difficult`` boxes apart, EXIF
    orientation, hardened xml parsing): the records every other race on raccoon trains on."""
    from ghostdet.data import build_dataset

    data = {"format": "voc", "root": str(root), "train": "train", "val": "val", "names": ["raccoon"], "cache": False}
    return build_dataset(data, split, imgsz=320, augment=False, cache=False, read_only=True).records


def make_raccoon_person(out: Path, shared: Path, person_val: int = 16, seed: int = 0) -> Path:
    """``raccoon`` (class 0: the raccoon photos with their own train / val lists) + ``person`` (class 1: the coco128
    photos holding a person, their person boxes only; ``person_val`` of them to val, stratified by person count),
    as ``<out>/raccoon_person``."""
    raccoon = shared / "raccoon"
    splits = {s: (raccoon / "ImageSets" / "Main" / f"{s}.txt").read_text().split() for s in ("train", "val")}
    src, images, names80, labels = _coco128(shared)
    person = names80.index("person")
    with_person = [p for p in images if any(int(r[0]) == person for r in labels[p.name])]
    people = stratified_split(with_person, {p.name: [0] * sum(int(r[0]) == person for r in labels[p.name])
                                            for p in with_person}, person_val, seed)
    # raccoon_boxes: how the raccoon xml was read; a folder written by the first version (its own 0-based reading
    # of the xml, left/top edges 1 px off ghostdet's) has no such key and is never reused for this one
    recipe = {"source": [str(raccoon), str(src)], "classes": ["raccoon", "person"], "raccoon": splits,
              "raccoon_boxes": "ghostdet scan_voc", "person": {k: [p.name for p in v] for k, v in people.items()},
              "seed": seed}
    files = {}
    for split in ("train", "val"):
        records = voc_records(raccoon, split)
        if sorted(Path(r.file).stem for r in records) != sorted(splits[split]):
            raise SystemExit(f"error: ghostdet's scan of {raccoon} ({split}) does not hold every image of its list")
        items = [(Path(r.file), [line.split() for line in yolo_lines(r)]) for r in records]
        items += [(p, [[1, *r[1:]] for r in labels[p.name] if int(r[0]) == person]) for p in people[split]]
        files[split] = items
    return _write(out / "raccoon_person", recipe, files,
                  f"The raccoon photos ({raccoon}, class raccoon, its own split) and the coco128 photos that hold a "
                  f"person ({src}, class person, other classes' boxes dropped; stratified split, seed {seed}).")
