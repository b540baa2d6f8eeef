"""Datasets, transforms and loader on real coco128 data and small generated images."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostdet.data import (DEFAULT_AUG, build_dataloader, build_dataset, collate_fn, generate_shapes, letterbox,
                           letterbox_boxes, read_image, unletterbox_boxes)
from ghostdet.data.letterbox import PAD_VALUE
from ghostdet.utils.errors import ConfigError, DataError


def coco128_cfg(root: Path, fmt: str = "coco") -> dict:
    if fmt == "coco":
        return {"format": "coco", "root": str(root), "train": "images/train2017", "val": "images/train2017",
                "train_ann": "annotations/instances_train2017.json", "val_ann": "annotations/instances_train2017.json"}
    return {"format": "yolo", "root": str(root), "data_yaml": "coco128.yaml"}  # split folders from the yaml


def write_yolo_set(root: Path, items, names, split="train", suffix=".png"):
    """items: list of (stem, RGB image, [(cls, x1, y1, x2, y2), ...] in pixels)."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for stem, img, boxes in items:
        Image.fromarray(img).save(root / "images" / split / f"{stem}{suffix}")
        h, w = img.shape[:2]
        lines = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                 for c, x1, y1, x2, y2 in boxes]
        (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(json.dumps({"names": list(names)}))
    return {"format": "yolo", "root": str(root), "train": f"images/{split}", "val": f"images/{split}"}


# ------------------------------------------------------------------------------------------ formats
def test_coco_json_and_yolo_txt_give_the_same_boxes(coco128):
    coco = build_dataset(coco128_cfg(coco128, "coco"), "val", imgsz=640)
    yolo = build_dataset(coco128_cfg(coco128, "yolo"), "val", imgsz=640)
    assert coco.names == yolo.names and coco.num_classes == 80
    assert coco.category_ids[:3] == [1, 2, 3] and yolo.category_ids is None
    assert len(coco) == len(yolo) == 128
    by_id = {r.image_id: r for r in yolo.records}
    total = 0
    for rec in coco.records:
        other = by_id[rec.image_id]  # YOLO ids are the numeric file stems, like COCO's
        assert (rec.height, rec.width) == (other.height, other.width)
        assert len(rec.boxes) == len(other.boxes)
        if len(rec.boxes):  # pair every json box with its txt box (same order is not guaranteed)
            dist = np.abs(rec.boxes[:, None] - other.boxes[None]).max(axis=2)
            match = dist.argmin(axis=1)
            assert sorted(match.tolist()) == list(range(len(match)))
            assert dist[np.arange(len(match)), match].max() < 2e-3
            np.testing.assert_array_equal(rec.labels, other.labels[match])
        total += len(rec.boxes)
    assert total == 929
    assert sum(len(r.boxes) == 0 for r in coco.records) == 2  # 000000000250 and 000000000508
    assert coco.report.boxes_kept == yolo.report.boxes_kept == 929


def test_coco_gt_is_the_split_in_original_pixels_with_crowd(coco128):
    ds = build_dataset(coco128_cfg(coco128), "val", imgsz=320)
    gt = ds.coco_gt()
    raw = json.loads((coco128 / "annotations/instances_train2017.json").read_text())
    assert len(gt.imgs) == 128 and len(gt.anns) == 939
    assert sum(a["iscrowd"] for a in gt.anns.values()) == 10
    sizes = {im["id"]: (im["width"], im["height"]) for im in raw["images"]}
    assert all((im["width"], im["height"]) == sizes[i] for i, im in gt.imgs.items())
    assert sorted(gt.getCatIds()) == sorted(c["id"] for c in raw["categories"])
    # the json's (segment) areas survive: COCO's small/medium/large split depends on them
    assert sorted(round(a["area"], 2) for a in gt.anns.values()) == sorted(round(a["area"], 2) for a in raw["annotations"])


def test_coco128_on_read_only_data_writes_no_cache(coco128):
    before = sorted(p.name for p in coco128.rglob("*"))
    build_dataset(coco128_cfg(coco128, "yolo"), "train", cache=True)
    build_dataset(coco128_cfg(coco128, "coco"), "train", cache=True)
    assert sorted(p.name for p in coco128.rglob("*")) == before


def test_missing_root_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        build_dataset({"format": "coco", "root": str(missing), "train": "images/train2017",
                       "train_ann": "annotations/instances_train2017.json"}, "train")
    msg = str(err.value)
    assert "\n" not in msg and str(missing) in msg and "instances_train2017.json" in msg and "data.root" in msg
    with pytest.raises(ConfigError, match="data.root"):
        build_dataset({"format": "yolo", "root": None, "train": "images/train"}, "train")
    with pytest.raises(ConfigError, match="data.format"):
        build_dataset({"format": "darknet", "root": str(tmp_path)}, "train")


def test_scan_cache_is_reused_and_invalidated(tmp_path, caplog):
    rng = np.random.default_rng(0)
    items = [(f"im{i}", rng.integers(0, 255, (64, 80, 3), dtype=np.uint8), [(0, 10, 10, 40, 50)]) for i in range(3)]
    cfg = write_yolo_set(tmp_path, items, ["thing"])
    first = build_dataset(cfg, "train", augment=False)
    assert not first.report.from_cache and (tmp_path / "labels" / "train.ghostdet.cache").is_file()
    second = build_dataset(cfg, "train", augment=False)
    assert second.report.from_cache and second.report.boxes_kept == 3
    np.testing.assert_array_equal(first.records[0].boxes, second.records[0].boxes)
    label = tmp_path / "labels" / "train" / "im1.txt"
    label.write_text(label.read_text() + "0 0.5 0.5 0.2 0.2\n")
    third = build_dataset(cfg, "train", augment=False)
    assert not third.report.from_cache and third.report.boxes_kept == 4


# --------------------------------------------------------------------------------------- images
def test_image_modes_become_8bit_rgb(tmp_path):
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (6, 1))
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    rgba = np.dstack([np.full((6, 25, 3), 200, np.uint8), np.full((6, 25), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.full((6, 25, 3), (10, 120, 240), np.uint8)).convert("P").save(tmp_path / "palette.png")
    deep = np.tile(np.array([0, 32768, 65535], np.uint16), (6, 1))
    Image.fromarray(deep).save(tmp_path / "deep16.png")
    assert Image.open(tmp_path / "deep16.png").mode.startswith("I")
    for name in ("gray", "rgba", "palette", "deep16"):
        img = read_image(tmp_path / f"{name}.png")
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png")[..., 0], gray)
    assert (read_image(tmp_path / "rgba.png") == 200).all()  # alpha dropped, colour kept
    palette_rgb = np.asarray(Image.open(tmp_path / "palette.png").convert("RGB"))  # the palette's colour
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png"), palette_rgb)
    np.testing.assert_allclose(read_image(tmp_path / "deep16.png")[0, :, 0], [0, 128, 255], atol=1)  # scaled, not clipped


def test_exif_rotated_image_boxes_refer_to_the_upright_image(tmp_path):
    upright = np.full((80, 120, 3), 40, np.uint8)
    upright[20:50, 70:110] = (250, 30, 30)  # the object, in upright pixels
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # camera stored it rotated
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    stored.save(tmp_path / "images" / "train" / "cam.jpg", exif=exif.tobytes(), quality=95)
    (tmp_path / "labels" / "train" / "cam.txt").write_text(f"0 {90 / 120} {35 / 80} {40 / 120} {30 / 80}\n")
    (tmp_path / "data.yaml").write_text("names: [thing]\n")
    ds = build_dataset({"format": "yolo", "root": str(tmp_path), "train": "images/train"}, "train",
                       imgsz=128, augment=False)
    assert (ds.records[0].height, ds.records[0].width) == (80, 120)
    np.testing.assert_allclose(ds.records[0].boxes, [[70, 20, 110, 50]], atol=1e-3)
    img = ds.load_image(0)
    assert img.shape == (80, 120, 3)
    assert np.abs(img[25:45, 75:105].astype(int) - (250, 30, 30)).max() < 40
    sample = ds[0]
    x1, y1, x2, y2 = np.round(sample["boxes"][0]).astype(int)
    assert np.abs(sample["image"][y1 + 3:y2 - 3, x1 + 3:x2 - 3].astype(int) - (250, 30, 30)).max() < 40


# -------------------------------------------------------------------------------------- letterbox
# (original h, w) -> 320: ratio, (pad_left, pad_top), a box in the original and where it must land, worked by hand:
# 480x640: ratio 0.5, resized 240x320, pad (320-240)/2 = 40 on top; 640x427: ratio 0.5, width round(213.5) = 214,
# pad (320-214)//2 = 53 on the left; 100x150: ratio 320/150, height round(213.33) = 213, pad (320-213)//2 = 53 on top
LETTERBOX_CASES = [
    ((480, 640), 0.5, (0, 40), [100, 50, 300, 250], [50, 65, 150, 165]),
    ((640, 427), 0.5, (53, 0), [0, 0, 427, 640], [53, 0, 266.5, 320]),
    ((100, 150), 320 / 150, (0, 53), [15, 10, 75, 40], [32, 53 + 64 / 3, 160, 53 + 256 / 3]),
]


@pytest.mark.parametrize("shape,ratio,pad,box,expected", LETTERBOX_CASES, ids=["480x640", "640x427", "100x150"])
def test_letterbox_maps_boxes_and_pixels_to_known_places(shape, ratio, pad, box, expected):
    h, w = shape
    original = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    original[y1:y2, x1:x2] = 255
    img, got_ratio, got_pad = letterbox(original, 320)
    assert img.shape == (320, 320, 3) and got_ratio == pytest.approx(ratio) and tuple(got_pad) == pad
    mapped = letterbox_boxes(np.array([box], np.float32), got_ratio, got_pad)[0]
    np.testing.assert_allclose(mapped, expected, atol=1e-4)
    # the pixels moved with the box: white inside it, black just outside, the pad grey beyond the image
    ex1, ey1, ex2, ey2 = (int(round(v)) for v in expected)
    assert (img[ey1 + 2:ey2 - 2, ex1 + 2:ex2 - 2] == 255).all()
    left, top = pad
    if top:
        assert (img[:top] == PAD_VALUE).all() and (img[-(320 - top - round(h * ratio)):] == PAD_VALUE).all()
    if left:
        assert (img[:, :left] == PAD_VALUE).all() and (img[:, left + round(w * ratio):] == PAD_VALUE).all()
    if ex1 - 3 >= left:
        assert (img[(ey1 + ey2) // 2, left:ex1 - 2] == 0).all()
    # and back, to the original pixels
    np.testing.assert_allclose(unletterbox_boxes(mapped[None], got_ratio, got_pad, (h, w))[0], box, atol=1e-3)
    back_t = unletterbox_boxes(letterbox_boxes(torch.tensor([box], dtype=torch.float32), got_ratio, got_pad),
                               got_ratio, got_pad, (h, w))
    np.testing.assert_allclose(back_t.numpy()[0], box, atol=1e-3)


def test_eval_samples_map_back_to_original_pixels(coco128):
    ds = build_dataset(coco128_cfg(coco128), "val", imgsz=320, augment=False)
    for i in (0, 5, 50):
        s = ds[i]
        assert s["image"].shape == (320, 320, 3)
        back = unletterbox_boxes(s["boxes"], s["ratio"], s["pad"], s["orig_size"])
        np.testing.assert_allclose(back, ds.records[i].boxes, atol=1e-3)


# -------------------------------------------------------------------------------------- augmentation
COLOURS = [(230, 20, 20), (20, 200, 20), (20, 40, 230), (230, 210, 20)]


def test_augmented_boxes_still_frame_their_rectangles(tmp_path):
    """After mosaic, affine (scale/translate) and flips, every box frames exactly its drawn rectangle."""
    items = []
    for k, colour in enumerate(COLOURS):
        img = np.full((160, 200, 3), 60, np.uint8)
        x1, y1, x2, y2 = 30 + 10 * k, 20 + 8 * k, 130 + 10 * k, 100 + 6 * k
        img[y1:y2, x1:x2] = colour
        items.append((f"rect{k}", img, [(k, x1, y1, x2, y2)]))
    cfg = write_yolo_set(tmp_path, items, ["red", "green", "blue", "yellow"])
    aug = dict(DEFAULT_AUG, mosaic=1.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.5, flipud=0.5, scale=0.5, translate=0.2)
    ds = build_dataset(cfg, "train", imgsz=128, augment=True, aug_cfg=aug, seed=1)
    checked = 0
    for step in range(24):
        if step == 12:
            ds.set_mosaic(False)
        s = ds[step % 4]
        img = s["image"].astype(int)
        assert img.shape == (128, 128, 3)
        for (x1, y1, x2, y2), label in zip(s["boxes"], s["labels"]):
            colour = np.array(COLOURS[label])
            inner = img[int(np.ceil(y1)) + 1:int(y2) - 1, int(np.ceil(x1)) + 1:int(x2) - 1]
            if inner.size:
                assert np.abs(inner - colour).max() < 30, f"step {step}: box {label} interior is not its rectangle"
            # just outside each side (when inside the image) there is no more of the rectangle
            for side in (img[int(y1) - 2, int(x1):int(x2)] if y1 >= 2 else None,
                         img[int(np.ceil(y2)) + 1, int(x1):int(x2)] if y2 <= 125 else None,
                         img[int(y1):int(y2), int(x1) - 2] if x1 >= 2 else None,
                         img[int(y1):int(y2), int(np.ceil(x2)) + 1] if x2 <= 125 else None):
                if side is not None and len(side):
                    assert (np.abs(side - colour).max(axis=1) < 30).mean() < 0.5, f"step {step}: box {label} too small"
            checked += 1
    assert checked > 30


def test_unknown_augmentation_key_is_a_config_error(coco128):
    with pytest.raises(ConfigError, match="aug.mosiac"):
        build_dataset(coco128_cfg(coco128), "train", imgsz=320, aug_cfg={"mosiac": 1.0})


# -------------------------------------------------------------------------------------- loader
def test_loader_batches_follow_the_contract(coco128):
    ds = build_dataset(coco128_cfg(coco128), "train", imgsz=256, augment=True, aug_cfg={"mixup": 0.5})
    loader = build_dataloader(ds, batch_size=4, workers=0, shuffle=True, seed=0)
    images, targets, metas, ignore = next(iter(loader))
    assert images.shape == (4, 3, 256, 256) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert targets.shape[1] == 6 and len(targets) > 0
    assert set(targets[:, 0].long().tolist()) <= {0, 1, 2, 3}
    assert (targets[:, 1] >= 0).all() and (targets[:, 1] < 80).all()
    assert (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 256).all()
    assert (targets[:, 4] > targets[:, 2]).all() and (targets[:, 5] > targets[:, 3]).all()
    assert len(metas) == 4 and {"image_id", "file", "orig_size", "ratio", "pad"} <= set(metas[0])
    assert ignore.dtype == torch.float32 and ignore.ndim == 2 and ignore.shape[1] == 5  # crowd regions (coco128 has 10)
    # same seed, same augmented batch
    again = next(iter(build_dataloader(ds, batch_size=4, workers=0, shuffle=True, seed=0)))
    torch.testing.assert_close(again[0], images)
    val = build_dataset(coco128_cfg(coco128), "val", imgsz=256)
    _, _, metas, _ = collate_fn([val[0], val[1]])
    assert metas[0]["orig_size"] == (val.records[0].height, val.records[0].width) and metas[0]["ratio"] > 0


def test_close_mosaic_reaches_running_workers(tmp_path):
    items = [(f"im{i}", np.full((64, 64, 3), 40 * i, np.uint8), [(0, 8, 8, 40, 40)]) for i in range(4)]
    cfg = write_yolo_set(tmp_path, items, ["thing"])
    ds = build_dataset(cfg, "train", imgsz=64, augment=True,
                       aug_cfg={"scale": 0.0, "translate": 0.0, "hsv_h": 0, "hsv_s": 0, "hsv_v": 0, "fliplr": 0})
    loader = build_dataloader(ds, batch_size=4, workers=1, shuffle=False, seed=0)

    def distinct_greys(images):  # a mosaic shows several images' greys; a single image one grey (+ pad)
        return [len(set((img[0] * 255).round().long().flatten().tolist()) - {114}) for img in images]

    images, _, _, _ = next(iter(loader))
    assert max(distinct_greys(images)) > 1
    ds.set_mosaic(False)  # the worker process is already running (persistent)
    for images, _, _, _ in loader:
        assert distinct_greys(images) == [1, 1, 1, 1]


# -------------------------------------------------------------------------------------- shapes
def test_shapes_generation_is_deterministic(tmp_path):
    a = generate_shapes(tmp_path / "a", num_train=6, num_val=2, seed=3)
    b = generate_shapes(tmp_path / "b", num_train=6, num_val=2, seed=3)
    c = generate_shapes(tmp_path / "c", num_train=6, num_val=2, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 10
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "images/train/train_00000.jpg").read_bytes() != (c / "images/train/train_00000.jpg").read_bytes()
    ds = build_dataset({"format": "shapes", "root": str(a), "train": "images/train", "train_ann": "annotations/instances_train.json",
                        "val": "images/val", "val_ann": "annotations/instances_val.json"}, "train", imgsz=320, augment=False)
    assert ds.names == ["circle", "square", "triangle", "star", "cross"] and ds.category_ids == [1, 2, 3, 4, 5]
    assert ds.report.boxes_kept > 6 and sum(ds.report.images_skipped.values()) == 0
    # boxes are tight: the object colour reaches every side of its box
    rec = ds.records[0]
    img = ds.load_image(0).astype(int)
    for (x1, y1, x2, y2) in np.round(rec.boxes).astype(int):
        patch = img[y1:y2, x1:x2]
        saturated = (patch.max(axis=2) - patch.min(axis=2)) > 60
        assert saturated[0].any() or saturated[-1].any()
        assert saturated[:, 0].any() or saturated[:, -1].any()


def test_shapes_root_generated_on_first_use(tmp_path, caplog):
    cfg = {"format": "shapes", "root": str(tmp_path / "shapes"), "train": "images/train", "val": "images/val",
           "train_ann": "annotations/instances_train.json", "val_ann": "annotations/instances_val.json",
           "num_train": 4, "num_val": 2}
    with caplog.at_level(logging.INFO):
        ds = build_dataset(cfg, "val", imgsz=320)
    assert len(ds) == 2 and "generating the shapes dataset" in caplog.text
    assert not list(tmp_path.glob(".shapes-*"))  # the temporary folder is gone


def test_ram_cache_gives_the_same_samples(coco128):
    cfg = coco128_cfg(coco128)
    plain = build_dataset(cfg, "val", imgsz=256, augment=False)
    cached = build_dataset(dict(cfg, cache_images=True), "val", imgsz=256, augment=False)
    assert cached._ram is not None
    for i in (0, 7):
        a, b = plain[i], cached[i]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["boxes"], b["boxes"])
        assert (a["ratio"], a["pad"]) == (b["ratio"], b["pad"])
    train = build_dataset(dict(cfg, cache_images=True), "train", imgsz=256, seed=0)
    img, boxes, labels = train.load_resized(3)
    assert max(img.shape[:2]) == 256 and img.dtype == np.uint8 and len(boxes) == len(labels)


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_coco_boxes_on_stored_pixels_of_exif_photos_follow_the_rotation(tmp_path, orientation):
    """A json sized like the stored pixels of a 90°-rotated photo has its boxes there: they must land on the object."""
    stored = np.full((60, 100, 3), 30, np.uint8)
    stored[10:25, 60:90] = (240, 240, 20)  # object at x 60..90, y 10..25 of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    (tmp_path / "images").mkdir()
    Image.fromarray(stored).save(tmp_path / "images" / "photo.png", exif=exif.tobytes())
    cfg = write_coco_json(tmp_path, [{"id": 1, "file_name": "photo.png", "width": 100, "height": 60}],
                          [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [60, 10, 30, 15], "iscrowd": 0}])
    ds = build_dataset(cfg, "train", imgsz=128, augment=False)
    assert ds.report.json_problems == {}  # the json's size is the stored one: not a mismatch
    img = ds.load_image(0)
    ys, xs = np.nonzero((img[..., 2] < 100) & (img[..., 0] > 150))  # the yellow object, upright
    truth = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    rec = ds.records[0]
    assert (rec.height, rec.width) == img.shape[:2]
    np.testing.assert_allclose(rec.boxes[0], truth, atol=1)
    assert ds.coco_gt().imgs[1]["height"] == img.shape[0]


def write_coco_json(root: Path, images, annotations) -> dict:
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    return {"format": "coco", "root": str(root), "train": "images", "train_ann": "annotations/instances.json"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_box_mapping_matches_pil_for_every_orientation(orientation):
    from PIL import ImageOps

    from ghostdet.data.image_io import exif_upright_boxes

    stored = np.zeros((60, 100), np.uint8)
    stored[10:25, 60:90] = 255
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.info["exif"] = exif.tobytes()
    upright = np.asarray(ImageOps.exif_transpose(im))
    ys, xs = np.nonzero(upright)
    box = exif_upright_boxes([[60, 10, 90, 25]], orientation, (60, 100))[0]
    np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_distributed_loader_uses_a_distributed_sampler(tmp_path):
    import torch.distributed as dist

    items = [(f"im{i}", np.full((64, 64, 3), 30 * i, np.uint8), [(0, 8, 8, 40, 40)]) for i in range(6)]
    ds = build_dataset(write_yolo_set(tmp_path, items, ["thing"]), "train", imgsz=64, augment=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        loader = build_dataloader(ds, batch_size=2, workers=0, shuffle=True, seed=3, distributed=True)
        assert isinstance(loader.sampler, torch.utils.data.DistributedSampler) and loader.sampler.seed == 3
        loader.sampler.set_epoch(1)
        assert sum(len(images) for images, *_ in loader) == 6
    finally:
        dist.destroy_process_group()
