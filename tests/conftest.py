"""Shared fixtures. Real test data comes from ../shared/data (override with GHOSTDET_SHARED_DATA)."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ghostdet.utils.timing import torch_threads
from helpers import HALF_WIDTH_MODEL

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("GHOSTDET_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only test data folder; tests that need it are skipped (with the reason) when it is absent."""
    path = shared_data_dir()
    if not (path / "coco128").is_dir():
        pytest.skip(f"shared test data not found at {path} (set GHOSTDET_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def coco128(shared_data) -> Path:
    return shared_data / "coco128"


@pytest.fixture(scope="session")
def raccoon(shared_data) -> Path:
    """The real Pascal VOC set (200 photos, one class, ImageSets/Main train 160 / val 40)."""
    root = shared_data / "raccoon"
    if not (root / "ImageSets" / "Main" / "val.txt").is_file():
        pytest.skip(f"raccoon data set not found at {root} (set GHOSTDET_SHARED_DATA)")
    return root


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Small forward passes run faster on one thread than on oversubscribed ones on a shared 2-core CPU;
    the caller's setting is restored afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    with torch_threads(1):
        yield


# ------------------------------------------------------------------------------ a briefly trained model
# (tests/test_detect.py and tests/test_export.py use the checkpoint; they import the constants from here)
TRAIN_STEMS = ["000000000009", "000000000025", "000000000030", "000000000034"]
PHOTO_STEMS = TRAIN_STEMS + ["000000000086"]  # + the grayscale one
IMGSZ = 256
MODEL_CONFIG = HALF_WIDTH_MODEL


def yolo_boxes(coco128: Path, stem: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of a coco128 image: (classes, xyxy boxes in original pixels)."""
    h, w = shape
    labels = np.loadtxt(coco128 / "labels" / "train2017" / f"{stem}.txt", ndmin=2)
    cx, cy, bw, bh = labels[:, 1] * w, labels[:, 2] * h, labels[:, 3] * w, labels[:, 4] * h
    return labels[:, 0].astype(int), np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)


def make_trained_checkpoint(coco128: Path, out_dir: Path) -> Path:
    """A small GhostYOLO fitted to 4 coco128 photos, saved in the trainer's checkpoint layout.

    Cheap on 2 CPU cores: the backbone and neck stay at their initial weights and run once; only the head
    is trained (50 steps), then its BatchNorm statistics are recomputed so eval mode matches. Cached in
    ``out_dir``; the session fixture ``trained_checkpoint`` builds it once for every test module.
    """
    from ghostdet.models import build_model
    from omegaconf import OmegaConf

    from ghostdet.data.letterbox import letterbox, letterbox_boxes
    from ghostdet.data.image_io import read_image
    from ghostdet.models.loss import DetectionLoss
    from ghostdet.utils.checkpoint import save_checkpoint

    path = out_dir / "weights" / "best.pt"
    if path.is_file():
        return path
    torch.manual_seed(0)
    names = (coco128 / "classes.txt").read_text().split("\n")[:80]
    category_ids = [int(v) for v in (coco128 / "coco_category_ids.txt").read_text().split()]
    model = build_model(OmegaConf.create(MODEL_CONFIG), num_classes=len(names))
    images, targets = [], []
    for i, stem in enumerate(TRAIN_STEMS):
        image = read_image(coco128 / "images" / "train2017" / f"{stem}.jpg")
        classes, boxes = yolo_boxes(coco128, stem, image.shape[:2])
        padded, ratio, pad = letterbox(image, IMGSZ)
        images.append(padded.transpose(2, 0, 1))
        targets.append(np.concatenate([np.full((len(boxes), 1), i), classes[:, None], letterbox_boxes(boxes, ratio, pad)], 1))
    x = torch.from_numpy(np.stack(images)).float() / 255
    t = torch.from_numpy(np.concatenate(targets)).float()
    model.eval()
    with torch.no_grad():
        features = model.neck(model.backbone((x - model.mean) / model.std))
    loss_fn = DetectionLoss(model)
    optimizer = torch.optim.AdamW(model.head.parameters(), lr=1e-2)
    model.head.train()
    for _ in range(50):
        loss, _ = loss_fn(model.head(features), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # exact BN statistics of the final weights (the running averages lag behind)
        for m in model.head.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model.head(features)
    model.eval()
    save_checkpoint({
        "model": model.state_dict(), "ema": None, "names": names, "category_ids": category_ids, "epoch": 0,
        "config": {"model": MODEL_CONFIG, "imgsz": IMGSZ}, "model_spec": MODEL_CONFIG, "ghostdet_version": "test",
    }, path)
    return path


@pytest.fixture(scope="session")
def trained_checkpoint(coco128, tmp_path_factory) -> Path:
    """``weights/best.pt`` of ``make_trained_checkpoint``, built once per test session; a pytest run started by a test
    (test_openvino.py) gets the parent session's folder in GHOSTDET_TEST_DETECT_MODEL."""
    folder = os.environ.get("GHOSTDET_TEST_DETECT_MODEL")
    return make_trained_checkpoint(coco128, Path(folder) if folder else tmp_path_factory.getbasetemp() / "detect_model")


@pytest.fixture(scope="session")
def raccoon_checkpoint(raccoon, tmp_path_factory) -> Path:
    """``helpers.make_raccoon_checkpoint``: the small raccoon model of the int8 and edge-export tests, trained once per
    test session."""
    from helpers import make_raccoon_checkpoint

    return make_raccoon_checkpoint(raccoon, tmp_path_factory.getbasetemp() / "raccoon_int8" / "best.pt")


YOLO_SPLIT_IMAGES = 8  # images in the yolo_split fixture (one of them a background image)


@pytest.fixture(scope="module")
def yolo_split(coco128, tmp_path_factory) -> Path:
    """A YOLO-format folder (images/val, labels/val, classes.txt) with the first coco128 images, one a background image."""
    root = tmp_path_factory.mktemp("yolo_split")
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    stems = sorted(p.stem for p in (coco128 / "images" / "train2017").glob("*.jpg"))[:YOLO_SPLIT_IMAGES - 1] + ["000000000250"]
    for stem in stems:
        os.symlink(coco128 / "images" / "train2017" / f"{stem}.jpg", root / "images" / "val" / f"{stem}.jpg")
        label = coco128 / "labels" / "train2017" / f"{stem}.txt"
        if label.exists():  # 000000000250 is a background image: no label file
            shutil.copy(label, root / "labels" / "val" / label.name)
    shutil.copy(coco128 / "classes.txt", root / "classes.txt")
    return root
