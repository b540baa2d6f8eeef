"""The race's second data set (benchmarks/race_data.py, ``bench_front.py --raccoon-person``) is what its docs say:
two classes of real photos, raccoon with its own split and coco128's person photos split without overlap, read by
ghostdet's own ``data=yolo`` scan with every box, and written once."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import race_data  # noqa: E402


@pytest.fixture(scope="module")
def raccoon_person(shared_data, tmp_path_factory):
    if not (shared_data / "raccoon").is_dir() or not (shared_data / "coco128").is_dir():
        pytest.skip("raccoon or coco128 not in the shared data")
    return race_data.make_raccoon_person(tmp_path_factory.mktemp("race"), shared_data)


def test_raccoon_person_split_and_boxes(raccoon_person, shared_data):
    from ghostdet.data import build_dataset

    recipe = json.loads((raccoon_person / "recipe.json").read_text())
    assert recipe["classes"] == ["raccoon", "person"]
    assert not set(recipe["person"]["train"]) & set(recipe["person"]["val"])
    assert len(recipe["person"]["train"]) + len(recipe["person"]["val"]) == 61  # coco128's photos with a person
    data = {"format": "yolo", "root": str(raccoon_person), "train": "images/train", "val": "images/val",
            "names": ["raccoon", "person"], "cache": False}
    counts = {}
    for split, images in (("train", 160 + 45), ("val", 40 + 16)):
        ds = build_dataset(data, split, imgsz=256, augment=False, cache=False, read_only=True)
        assert len(ds.records) == images, split
        labels = [int(c) for rec in ds.records for c in rec.labels.tolist()]
        counts[split] = [labels.count(0), labels.count(1)]
        for rec in ds.records:
            assert ((rec.boxes[:, 2] > rec.boxes[:, 0]) & (rec.boxes[:, 3] > rec.boxes[:, 1])).all(), rec.file
            assert (rec.labels == (0 if Path(rec.file).name.startswith("raccoon") else 1)).all(), rec.file
    assert counts == {"train": [173, 186], "val": [44, 68]}  # raccoon: every VOC box; person: every coco128 one


def test_raccoon_person_written_once(raccoon_person, shared_data):
    stamp = (raccoon_person / "recipe.json").stat().st_mtime_ns
    assert race_data.make_raccoon_person(raccoon_person.parent, shared_data) == raccoon_person
    assert (raccoon_person / "recipe.json").stat().st_mtime_ns == stamp
    with pytest.raises(SystemExit, match="another recipe"):  # never overwritten by a different split
        race_data.make_raccoon_person(raccoon_person.parent, shared_data, person_val=10)
