"""ultralytics / Roboflow dataset files: data=my_data.yaml (ghostdet/data/data_yaml.py) and the YOLO split forms
it needs (folders, .txt lists, lists of those, Roboflow's ../train/images)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from ghostdet.data import build_dataset
from ghostdet.data.data_yaml import data_config_from_yaml, hydra_quote, resolve_data_yaml_overrides
from ghostdet.utils.errors import DataError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
STEMS = ["000000000009", "000000000025", "000000000030", "000000000034", "000000000036", "000000000042"]


def compose_data(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides).data


def copy_images(coco128: Path, stems, images: Path, labels: Path) -> None:
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copy(coco128 / "images" / "train2017" / f"{stem}.jpg", images)
        shutil.copy(coco128 / "labels" / "train2017" / f"{stem}.txt", labels)


def coco_names(coco128: Path) -> list[str]:
    return (coco128 / "classes.txt").read_text().split("\n")[:80]


@pytest.fixture
def small_set(coco128, tmp_path) -> Path:
    """6 coco128 images: 4 in images/train, 2 in images/val, ultralytics layout, no yaml yet."""
    copy_images(coco128, STEMS[:4], tmp_path / "set" / "images" / "train", tmp_path / "set" / "labels" / "train")
    copy_images(coco128, STEMS[4:], tmp_path / "set" / "images" / "val", tmp_path / "set" / "labels" / "val")
    return tmp_path / "set"


def write_yaml(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def boxes_of(dataset) -> int:
    return sum(len(r.boxes) for r in dataset.records)


# ------------------------------------------------------------------------------------------ the forms that work
def test_coco128_yaml_gives_the_same_dataset_as_data_root(coco128):
    cfg = data_config_from_yaml(coco128 / "coco128.yaml")
    assert cfg["root"] == str(coco128.resolve()) and cfg["train"] == cfg["val"] == "images/train2017"
    from_yaml = build_dataset(cfg, "val", imgsz=320)
    by_root = build_dataset({"format": "yolo", "root": str(coco128), "data_yaml": "coco128.yaml"}, "val", imgsz=320)
    assert len(from_yaml) == len(by_root) == 128
    assert from_yaml.names == by_root.names == coco_names(coco128)
    assert boxes_of(from_yaml) == boxes_of(by_root) == 929


def test_data_yaml_on_the_command_line_composes_into_the_yolo_config(coco128):
    argv = resolve_data_yaml_overrides(["model=ghost_yolo", f"data={coco128 / 'coco128.yaml'}", "epochs=1"])
    assert argv[0] == "model=ghost_yolo" and argv[1] == "data=yolo" and argv[-1] == "epochs=1"
    data = compose_data(argv)
    assert data.format == "yolo" and data.root == str(coco128.resolve()) and data.strict_names is True
    assert len(build_dataset(data, "train", imgsz=320, augment=False)) == 128
    # the other forms pass through untouched
    plain = ["data=yolo", f"data.root={coco128}", "data.data_yaml=coco128.yaml"]
    assert resolve_data_yaml_overrides(plain) == plain
    assert resolve_data_yaml_overrides(["data=coco128"]) == ["data=coco128"]


def test_users_own_data_keys_win_over_the_file(small_set):
    file = write_yaml(small_set / "data.yaml", {"path": ".", "train": "images/train", "val": "images/val",
                                                "names": [f"c{i}" for i in range(80)]})
    argv = resolve_data_yaml_overrides([f"data={file}", "data.val=images/train"])
    assert sum(a.startswith("data.val=") for a in argv) == 1
    assert compose_data(argv).val == "images/train"


def test_names_as_dict_and_path_relative_to_the_file(coco128, small_set):
    names = {i: n for i, n in enumerate(coco_names(coco128))}
    file = write_yaml(small_set.parent / "configs" / "my_data.yaml",
                      {"path": "../set", "train": "images/train", "val": "images/val", "nc": 80, "names": names})
    cfg = data_config_from_yaml(file)
    assert cfg["root"] == str(small_set.resolve())
    train, val = build_dataset(cfg, "train", imgsz=320, augment=False), build_dataset(cfg, "val", imgsz=320)
    assert (len(train), len(val)) == (4, 2) and train.names == coco_names(coco128)


def test_txt_image_lists_and_lists_of_folders(coco128, small_set):
    (small_set / "train.txt").write_text("".join(f"./images/train/{s}.jpg\n" for s in STEMS[:4]))
    (small_set / "val.txt").write_text("".join(f"{small_set / 'images' / 'val' / s}.jpg\n" for s in STEMS[4:]))
    names = coco_names(coco128)
    file = write_yaml(small_set / "data.yaml", {"train": "train.txt", "val": "val.txt", "names": names})
    cfg = data_config_from_yaml(file)
    assert (cfg["train"], cfg["val"]) == ("train.txt", "val.txt")
    train = build_dataset(cfg, "train", imgsz=320, augment=False)
    val = build_dataset(cfg, "val", imgsz=320)
    assert sorted(Path(r.file).stem for r in train.records) == STEMS[:4] and len(val) == 2
    by_folder = build_dataset({"format": "yolo", "root": str(small_set), "train": "images/train", "names": names},
                              "train", imgsz=320, augment=False)
    assert boxes_of(train) == boxes_of(by_folder) > 0
    # a list of both forms: every image once
    write_yaml(file, {"train": ["images/train", "val.txt"], "val": "images/val", "names": names})
    both = build_dataset(data_config_from_yaml(file), "train", imgsz=320, augment=False)
    assert len(both) == 6
    assert list(compose_data(resolve_data_yaml_overrides([f"data={file}"])).train) == ["images/train", "val.txt"]


def test_txt_list_with_a_missing_image_names_the_list_and_line(coco128, small_set):
    (small_set / "train.txt").write_text(f"./images/train/{STEMS[0]}.jpg\n./images/train/gone.jpg\n")
    file = write_yaml(small_set / "data.yaml", {"train": "train.txt", "val": "images/val",
                                                "names": coco_names(coco128)})
    train = build_dataset(data_config_from_yaml(file), "train", imgsz=320, augment=False)
    assert len(train) == 1 and train.report.images_skipped == {"missing": 1}
    assert any("train.txt:2" in p and "gone.jpg" in p for p in train.report.problems)


def test_roboflow_export_layout(coco128, tmp_path):
    root = tmp_path / "roboflow"
    copy_images(coco128, STEMS[:4], root / "train" / "images", root / "train" / "labels")
    copy_images(coco128, STEMS[4:], root / "valid" / "images", root / "valid" / "labels")
    names = coco_names(coco128)
    content = {"train": "../train/images", "val": "../valid/images", "test": "../test/images", "nc": 80,
               "names": names, "roboflow": {"workspace": "w", "project": "p", "version": 1}}
    file = write_yaml(root / "data.yaml", content)
    cfg = data_config_from_yaml(file)
    assert (cfg["train"], cfg["val"]) == ("train/images", "valid/images")
    assert len(build_dataset(cfg, "train", imgsz=320, augment=False)) == 4
    assert len(build_dataset(cfg, "val", imgsz=320)) == 2
    # data=yolo data.root=DIR reads the same file (data.yaml of the root) with the same rule
    assert len(build_dataset({"format": "yolo", "root": str(root)}, "val", imgsz=320)) == 2


def test_paths_with_spaces_commas_and_quotes_survive_the_command_line(coco128, tmp_path):
    root = tmp_path / "my set, v2 'final'"
    copy_images(coco128, STEMS[:2], root / "images" / "train", root / "labels" / "train")
    file = write_yaml(root / "data.yaml", {"train": "images/train", "val": "images/train",
                                           "names": coco_names(coco128)})
    data = compose_data(resolve_data_yaml_overrides([f"data={file}"]))
    assert data.root == str(root.resolve()) and len(build_dataset(data, "val", imgsz=320)) == 2
    assert hydra_quote("a\\'b${x}") == "'a\\\\\\'b\\${x}'"


# ------------------------------------------------------------------------------------------ bad files: one line
@pytest.mark.parametrize("content, match", [
    (None, "dataset file .*nowhere.yaml not found"),
    ("- a\n- b\n", "not a dataset file"),
    ("train: images/train\nnames: [a]\n", r"no val: key"),
    ("train: images/train\nval: images/val\n", r"no names: key"),
    ("train: images/trian\nval: images/val\nnames: [a]\n", r"train: images/trian not found .*fix train: or path:"),
    ("path: ../nowhere\ntrain: images/train\nval: images/val\nnames: [a]\n", r"path: \.\./nowhere not found"),
    ("path: ../nowhere\ntrain: images/train\nval: images/val\nnames: [a]\ndownload: https://x/y.zip\n",
     "download: is never run"),
    ("train: images/train\nval: images/val\nnames: {0: a, 2: b}\n", "indices must be 0..1 without gaps"),
    ("train: images/train\nval: images/val\nnc: 3\nnames: [a, b]\n", "nc: 3 but names: lists 2 classes"),
    ("train: [images/train, extra.txt]\nval: images/val\nnames: [a]\n", r"train: extra.txt not found \(image list"),
    ("train: images/train\nval: images/val\nnames: [a\n", "cannot read"),
])
def test_bad_dataset_files_fail_with_one_line_naming_the_file(small_set, content, match):
    file = small_set / ("nowhere.yaml" if content is None else "bad.yaml")
    if content is not None:
        file.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        resolve_data_yaml_overrides([f"data={file}"])
    assert "\n" not in str(err.value) and str(file.resolve()) in str(err.value)


def test_names_that_do_not_cover_the_labels_are_an_error_of_the_file(small_set):
    file = write_yaml(small_set / "data.yaml", {"train": "images/train", "val": "images/val", "names": ["a", "b"]})
    cfg = data_config_from_yaml(file)
    with pytest.raises(DataError, match=r"data.yaml: names has 2 classes but \d+ label line\(s\) of the train split "
                                        r"use a class id outside 0..1 \(first: .*\.txt:\d+: class \d+") as err:
        build_dataset(cfg, "train", imgsz=320)
    assert "\n" not in str(err.value)
    # the data=yolo data.root=DIR form keeps its fault-tolerant scan: those lines are dropped with warnings
    tolerant = build_dataset({"format": "yolo", "root": str(small_set)}, "train", imgsz=320, augment=False)
    assert tolerant.report.boxes_dropped["class out of range"] > 0
