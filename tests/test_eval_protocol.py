"""COCO-format data is evaluated against its annotation json as it is (the official protocol), not a ground
truth rebuilt from the scanned records, restricted to the images the scan could read."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ghostdet.data import build_dataloader, build_dataset
from ghostdet.data.letterbox import letterbox_boxes
from ghostdet.eval import STAT_KEYS, COCOEvaluator, evaluate_model

READABLE = [9, 30, 61, 357]  # coco128 image ids (357 has a crowd region)
UNREADABLE = 25  # listed in the json with 2 objects, but its file is garbage
PAST_BORDER = 1039564  # bowl of image 9, widened to end 52 px right of the 640 px image
AREA_CHANGED = 1913551  # 75.6 x 46.5 box (medium by w*h) whose segment area is set to 900 (small)


@pytest.fixture(scope="module")
def coco_split(coco128, tmp_path_factory) -> Path:
    """A COCO-format split: a small json cut from coco128's, its images, and one unreadable image file."""
    root = tmp_path_factory.mktemp("coco_protocol")
    raw = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    keep = set(READABLE) | {UNREADABLE}
    data = {"info": raw["info"], "licenses": raw["licenses"], "categories": raw["categories"],
            "images": [i for i in raw["images"] if i["id"] in keep],
            "annotations": [a for a in raw["annotations"] if a["image_id"] in keep]}
    anns = {a["id"]: a for a in data["annotations"]}
    anns[PAST_BORDER]["bbox"][2] = 380.0  # x 311.73 + 380 = 691.73 > 640: the scan clips it, COCO keeps it
    anns[AREA_CHANGED]["area"] = 900.0
    (root / "images").mkdir()
    (root / "annotations").mkdir()
    for img in data["images"]:
        if img["id"] == UNREADABLE:
            (root / "images" / img["file_name"]).write_bytes(b"\x00\x01 not a jpeg " * 40)
        else:
            shutil.copy(coco128 / "images" / "train2017" / img["file_name"], root / "images")
    (root / "annotations" / "instances.json").write_text(json.dumps(data))
    return root


def _fixed_detections(dataset, json_path: Path, batch_size: int = 2):
    """The dataset's val batches and, for each, fixed predictions in letterboxed input pixels: every non-crowd
    json object jittered (some with a wrong class), plus random false positives; seeded."""
    gt = json.loads(json_path.read_text())
    class_of = {c: i for i, c in enumerate(dataset.category_ids)}
    rng = np.random.default_rng(0)
    batches = [(images, targets, metas) for images, targets, metas, *_ in
               build_dataloader(dataset, batch_size=batch_size, workers=0, shuffle=False)]
    replies = []
    for _images, _targets, metas in batches:
        reply = []
        for meta in metas:
            h, w = meta["orig_size"]
            objects = [a for a in gt["annotations"] if a["image_id"] == meta["image_id"] and not a["iscrowd"]]
            xywh = np.array([a["bbox"] for a in objects], dtype=np.float64).reshape(-1, 4)
            xywh += rng.normal(0, 0.04, xywh.shape) * xywh[:, [2, 3, 2, 3]]
            labels = np.array([class_of[a["category_id"]] for a in objects], dtype=np.int64)
            wrong = rng.random(len(labels)) < 0.15
            labels[wrong] = rng.integers(0, len(class_of), wrong.sum())
            noise = rng.uniform(0, 1, (4, 4)) * [w, h, w / 3, h / 3]
            xywh = np.concatenate([xywh, noise])
            labels = np.concatenate([labels, rng.integers(0, len(class_of), 4)])
            xyxy = torch.from_numpy(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1))
            reply.append({"boxes": letterbox_boxes(xyxy, meta["ratio"], meta["pad"]).float(),
                          "scores": torch.from_numpy(rng.uniform(0.01, 1, len(labels))).float(),
                          "labels": torch.from_numpy(labels)})
        replies.append(reply)
    return batches, replies


class _Replay(torch.nn.Module):
    """The detector's predict() contract, returning prepared predictions batch by batch."""

    def __init__(self, replies, num_classes):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.replies, self.num_classes = list(replies), num_classes

    def predict(self, images, conf=0.25, iou=0.45, max_det=300):
        return self.replies.pop(0)


def _plain_pycocotools(json_path: Path, detections: list[dict], img_ids=None) -> list[float]:
    """COCOeval on the json file itself, as the cocoapi demo runs it (optionally with params.imgIds)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_path))
        coco_eval = COCOeval(gt, gt.loadRes(copy.deepcopy(detections)), "bbox")
        if img_ids is not None:
            coco_eval.params.imgIds = sorted(img_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [float(v) for v in coco_eval.stats]


def test_coco_data_is_evaluated_against_its_json_as_it_is(coco_split, caplog):
    json_path = coco_split / "annotations" / "instances.json"
    cfg = {"format": "coco", "root": str(coco_split), "val": "images", "val_ann": "annotations/instances.json",
           "cache": False}
    dataset = build_dataset(cfg, "val", imgsz=320, augment=False)
    assert dataset.report.images_skipped == {"unreadable": 1} and dataset.report.boxes_clipped == 1
    assert sorted(r.image_id for r in dataset.records) == READABLE

    with caplog.at_level(logging.INFO, logger="ghostdet"):
        gt = dataset.coco_gt()
    assert f"evaluation ground truth: {json_path} as it is" in caplog.text
    raw = {a["id"]: a for a in json.loads(json_path.read_text())["annotations"]}
    assert sorted(gt.getImgIds()) == READABLE  # the unreadable image is no ground truth: it was never evaluated
    assert sorted(gt.anns) == sorted(i for i, a in raw.items() if a["image_id"] in READABLE)
    assert all(gt.anns[i] == raw[i] for i in gt.anns)  # every field as in the json: bbox past the border, area
    assert gt.anns[PAST_BORDER]["bbox"][2] == 380.0 and gt.anns[AREA_CHANGED]["area"] == 900.0

    batches, replies = _fixed_detections(dataset, json_path)
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        caplog.clear()
        result = evaluate_model(_Replay(replies, dataset.num_classes), batches, gt, dataset.category_ids,
                                names=dataset.names, progress=False)
    assert "ground truth has" not in caplog.text  # every ground-truth image was evaluated
    dets = result.detections
    assert {d["image_id"] for d in dets} == set(READABLE)  # the json's own image ids ...
    assert {d["category_id"] for d in dets} > {51, 55, 56, 1}  # ... and category ids (1..90 with gaps)
    ours = [result.metrics[k] for k in STAT_KEYS]
    official = _plain_pycocotools(json_path, dets, img_ids=READABLE)
    assert ours == official  # exactly: the official protocol on the readable images

    # what the ground truth rebuilt from the scanned records (clipped box) gave: not the official numbers
    rebuilt = COCOEvaluator(dataset.coco_gt(from_json=False)).evaluate(dets)
    assert [rebuilt[k] for k in STAT_KEYS] != official
    assert rebuilt["AP"] > result.metrics["AP"]  # the clipped box matches the (clipped) detection better
    # and not restricting to the readable images would count the unreadable image's 2 objects as missed
    unrestricted = _plain_pycocotools(json_path, dets)
    assert unrestricted[STAT_KEYS.index("AR100")] < result.metrics["AR100"]


def test_yolo_data_keeps_the_ground_truth_built_from_its_labels(coco128, caplog):
    cfg = {"format": "yolo", "root": str(coco128), "val": "images/train2017", "cache": False,
           "names": (coco128 / "classes.txt").read_text().split("\n")[:80]}
    dataset = build_dataset(cfg, "val", imgsz=320, augment=False)
    assert dataset.ann_file is None
    with caplog.at_level(logging.INFO, logger="ghostdet"):
        gt = dataset.coco_gt()
    assert "evaluation ground truth: built from the 128 scanned images" in caplog.text
    assert len(gt.getImgIds()) == 128 and len(gt.getAnnIds()) == 929 and sorted(gt.getCatIds()) == list(range(80))


def test_boxes_on_the_stored_pixels_of_a_rotated_photo_are_mapped_upright(tmp_path):
    """As the scan does: a json sized like the stored pixels of a 90°-rotated photo has its boxes there, while
    the model sees (and detects on) the upright image; every other field stays the json's."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: stored 100x60 -> upright 60x100
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    Image.fromarray(np.full((60, 100, 3), 30, np.uint8)).save(tmp_path / "images" / "photo.png", exif=exif.tobytes())
    ann = {"id": 7, "image_id": 3, "category_id": 1, "bbox": [60, 10, 30, 15], "area": 321.5, "iscrowd": 0}
    (tmp_path / "annotations" / "instances.json").write_text(json.dumps({
        "images": [{"id": 3, "file_name": "photo.png", "width": 100, "height": 60}], "annotations": [ann],
        "categories": [{"id": 1, "name": "thing"}]}))
    cfg = {"format": "coco", "root": str(tmp_path), "val": "images", "val_ann": "annotations/instances.json",
           "cache": False}
    dataset = build_dataset(cfg, "val", imgsz=128, augment=False)
    gt = dataset.coco_gt()
    x1, y1, x2, y2 = dataset.records[0].boxes[0]
    assert gt.anns[7]["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1]) == [35, 60, 15, 30]
    assert {k: v for k, v in gt.anns[7].items() if k != "bbox"} == {k: v for k, v in ann.items() if k != "bbox"}
    assert (gt.imgs[3]["height"], gt.imgs[3]["width"]) == (100, 60)
