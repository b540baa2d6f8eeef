"""What tools/detect.py writes, and that it never replaces a file that existed before: numbered run folders
(--project/--name/--exist-ok), a refused --out that holds files, YOLO label files, crops, webcam/stream sources read
through OpenCV (tested with a video file through the same path), the hint when nothing is found, and the
space-separated --classes / --imgsz forms."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import TRAIN_STEMS
from ghostdet.cli.detect import parse_args
from ghostdet.inference.results import Detections
from ghostdet.inference.sources import Frame, collect_sources, is_stream, stream_name
from ghostdet.inference.writer import DetectionWriter, OutputDir
from ghostdet.utils.errors import ConfigError
from helpers import assert_one_line_error, make_checkpoint, run_main_in_process


def md5s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def detections(h=100, w=200) -> Detections:
    return Detections(boxes=np.array([[10, 20, 50, 60], [150, 0, 260, 40]], np.float32),
                      scores=np.array([0.9, 0.5], np.float32), labels=np.array([0, 1]), names=["cat", "traffic/light"],
                      orig_shape=(h, w))


# ------------------------------------------------------------------------------------------ the writer, no model
def test_labels_are_yolo_lines_and_crops_are_cut_from_the_original(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (100, 200, 3), dtype=np.uint8)
    with DetectionWriter(OutputDir(tmp_path / "runs", "exp"), save_txt=True, save_conf=True, save_crop=True) as w:
        w.add(Frame(image, Path("shots/a.png"), 0), detections())
        w.add(Frame(image, Path("other/a.png"), 0), detections())  # same name from another folder: a_1
        w.add(Frame(image, Path("empty.png"), 0), Detections.empty((100, 200)))
    out = tmp_path / "runs" / "exp"
    lines = (out / "labels" / "a.txt").read_text().splitlines()
    assert lines[0] == "0 0.150000 0.400000 0.200000 0.400000 0.90000"
    assert lines[1] == "1 0.875000 0.200000 0.250000 0.400000 0.50000"  # the box beyond the right edge, clipped
    assert (out / "labels" / "a_1.txt").is_file() and not (out / "labels" / "empty.txt").exists()
    crop = cv2.imread(str(out / "crops" / "cat" / "a.jpg"))
    assert crop.shape[:2] == (40, 40)
    assert cv2.imread(str(out / "crops" / "traffic_light" / "a.jpg")).shape[:2] == (40, 50)  # clipped to the image
    assert sorted(p.name for p in out.glob("*.*")) == ["a.png", "a_1.png", "empty.png", "predictions.json"]
    assert len(json.loads((out / "predictions.json").read_text())) == 3


def test_an_existing_run_folder_is_added_to_never_overwritten(tmp_path):
    old = tmp_path / "runs" / "exp"
    old.mkdir(parents=True)
    (old / "a.png").write_bytes(b"the user's file")
    (old / "predictions.json").write_text("[]")
    before = md5s(old)
    image = np.zeros((100, 200, 3), np.uint8)
    with DetectionWriter(OutputDir(tmp_path / "runs", "exp", exist_ok=True), save_txt=True) as w:
        w.add(Frame(image, Path("a.png"), 0), detections())
    assert {k: v for k, v in md5s(old).items() if k in before} == before
    assert {"a_1.png", "predictions_1.json", "labels/a.txt"} <= set(md5s(old))
    with DetectionWriter(OutputDir(tmp_path / "runs", "exp")) as w:  # without exist_ok: a new numbered folder
        w.add(Frame(image, Path("a.png"), 0), detections())
    assert sorted(p.name for p in (tmp_path / "runs" / "exp2").iterdir()) == ["a.png", "predictions.json"]


def test_a_run_that_adds_nothing_creates_nothing(tmp_path):
    for out in (OutputDir(tmp_path / "runs" / "detect", "exp"), OutputDir(exact=tmp_path / "new" / "out")):
        with DetectionWriter(out):
            pass
        with pytest.raises(RuntimeError), DetectionWriter(out):
            raise RuntimeError("the first image failed")
    assert list(tmp_path.iterdir()) == []


def test_out_that_holds_files_is_refused_and_a_bad_name_too(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds files"):
        OutputDir(exact=tmp_path)
    with pytest.raises(ConfigError, match="without slashes"):
        OutputDir(tmp_path, "a/b")
    OutputDir(exact=tmp_path / "empty")  # new: fine (and not created yet)
    assert not (tmp_path / "empty").exists()


def test_webcam_indices_and_stream_urls_are_sources(tmp_path):
    assert is_stream("0") and is_stream("rtsp://cam.local/live") and is_stream("file:///x/clip.mp4")
    assert not is_stream("photo.jpg") and not is_stream("C:/x.jpg") and not is_stream("ftpx://a")
    assert stream_name("0") == "webcam0" and stream_name("rtsp://host:554/cam1?x=1") == "cam1"
    media = collect_sources(["0", "0", "rtsp://h/cam1"])
    assert [(m.stream, m.path, m.is_video) for m in media] == [("0", None, True), ("rtsp://h/cam1", None, True)]
    (tmp_path / "0").write_bytes(b"")  # an existing file named 0 is that file
    assert collect_sources([str(tmp_path / "0")])[0].stream is None


def test_space_separated_classes_and_imgsz_like_the_comma_forms(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    args = parse_args(["a.jpg", "--classes", "person", "car", "--imgsz", "480", "640"])
    assert (args.source, args.classes, args.imgsz) == (["a.jpg"], ["person", "car"], (480, 640))
    args = parse_args(["a.jpg", "--classes", "person,car", "--classes", "2", "--imgsz", "480,640"])
    assert (args.classes, args.imgsz) == (["person", "car", "2"], (480, 640))
    args = parse_args(["--imgsz", "320", "a.jpg", "--classes", "dog", "photos", "*.png"])  # sources after the lists
    assert (args.source, args.classes, args.imgsz) == (["a.jpg", "photos", "*.png"], ["dog"], 320)
    with pytest.raises(SystemExit):
        parse_args(["a.jpg", "--imgsz", "0"])


# ------------------------------------------------------------------------------------------ the tool, end to end
def test_detect_never_changes_a_file_that_existed_before(trained_checkpoint, coco128, tmp_path):
    """The issue's reproduction (--out pointing at the photos) and its neighbours; md5 of every file before == after."""
    work = tmp_path / "work"
    photos = work / "photos"
    photos.mkdir(parents=True)
    for stem in TRAIN_STEMS[:2]:
        shutil.copy(coco128 / "images" / "train2017" / f"{stem}.jpg", photos)
    old_run = work / "runs" / "exp"
    old_run.mkdir(parents=True)
    shutil.copy(photos / f"{TRAIN_STEMS[0]}.jpg", old_run)  # an earlier run's annotated copy, same name
    (old_run / "predictions.json").write_text("[]\n")
    before = md5s(work)
    common = ["--weights", trained_checkpoint, "--conf", "0.1"]
    calls = [(photos, "--out", photos, *common),  # refused: the folder holds the photos
             (photos, "--out", old_run, *common),  # refused: an earlier run
             (photos, "--project", work / "runs", *common, "--save-txt"),  # exp is taken: exp2
             (photos, "--project", work / "runs", "--exist-ok", *common),  # into exp, new names
             (photos, "--out", work / "fresh", *common, "--classes", "person", "bowl", "--imgsz", "256", "256")]
    procs = [run_main_in_process("detect", *args, cwd=tmp_path) for args in calls]  # the tool's main, in this process
    for proc in procs[:2]:
        assert_one_line_error(proc, "already holds files")
    for proc in procs[2:]:
        assert proc.returncode == 0, proc.stderr
    assert {k: v for k, v in md5s(work).items() if k in before} == before
    assert sorted(p.name for p in (work / "runs" / "exp2").iterdir()) == sorted(
        [f"{s}.jpg" for s in TRAIN_STEMS[:2]] + ["labels", "predictions.json"])
    added = sorted(set(md5s(old_run)) - {k.removeprefix("runs/exp/") for k in before})
    assert added == sorted([f"{TRAIN_STEMS[0]}_1.jpg", f"{TRAIN_STEMS[1]}.jpg", "predictions_1.json"])
    fresh = json.loads((work / "fresh" / "predictions.json").read_text())
    assert {d["name"] for r in fresh for d in r["detections"]} <= {"person", "bowl"}
    assert not (tmp_path / "runs").exists()  # nothing outside the places named


def test_a_stream_url_is_read_through_opencv_and_saved_as_video(trained_checkpoint, coco128, tmp_path):
    """file:// goes through the same OpenCV capture as rtsp://, http:// and webcam indices."""
    frame = cv2.imread(str(coco128 / "images" / "train2017" / f"{TRAIN_STEMS[0]}.jpg"))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5, (frame.shape[1], frame.shape[0]))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    url = clip.resolve().as_uri()
    proc = run_main_in_process("detect", url, "--weights", trained_checkpoint, "--conf", "0.1", "--save-txt",
                               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "runs" / "detect" / "exp"
    records = json.loads((out / "predictions.json").read_text())
    assert [(r["file"], r["frame"]) for r in records] == [(url, 0), (url, 1), (url, 2)]
    assert all(r["detections"] for r in records)  # the same photo in every frame (mp4 frames differ a little)
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["clip_0.txt", "clip_1.txt", "clip_2.txt"]
    assert f"{url} frame 3/?" in proc.stdout


def test_nothing_found_prints_a_hint_and_a_failed_run_writes_nothing(coco128, tmp_path):
    names = (coco128 / "classes.txt").read_text().split("\n")[:80]
    weak = make_checkpoint(tmp_path / "weak.pt", names, imgsz=64)
    ckpt = torch.load(weak, weights_only=True)
    for key, value in ckpt["model"].items():  # every class score near 0.05: nothing at 0.25, some at 0.01
        if key.startswith("head.cls_preds.") and key.endswith(".bias"):
            value.fill_(-2.944)
    torch.save(ckpt, weak)
    photo = coco128 / "images" / "train2017" / f"{TRAIN_STEMS[0]}.jpg"
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("hello")
    found = run_main_in_process("detect", photo, "--weights", weak, "--no-save", cwd=tmp_path)
    failed = run_main_in_process("detect", not_an_image, "--weights", weak, "--project", "failed", cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    hints = [line for line in found.stdout.splitlines() if line.startswith("hint: ")]
    assert len(hints) == 1 and "nothing found at --conf 0.25" in hints[0], found.stdout
    assert "there would be 0 at --conf 0.1, " in hints[0] and " at --conf 0.01, " in hints[0]
    assert_one_line_error(failed, "notes.jpg", "not an image")
    assert not (tmp_path / "failed").exists()
