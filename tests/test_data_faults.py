"""Faulty data: every kind of broken image, label line and json entry is skipped, named and counted."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostdet.data import build_dataloader, build_dataset
from ghostdet.utils.errors import DataError
from helpers import FAULTY_LINES, build_broken_yolo_folder, jpeg_bytes

def test_broken_yolo_folder_is_scanned_reported_and_trained_on(tmp_path, caplog):
    cfg = build_broken_yolo_folder(tmp_path)
    with caplog.at_level(logging.INFO, logger="ghostdet"):
        ds = build_dataset(cfg, "train", imgsz=128, augment=True, aug_cfg={"mixup": 0.5}, cache=False)
    report = ds.report
    assert report.images_found == 12 and report.images_used == 8
    assert report.images_skipped == {"unreadable": 4}
    assert report.backgrounds == 2  # no label file, empty label file
    assert report.boxes_kept == 1 + 4 + 2 and report.boxes_clipped == 1
    assert report.boxes_dropped == {"class out of range": 2, "non-finite": 2, "malformed": 3, "outside image": 1,
                                    "zero area": 1, "duplicate": 1}
    log = caplog.text
    for stem in ("random", "text", "empty", "truncated"):
        assert f"{stem}.jpg: image skipped" in log
    assert "empty.jpg: image skipped, empty file" in log
    assert "text.jpg: image skipped, not an image" in log
    faults = tmp_path / "labels" / "train" / "faults.txt"
    for line_no, (_, reason) in enumerate(FAULTY_LINES, 1):
        if reason:
            assert f"{faults}:{line_no}: box dropped" in log, (line_no, reason)
    assert f"{faults}:8: box clipped" in log
    assert report.orphan_labels == 1 and "orphan.txt: label file without an image" in log
    assert "8/12 images used (2 background)" in log and "7 boxes kept" in log  # the summary line
    rec = {Path(r.file).stem: r for r in ds.records}
    np.testing.assert_allclose(rec["faults"].boxes, [[40, 32, 60, 48], [80, 32, 100, 48]], atol=1e-3)
    assert rec["deep16"].height == 80 and rec["nolabel"].boxes.shape == (0, 4)

    # a file that vanishes after the scan: training goes on, with a warning naming it
    unaugmented = build_dataset(cfg, "train", imgsz=128, augment=False, cache=False)  # scanned before it vanishes
    (tmp_path / "images" / "train" / "rgba.png").unlink()
    caplog.clear()
    loader = build_dataloader(ds, batch_size=4, workers=0, shuffle=True, seed=0)
    batches = 0
    for _epoch in range(3):
        for images, targets, metas, _ignore in loader:
            batches += 1
            assert images.shape[1:] == (3, 128, 128) and torch.isfinite(images).all()
            assert torch.isfinite(targets).all() and ((targets[:, 1] == 0) | (targets[:, 1] == 1)).all()
            assert (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 128).all()
    assert batches == 6
    assert "rgba.png: no such file" in caplog.text and "an empty image without boxes stands in" in caplog.text
    rgba = next(i for i, r in enumerate(ds.records) if r.file.endswith("rgba.png"))
    img, boxes, labels = ds.load_resized(rgba)
    assert (img == 114).all() and len(boxes) == len(labels) == 0  # no boxes on the stand-in image
    val = build_dataset(cfg, "val", imgsz=128, cache=False)
    for i in range(len(val)):
        assert val[i]["image"].shape == (128, 128, 3)
    # the same vanished file read without augmentation (as validation reads): a stand-in sample whose boxes and
    # labels agree, so the batch collates
    sample = unaugmented[rgba]
    assert unaugmented.records[rgba].file == ds.records[rgba].file and len(ds.records[rgba].boxes) > 0
    assert (sample["image"] == 114).all() and len(sample["boxes"]) == len(sample["labels"]) == 0
    images, targets, metas, ignore = next(iter(build_dataloader(unaugmented, batch_size=len(unaugmented),
                                                                workers=0, shuffle=False)))
    assert images.shape[0] == len(unaugmented) and targets.shape[1] == 6


def test_yolo_folder_without_any_usable_image_is_a_one_line_error(tmp_path, caplog):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "train" / "a.jpg").write_text("not an image")
    (tmp_path / "images" / "train" / "b.jpg").write_bytes(b"")
    (tmp_path / "data.yaml").write_text("names: [a]\n")
    with pytest.raises(DataError) as err:
        build_dataset({"format": "yolo", "root": str(tmp_path), "train": "images/train"}, "train")
    assert "\n" not in str(err.value) and "no usable image" in str(err.value) and "unreadable 2" in str(err.value)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "train" / "c.png")
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "C.txt").write_text("0 0.5 0.5 0.5 0.5\n")  # stem case differs: no labels found
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        build_dataset({"format": "yolo", "root": str(tmp_path), "train": "images/train"}, "train")
    assert "has no boxes at all" in caplog.text and "C.txt: label file without an image" in caplog.text
    with pytest.raises(DataError, match="images/val"):  # a split folder that does not exist
        build_dataset({"format": "yolo", "root": str(tmp_path), "val": "images/val"}, "val")
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(DataError, match="no class names"):
        build_dataset({"format": "yolo", "root": str(tmp_path), "train": "images/train"}, "train")


def write_coco(root: Path, data) -> dict:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return {"format": "coco", "root": str(root), "train": "images", "train_ann": "annotations/instances.json"}


def test_coco_json_faults_are_named_and_dropped(tmp_path, caplog):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "good.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "images" / "second.jpg").write_bytes(jpeg_bytes(seed=1))
    (tmp_path / "images" / "random.jpg").write_bytes(b"\x00\x01garbage" * 50)
    box = [10, 10, 30, 20]
    cfg = write_coco(tmp_path, {
        "images": [{"id": 1, "file_name": "good.jpg", "width": 100, "height": 80},
                   {"id": 1, "file_name": "second.jpg", "width": 100, "height": 80},  # duplicate id
                   {"id": 2, "file_name": "missing.jpg", "width": 100, "height": 80},
                   {"id": 3, "file_name": "random.jpg", "width": 100, "height": 80},
                   {"id": 4, "file_name": "second.jpg", "width": 50, "height": 50},  # wrong size
                   {"file_name": "noid.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": box, "area": 200, "iscrowd": 0},
                        {"id": 2, "image_id": 99, "category_id": 1, "bbox": box, "iscrowd": 0},
                        {"id": 3, "image_id": 1, "category_id": 42, "bbox": box, "iscrowd": 0},
                        {"id": 4, "image_id": 1, "category_id": 1, "bbox": "oops", "iscrowd": 0},
                        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [50, 40, 20, 20], "iscrowd": 0},
                        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10], "iscrowd": 0},
                        {"id": 6, "image_id": 1, "category_id": 2, "bbox": [0, 0, 60, 60], "area": 999, "iscrowd": 1},
                        {"id": 7, "image_id": 4, "category_id": 2, "bbox": [0, 0, 10, 10], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 2, "name": "c"}],
    })
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        ds = build_dataset(cfg, "train", imgsz=128, augment=False)
    r = ds.report
    assert ds.names == ["a", "b"] and ds.category_ids == [1, 2]
    assert r.images_found == 4 and r.images_used == 2
    assert r.images_skipped == {"missing file": 1, "unreadable": 1}
    assert r.boxes_dropped == {"unknown image": 1, "unknown category": 1, "malformed": 1, "zero area": 1}
    assert r.json_problems == {"duplicate category id": 1, "duplicate image id": 1, "bad image entry": 1,
                               "duplicate annotation id": 1, "size mismatch": 1}
    log = caplog.text
    for needle in ("image id 1 used again by second.jpg", "missing.jpg: image skipped", "random.jpg: image skipped",
                   "annotation id 2: box dropped", "annotation id 3: box dropped", "annotation id 4 (good.jpg): box dropped",
                   "annotation id 5 (good.jpg): box dropped", "category id 2 defined twice", "json size 50x50 differs"):
        assert needle in log, needle
    gt = ds.coco_gt(from_json=False)  # built from the scanned records: what the scan kept
    assert sorted(gt.imgs) == [1, 4] and gt.imgs[4]["width"] == 100  # the image's real size
    assert sorted((a["category_id"], a["iscrowd"]) for a in gt.anns.values()) == [(1, 0), (2, 0), (2, 0), (2, 1)]
    assert len({a["id"] for a in gt.anns.values()}) == 4  # unique ids even though the json repeats one
    # the default for COCO data: the json as it is over the usable images, only what COCOeval cannot take changed
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        gt = ds.coco_gt()
    assert sorted(gt.imgs) == [1, 4] and gt.imgs[4]["width"] == 50 and gt.imgs[1]["file_name"] == "good.jpg"
    assert sorted((a["category_id"], a["iscrowd"]) for a in gt.anns.values()) == [(1, 0), (1, 0), (2, 0), (2, 0), (2, 1), (42, 0)]
    assert len(gt.getAnnIds()) == len(gt.anns) == 6  # repeated id renumbered; the "oops" bbox left out
    assert sorted(gt.getCatIds()) == [1, 2] and gt.cats[2]["name"] == "b"
    assert gt.anns[6]["area"] == 999 and {a["area"] for a in gt.anns.values() if a["id"] == 5} == {0}
    assert "malformed bbox 1, no area 4, new id 1" in caplog.text


@pytest.mark.parametrize("content, match", [
    (None, "not found"),
    ("{not json", "cannot read COCO json"),
    (json.dumps({"images": "x"}), "is not a COCO instances json"),
])
def test_coco_setup_faults_are_one_line_errors(tmp_path, content, match):
    (tmp_path / "images").mkdir()
    if content is None:
        cfg = {"format": "coco", "root": str(tmp_path), "train": "images", "train_ann": "annotations/instances.json"}
    else:
        cfg = write_coco(tmp_path, content)
    with pytest.raises(DataError, match=match) as err:
        build_dataset(cfg, "train")
    assert "\n" not in str(err.value) and "instances.json" in str(err.value)
