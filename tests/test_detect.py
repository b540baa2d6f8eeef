"""Detector API and tools/detect.py on real photos (coco128), with a model trained briefly in the test session."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import IMGSZ, TRAIN_STEMS, yolo_boxes
from helpers import assert_one_line_error, run_main_in_process, run_tool
from ghostdet.data.image_io import read_image

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def detector(trained_checkpoint):
    from ghostdet import Detector

    return Detector.from_checkpoint(trained_checkpoint, conf=0.1)


# ---------------------------------------------------------------------------------------------- Python API
def test_predict_boxes_in_original_pixels_of_a_letterboxed_photo(detector, coco128):
    """A 640x480 photo is letterboxed to 256x256 (vertical padding); boxes must come back in the photo's pixels."""
    stem = "000000000009"
    path = coco128 / "images" / "train2017" / f"{stem}.jpg"
    image = read_image(path)
    h, w = image.shape[:2]
    assert (h, w) == (480, 640)
    [result] = detector.predict(path)
    assert len(result) > 0 and result.orig_shape == (h, w) and result.file == str(path)

    # the same photo resized and padded by hand, run through the raw model, mapped back by hand
    scale = IMGSZ / max(h, w)
    new_w, new_h = round(w * scale), round(h * scale)
    top = (IMGSZ - new_h) // 2
    manual = np.full((IMGSZ, IMGSZ, 3), 114, np.uint8)
    manual[top:top + new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    model = detector.backend.model
    [raw] = model.predict(torch.from_numpy(manual.transpose(2, 0, 1)[None].copy()).float() / 255, conf=0.1, iou=0.45)
    by_hand = (raw["boxes"].numpy() - [0, top, 0, top]) / scale
    by_hand[:, 0::2] = by_hand[:, 0::2].clip(0, w)
    by_hand[:, 1::2] = by_hand[:, 1::2].clip(0, h)
    assert len(by_hand) == len(result)
    np.testing.assert_allclose(result.boxes, by_hand, atol=1e-2)

    # and they sit on the photo's ground-truth objects (the model was fitted to this photo)
    classes, gt = yolo_boxes(coco128, stem, (h, w))
    from torchvision.ops import box_iou

    iou = box_iou(torch.from_numpy(result.boxes), torch.from_numpy(gt).float())
    assert float(iou.max(1).values.max()) > 0.5
    assert result.names[0] == detector.names[int(result.labels[0])]
    assert result.category_ids is not None and result.category_ids[0] == detector.category_ids[int(result.labels[0])]


def test_predict_accepts_paths_arrays_pil_and_lists_alike(detector, coco128, tmp_path):
    from PIL import Image

    path = coco128 / "images" / "train2017" / "000000000025.jpg"
    rgb = read_image(path)
    [from_path] = detector.predict(path)
    [from_rgb] = detector.predict(rgb)  # numpy arrays are RGB by default
    [from_bgr] = detector.predict(cv2.imread(str(path)), bgr=True)
    [from_pil] = detector.predict(Image.fromarray(rgb))
    assert len(from_path) > 0
    for other in (from_rgb, from_bgr, from_pil):
        np.testing.assert_allclose(other.boxes, from_path.boxes, atol=1e-3)
        np.testing.assert_array_equal(other.labels, from_path.labels)
    assert from_rgb.file is None
    d = from_path.to_dict()
    assert set(d) == {"file", "width", "height", "detections"}
    assert set(d["detections"][0]) == {"bbox", "score", "class", "name", "category_id"}
    # a list of several sources gives one result per image, in order; a folder expands to its images
    folder = tmp_path / "two photos"
    folder.mkdir()
    for stem in TRAIN_STEMS[:2]:
        shutil.copy(coco128 / "images" / "train2017" / f"{stem}.jpg", folder)
    results = detector.predict([folder, rgb])
    assert [Path(r.file).name if r.file else None for r in results] == [f"{TRAIN_STEMS[0]}.jpg", f"{TRAIN_STEMS[1]}.jpg", None]


def test_exif_rotated_grayscale_and_rgba_images(detector, coco128, tmp_path):
    from PIL import Image

    rgb = read_image(coco128 / "images" / "train2017" / "000000000009.jpg")
    # a phone photo: pixels stored sideways, EXIF orientation 6 says "rotate 90° clockwise to view"
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, k=1)))
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=98)
    [rotated] = detector.predict(tmp_path / "phone.jpg")
    assert rotated.orig_shape == rgb.shape[:2]  # upright: as the user sees it
    [upright] = detector.predict(rgb)
    assert len(rotated) > 0 and abs(len(rotated) - len(upright)) <= 1
    assert np.abs(rotated.boxes[0] - upright.boxes[0]).max() < 8  # JPEG re-encoding moves boxes a little
    # grayscale (coco128 has one) and RGBA images come out as 3-channel RGB
    [gray] = detector.predict(coco128 / "images" / "train2017" / "000000000086.jpg")
    assert gray.orig_shape == read_image(coco128 / "images" / "train2017" / "000000000086.jpg").shape[:2]
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "alpha.png")
    [rgba] = detector.predict(tmp_path / "alpha.png")
    np.testing.assert_allclose(rgba.boxes, upright.boxes, atol=1e-3)


def test_video_is_annotated_frame_by_frame(detector, coco128, tmp_path):
    from ghostdet.inference.writer import DetectionWriter

    rgb = read_image(coco128 / "images" / "train2017" / "000000000009.jpg")
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (rgb.shape[1], rgb.shape[0]))
    for shift in range(5):
        writer.write(np.ascontiguousarray(np.roll(rgb, shift * 8, axis=1)[..., ::-1]))
    writer.release()
    with DetectionWriter(tmp_path / "out") as out:
        for frame, result in detector.stream(video):
            out.add(frame, result)
    records = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    assert all(r["detections"] for r in records)
    cap = cv2.VideoCapture(str(tmp_path / "out" / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == rgb.shape[1]
    cap.release()


def test_class_filter_by_name_or_index(detector, coco128):
    path = coco128 / "images" / "train2017" / "000000000009.jpg"
    [everything] = detector.predict(path)
    top = everything.names[0]
    [only] = detector.predict(path, classes=[top])
    assert len(only) > 0 and set(only.names) == {top}
    [same] = detector.predict(path, classes=[detector.names.index(top)])
    np.testing.assert_array_equal(same.labels, only.labels)
    from ghostdet.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="not one of the model's classes"):
        detector.predict(path, classes=["unicorn"])


# ---------------------------------------------------------------------------------------------- the CLI
def test_detect_tool_writes_annotated_images_and_json(trained_checkpoint, coco128, tmp_path):
    photos = tmp_path / "holiday photos"
    photos.mkdir()
    for stem in TRAIN_STEMS[:2]:
        shutil.copy(coco128 / "images" / "train2017" / f"{stem}.jpg", photos)
    (photos / "notes.txt").write_text("not an image; folders skip what is not an image or video")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    single = coco128 / "images" / "train2017" / f"{TRAIN_STEMS[2]}.jpg"
    proc = run_tool("detect.py", photos, single, "--weights", trained_checkpoint, "--conf", "0.1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "detect" / "exp"
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{s}.jpg" for s in TRAIN_STEMS[:3]] + ["predictions.json"])
    assert "broken.jpg" in proc.stderr  # the unreadable file in the folder is named and skipped
    lines = [line for line in proc.stdout.splitlines() if line.endswith(" ms")]
    assert len(lines) == 3 and all(" ms" in line for line in lines)

    records = json.loads((out / "predictions.json").read_text())
    assert [Path(r["file"]).name for r in records] == [f"{s}.jpg" for s in TRAIN_STEMS[:3]]
    for record in records:
        image = read_image(record["file"])
        assert (record["height"], record["width"]) == image.shape[:2]
        assert record["detections"]
        for det in record["detections"]:
            x1, y1, x2, y2 = det["bbox"]
            assert 0 <= x1 < x2 <= record["width"] and 0 <= y1 < y2 <= record["height"]
            assert 0 < det["score"] <= 1 and isinstance(det["category_id"], int)
    annotated = cv2.imread(str(out / f"{TRAIN_STEMS[0]}.jpg"))
    assert annotated.shape[:2] == (records[0]["height"], records[0]["width"])
    assert not np.array_equal(annotated, cv2.imread(str(photos / f"{TRAIN_STEMS[0]}.jpg")))

    # a second run gets a new folder; --no-save writes the JSON only
    proc = run_tool("detect.py", str(photos / "*.jpg"), "--weights", trained_checkpoint, "--no-save", "--classes", "0,bowl",
                    "--conf", "0.1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "runs" / "detect" / "exp2").iterdir()] == ["predictions.json"]
    filtered = json.loads((tmp_path / "runs" / "detect" / "exp2" / "predictions.json").read_text())
    names = {d["name"] for r in filtered for d in r["detections"]}
    assert names and names <= {"person", "bowl"}


def test_detect_tool_bad_inputs_fail_with_one_line(trained_checkpoint, coco128, tmp_path):
    photo = coco128 / "images" / "train2017" / "000000000009.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("hello, I am not a picture")
    not_a_checkpoint = tmp_path / "best.pt"
    not_a_checkpoint.write_bytes(os.urandom(2048))
    cases = {  # the tool's main in this process (test_booby_trapped_checkpoint_never_runs_its_code runs the script)
        (tmp_path / "missing.jpg", "--weights", trained_checkpoint): ("missing.jpg", "no such file"),
        (text, "--weights", trained_checkpoint): ("notes.jpg", "not an image"),
        (photo, "--weights", not_a_checkpoint): ("best.pt", "checkpoint"),
        (photo,): ("no --weights given",),  # and no runs/train in this folder
        (photo, "--weights", trained_checkpoint, "--device", "cuda:7"): ("cuda:7",),
    }
    for args, fragments in cases.items():
        assert_one_line_error(run_main_in_process("detect", *args, cwd=tmp_path), *fragments)
    assert not (tmp_path / "runs").exists()  # a failed detect writes nothing (no predictions.json holding [])


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: what a malicious checkpoint would do with worse code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_booby_trapped_checkpoint_never_runs_its_code(trained_checkpoint, coco128, tmp_path):
    marker = tmp_path / "pwned"
    ckpt = torch.load(trained_checkpoint, weights_only=True)
    ckpt["names"] = _Payload(marker)
    trap = tmp_path / "trap.pt"
    torch.save(ckpt, trap)
    photo = coco128 / "images" / "train2017" / "000000000009.jpg"
    proc = run_tool("detect.py", photo, "--weights", trap, cwd=tmp_path)
    assert_one_line_error(proc, "trap.pt", "refused to load")
    assert not marker.exists()
    torch.load(trap, weights_only=False)  # proof that the trap is real: unsafe loading does run it
    assert marker.exists()
