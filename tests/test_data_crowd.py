"""COCO ``iscrowd`` regions from the json to the loss: transformed like the boxes, never targets, in the batch as
``ignore`` rows, passed by the trainer to the criterion. Real coco128 photos with a painted crowd region."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from ghostdet.data import DEFAULT_AUG, build_dataset, collate_fn, letterbox_boxes

ROOT = Path(__file__).resolve().parents[1]
MAGENTA = np.array([255, 0, 255])  # no coco128 photo used here has pixels near it
PHOTOS = (25, 30, 36, 49)  # coco128 image ids without crowd annotations: 2 landscape, 2 portrait
CROWD = {25: [200.0, 100.0, 220.0, 200.0], 36: [60.0, 300.0, 300.0, 180.0]}  # image id -> painted bbox [x, y, w, h]
AUG = dict(DEFAULT_AUG, mosaic=1.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.5, flipud=0.5, scale=0.5,
           translate=0.2)


def write_crowd_set(coco128: Path, root: Path) -> dict:
    """A 4-photo COCO set (PNG, lossless) whose photos 25 and 36 get a magenta rectangle annotated ``iscrowd=1``;
    ``with_crowd.json`` has those crowd annotations, ``no_crowd.json`` is the same set without them."""
    data = json.loads((coco128 / "annotations" / "instances_train2017.json").read_text())
    images = [dict(im, file_name=im["file_name"].replace(".jpg", ".png")) for im in data["images"] if im["id"] in PHOTOS]
    anns = [a for a in data["annotations"] if a["image_id"] in PHOTOS and not a["iscrowd"]]
    assert len(images) == 4 and len(anns) > 4
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for im in data["images"]:
        if im["id"] in PHOTOS:
            img = cv2.imread(str(coco128 / "images" / "train2017" / im["file_name"]))
            if im["id"] in CROWD:
                x, y, w, h = (int(v) for v in CROWD[im["id"]])
                img[y:y + h, x:x + w] = MAGENTA[::-1]  # BGR
            cv2.imwrite(str(root / "images" / im["file_name"].replace(".jpg", ".png")), img)
    crowd = [{"id": 900000 + k, "image_id": i, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 1}
             for k, (i, box) in enumerate(CROWD.items())]
    for name, extra in (("with_crowd", crowd), ("no_crowd", [])):
        (root / "annotations" / f"{name}.json").write_text(json.dumps(
            {"images": images, "annotations": anns + extra, "categories": data["categories"]}))
    return {"format": "coco", "root": str(root), "train": "images", "val": "images", "cache": False,
            "train_ann": "annotations/with_crowd.json", "val_ann": "annotations/with_crowd.json"}


@pytest.fixture(scope="module")
def crowd_cfg(coco128, tmp_path_factory) -> dict:
    return write_crowd_set(coco128, tmp_path_factory.mktemp("crowd") / "data")


def magenta(img: np.ndarray) -> np.ndarray:
    return np.abs(img.astype(int) - MAGENTA).max(axis=2) < 40


def assert_regions_frame_the_paint(img: np.ndarray, regions: np.ndarray, where: str) -> None:
    """Every region's interior is paint, and every painted pixel lies in a region (but for slivers of regions
    dropped as degenerate, narrower than ``min_box_size``): the regions frame the painted rectangles."""
    mask = magenta(img)
    ys, xs = np.mgrid[:mask.shape[0], :mask.shape[1]] + 0.5
    outside = mask.copy()
    for x1, y1, x2, y2 in regions:
        outside &= ~((xs >= x1 - 1.5) & (xs <= x2 + 1.5) & (ys >= y1 - 1.5) & (ys <= y2 + 1.5))
        inner = mask[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
        assert inner.all(), f"{where}: region {[x1, y1, x2, y2]} is not all painted ({inner.mean():.2f})"
    _, _, stats, _ = cv2.connectedComponentsWithStats(outside.astype(np.uint8))
    slivers = stats[1:, cv2.CC_STAT_WIDTH:cv2.CC_STAT_HEIGHT + 1].min(axis=1) if len(stats) > 1 else np.zeros(0)
    assert (slivers <= AUG["min_box_size"] + 1).all(), f"{where}: painted rectangle outside every ignore region"


def test_crowd_regions_follow_mosaic_affine_and_flips_but_are_never_targets(crowd_cfg):
    with_crowd = build_dataset(crowd_cfg, "train", imgsz=160, augment=True, aug_cfg=AUG, seed=3)
    no_crowd = build_dataset(dict(crowd_cfg, train_ann="annotations/no_crowd.json"), "train", imgsz=160,
                             augment=True, aug_cfg=AUG, seed=3)
    assert sum(len(r.crowd_boxes) for r in with_crowd.records if r.crowd_boxes is not None) == 2
    assert with_crowd.report.boxes_kept == no_crowd.report.boxes_kept  # crowd regions are not training boxes
    regions = 0
    for step in range(24):
        if step == 12:  # then letterbox + affine without mosaic
            with_crowd.set_mosaic(False)
            no_crowd.set_mosaic(False)
        a, b = with_crowd[step % 4], no_crowd[step % 4]
        crowd = a["crowd_boxes"]
        assert crowd.dtype == np.float32 and crowd.ndim == 2 and crowd.shape[1] == 4
        assert b["crowd_boxes"].shape == (0, 4)
        # the same augmentation stream: the crowd annotations change nothing but the ignore regions
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert (a["labels"] >= 0).all()
        assert_regions_frame_the_paint(a["image"], crowd, f"step {step}")
        assert ((crowd[:, 2:] - crowd[:, :2]) >= AUG["min_box_size"]).all()  # degenerate ones dropped
        assert (crowd >= 0).all() and (crowd <= 160).all()
        regions += len(crowd)
    assert regions >= 12


def test_batch_carries_ignore_rows_and_empty_ones_without_crowd(crowd_cfg, tmp_path):
    ds = build_dataset(crowd_cfg, "train", imgsz=160, augment=True, aug_cfg=AUG, seed=0)
    samples = [ds[i] for i in range(4)] + [ds[i] for i in range(4)]
    images, targets, metas, ignore = collate_fn(samples)
    assert ignore.dtype == torch.float32 and ignore.shape == (sum(len(s["crowd_boxes"]) for s in samples), 5)
    assert len(ignore) > 0
    for i, s in enumerate(samples):
        torch.testing.assert_close(ignore[ignore[:, 0] == i, 1:], torch.from_numpy(s["crowd_boxes"]))
        assert (targets[:, 0] == i).sum() == len(s["labels"])

    # evaluation samples: the crowd regions letterboxed like the boxes (the evaluator ignores them)
    val = build_dataset(crowd_cfg, "val", imgsz=160)
    for i, rec in enumerate(val.records):
        s = val[i]
        has_crowd = rec.crowd_boxes is not None and len(rec.crowd_boxes)
        expected = letterbox_boxes(rec.crowd_boxes, s["ratio"], s["pad"]) if has_crowd else np.zeros((0, 4))
        np.testing.assert_allclose(s["crowd_boxes"], expected, atol=1e-4)
        assert_regions_frame_the_paint(s["image"], s["crowd_boxes"], f"val {i}")

    # no crowd anywhere: COCO json without it, and YOLO txt (no crowd notion) give an empty (0, 5) ignore
    no_crowd = build_dataset(dict(crowd_cfg, train_ann="annotations/no_crowd.json"), "train", imgsz=160, seed=0)
    assert collate_fn([no_crowd[0], no_crowd[1]])[3].shape == (0, 5)
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "images" / "train" / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    yolo = build_dataset({"format": "yolo", "root": str(tmp_path), "train": "images/train", "names": ["thing"],
                          "cache": False}, "train", imgsz=64, seed=0)
    _, targets, _, ignore = collate_fn([yolo[0], yolo[0]])
    assert ignore.shape == (0, 5) and ignore.dtype == torch.float32 and len(targets) > 0


def test_trainer_passes_the_ignore_regions_to_the_loss(crowd_cfg, tmp_path):
    from ghostdet.engine import Trainer

    overrides = {
        "data": "coco128", "data.root": crowd_cfg["root"], "data.train": "images", "data.val": "images",
        "data.train_ann": crowd_cfg["train_ann"], "data.val_ann": crowd_cfg["val_ann"], "data.cache": False,
        "data.cache_images": False, "imgsz": 96, "batch": 2, "workers": 0, "epochs": 1, "device": "cpu",
        "deterministic": True, "progress": False, "tensorboard": False, "model.backbone.width": 0.5,
    }
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"{k}={v}" for k, v in overrides.items()])
    trainer = Trainer(cfg, tmp_path / "run")
    real_loss, calls = trainer.criterion, []

    def spy(*args):
        calls.append(args)
        return real_loss(*args)

    trainer.criterion = spy
    trainer.train_one_epoch(0)
    assert len(calls) == 2 and all(len(args) == 3 for args in calls)
    ignores = [args[2] for args in calls]
    assert all(r.dtype == torch.float32 and r.ndim == 2 and r.shape[1] == 5 for r in ignores)
    assert sum(len(r) for r in ignores) > 0, "no crowd region reached the loss"
    # where there are regions, they change the loss (their anchors are no background mistakes)
    raw, targets, ignore = next(args for args in calls if len(args[2]))
    with torch.no_grad():
        with_ignore = real_loss([r.detach() for r in raw], targets, ignore)[1]["cls"]
        without = real_loss([r.detach() for r in raw], targets, ignore[:0])[1]["cls"]
    assert with_ignore < without
