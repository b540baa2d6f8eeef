"""Pascal VOC / LabelImg xml (``data=voc``): the real raccoon devkit, several devkit years under one root, LabelImg
folders split by ``val_fraction``, difficult objects as ignore regions, 1-based boxes, and every xml fault named."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ghostdet.data import build_dataset, collate_fn
from ghostdet.data.voc import VOC_CLASSES, parse_voc_xml
from ghostdet.utils.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ helpers
def voc_xml(filename: str, size, objects=(), tail: str = "") -> str:
    """A LabelImg-style annotation. objects: dicts with name, box (xmin, ymin, xmax, ymax texts or None for no
    <bndbox>), optional difficult / truncated."""
    parts = [f"<annotation>\n<folder>images</folder>\n<filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for obj in objects:
        box = obj.get("box")
        bnd = "" if box is None else ("<bndbox>" + "".join(f"<{k}>{v}</{k}>" for k, v in
                                                         zip(("xmin", "ymin", "xmax", "ymax"), box)) + "</bndbox>")
        parts.append(f"<object>\n<name>{obj['name']}</name>\n<pose>Unspecified</pose>\n"
                     f"<truncated>{obj.get('truncated', 0)}</truncated>\n<difficult>{obj.get('difficult', 0)}</difficult>\n"
                     f"{bnd}\n</object>")
    parts.append(tail + "</annotation>\n")
    return "\n".join(parts)


def write_image(path: Path, w: int = 100, h: int = 80, seed: int = 0, exif_orientation: int | None = None,
                pixels: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = pixels if pixels is not None else np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    kwargs = {}
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(img).save(path, quality=95, **kwargs)


def write_devkit(root: Path, items: dict, lists: dict) -> Path:
    """items: id -> (xml text or None, (w, h) or None for no image); lists: name -> [ids]."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for k, (image_id, (xml, size)) in enumerate(items.items()):
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        if size is not None:
            write_image(root / "JPEGImages" / f"{image_id}.jpg", *size, seed=k)
    for name, ids in lists.items():
        (root / "ImageSets" / "Main" / f"{name}.txt").write_text("\n".join(ids) + "\n")
    return root


def obj(name="cat", box=(11, 21, 40, 60), **kw) -> dict:
    return dict(name=name, box=box, **kw)


def cfg_for(root: Path, **kw) -> dict:
    return {"format": "voc", "root": str(root), "train": "train", "val": "val", "names": None, "val_fraction": 0.2,
            "split_seed": 0, "cache": False, **kw}


def problems_of(report, text: str) -> list[str]:
    return [p for p in report.problems if text in p]


# ------------------------------------------------------------------------------------------------ raccoon
def test_raccoon_devkit_lists_names_and_one_based_boxes(raccoon, caplog):
    cfg = cfg_for(raccoon, cache=True)  # the shared folder is read-only: the cache must silently not be written
    before = sorted(p.name for p in raccoon.rglob("*"))
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        train = build_dataset(cfg, "train", imgsz=128)
        val = build_dataset(cfg, "val", imgsz=128)
    assert sorted(p.name for p in raccoon.rglob("*")) == before
    assert (len(train), len(val)) == (160, 40)
    assert train.names == val.names == ["raccoon"] and train.category_ids is None
    assert any("data.names not set" in r.message and "['raccoon']" in r.message for r in caplog.records)
    assert train.report.boxes_kept + val.report.boxes_kept == 217
    assert train.report.problems == [] and val.report.problems == []
    assert "xml problems" not in train.report.summary()
    files = {Path(r.file).stem for r in train.records} | {Path(r.file).stem for r in val.records}
    assert len(files) == 200
    rec = next(r for r in train.records if Path(r.file).stem == "raccoon-1")
    assert (rec.width, rec.height) == (650, 417)
    np.testing.assert_array_equal(rec.boxes, [[80, 87, 522, 408]])  # xml 81 88 522 408, 1-based
    gt = val.coco_gt()
    assert len(gt.imgs) == 40 and len(gt.anns) == 44 and not any(a["iscrowd"] for a in gt.anns.values())
    sample = train[0]
    assert sample["image"].shape == (128, 128, 3) and (sample["labels"] == 0).all()


def test_check_data_on_raccoon_renders_samples(project_root, raccoon, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "tools/check_data.py", "data=voc", f"data.root={raccoon}", "imgsz=128",
                           "train_samples=2", "val_samples=2", f"hydra.run.dir={out}"], cwd=project_root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train: 160/160 images used" in proc.stdout and "val: 40/40 images used" in proc.stdout
    assert "no problems found" in proc.stdout and "raccoon" in proc.stdout
    assert (out / "train_samples.png").stat().st_size > 1000 and (out / "val_samples.png").is_file()


# ------------------------------------------------------------------------------------------------ faults
HOSTILE = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'
           '<annotation><size><width>100</width><height>80</height></size>'
           '<object><name>&lol2;</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox>'
           '</object></annotation>\n')


def test_every_xml_fault_is_named_and_counted(tmp_path, caplog):
    good = voc_xml("good.jpg", (100, 80), [obj()])
    items = {
        "good": (good, (100, 80)),
        "malformed": (voc_xml("m.jpg", (100, 80), [obj()]).replace("</annotation>", "</annot>"), (100, 80)),
        "hostile": (HOSTILE, (100, 80)),
        "notvoc": ("<labels><object/></labels>", (100, 80)),
        "background": (voc_xml("b.jpg", (100, 80)), (100, 80)),
        "objects": (voc_xml("o.jpg", (100, 80), [
            obj(box=None),                            # no <bndbox>
            obj(box=("a", "2", "30", "40")),          # not numbers
            obj(box=("10", "10", None, "40")),        # a missing coordinate element
            obj(box=(200, 200, 250, 250)),            # entirely outside: dropped
            obj(box=(80, 60, 130, 100)),              # partly outside: clipped, kept
            obj(name="dog", box=(5, 5, 20, 20)),      # class not in data.names
            obj(name="", box=(5, 5, 20, 20)),         # no name
            obj(box=(30, 30, 10, 50)),                # negative width
            obj(box=("nan", 1, 5, 5)),                # non-finite
        ]), (100, 80)),
        "resized": (voc_xml("r.jpg", (200, 160), [obj()]), (100, 80)),  # <size> disagrees with the file
        "noimage": (good, None),                                          # xml without an image
        "noxml": (None, (100, 80)),                                       # listed image without an xml
        "nothing": (None, None),                                          # listed, neither exists
    }
    root = write_devkit(tmp_path / "kit", items, {"train": [*items, "good"], "val": ["good"]})
    (root / "JPEGImages" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "Annotations" / "broken.xml").write_text(good)
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join([*items, "good", "broken", ""]) + "\n")
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        ds = build_dataset(cfg_for(root, names=["cat"]), "train", imgsz=128)
    r = ds.report
    assert r.images_found == len(items) + 1  # the repeated 'good' is one image
    assert dict(r.images_skipped) == {"malformed xml": 3, "missing image": 2, "no xml": 1, "unreadable": 1}
    assert dict(r.boxes_dropped) == {"malformed": 4, "unknown class": 1, "outside image": 1, "zero area": 1,
                                     "non-finite": 1}
    assert r.json_problems == {"duplicate id": 1, "size mismatch": 1}
    assert r.images_used == 4 and r.backgrounds == 1 and r.boxes_kept == 3 and r.boxes_clipped == 1
    kit = str(root)
    lines = "\n".join(r.problems)
    assert f"{kit}/JPEGImages/hostile.jpg: image skipped, {kit}/Annotations/hostile.xml: it declares a DOCTYPE" in lines
    assert f"{kit}/Annotations/malformed.xml: not well-formed xml (mismatched tag, line" in lines
    assert "notvoc.xml: its root element is <labels>" in lines
    assert f"{kit}/Annotations/noimage.xml: image skipped, listed in {kit}/ImageSets/Main/train.txt; " in lines
    assert f"no annotation {kit}/Annotations/noxml.xml (listed in" in lines
    assert "no bndbox" not in lines and problems_of(r, "object without <bndbox>")
    assert problems_of(r, "objects.xml:")[0].startswith(f"{kit}/Annotations/objects.xml:")  # file:line
    unknown = problems_of(r, "class 'dog' not in data.names ['cat']")
    assert len(unknown) == 1 and unknown[0].startswith(f"{kit}/Annotations/objects.xml:")
    assert problems_of(r, "<size> 200x160 differs from the image resized.jpg (100x80); using the image's size")
    assert problems_of(r, "not numbers: {'xmin': 'a'")
    resized = next(rec for rec in ds.records if rec.file.endswith("resized.jpg"))
    assert (resized.width, resized.height) == (100, 80)  # the image is trusted
    objects = next(rec for rec in ds.records if rec.file.endswith("objects.jpg"))
    np.testing.assert_array_equal(objects.boxes, [[79, 59, 100, 80]])  # clipped
    assert "xml problems: duplicate id 1, size mismatch 1" in r.summary()
    assert any("dog" in rec.message for rec in caplog.records if rec.levelno == logging.WARNING)
    batch = collate_fn([ds[i] for i in range(len(ds))])  # every kept record loads
    assert batch[0].shape[0] == 4


def test_hostile_xml_never_expands_entities(tmp_path):
    from ghostdet.data.voc import XmlRefused

    for k, text in enumerate([HOSTILE, HOSTILE.replace('<?xml version="1.0"?>\n', "")]):
        path = tmp_path / f"h{k}.xml"
        path.write_text(text)
        with pytest.raises(XmlRefused, match="DOCTYPE"):
            parse_voc_xml(path)
    utf16 = tmp_path / "utf16.xml"
    utf16.write_bytes(HOSTILE.replace('version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"))
    with pytest.raises(XmlRefused, match="DOCTYPE"):
        parse_voc_xml(utf16)
    external = tmp_path / "ext.xml"
    external.write_text(f'<!DOCTYPE a SYSTEM "file://{tmp_path}/h0.xml"><annotation/>')
    with pytest.raises(XmlRefused):
        parse_voc_xml(external)
    fine = tmp_path / "fine.xml"
    fine.write_text(voc_xml("x.jpg", (10, 10), [obj(box=(1, 1, 5, 5))]))
    ann = parse_voc_xml(fine)
    assert ann.size == (10, 10) and ann.objects[0].name == "cat" and ann.objects[0].line > 1


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_rotated_photos_boxes_refer_to_the_upright_image(tmp_path, orientation):
    """An xml sized like the upright photo keeps its boxes; one sized like the stored pixels (a tool that ignored
    EXIF) has them mapped onto the upright image, with a report line. Both land on the object."""
    upright = np.full((80, 120, 3), 40, np.uint8)
    upright[20:50, 70:110] = (250, 30, 30)  # the object, upright pixels x 70..110, y 20..50
    turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]  # stored = upright undone
    stored = np.asarray(Image.fromarray(upright).transpose(turn))
    root = tmp_path / "folder"
    write_image(root / "upright.jpg", pixels=stored, exif_orientation=orientation)
    write_image(root / "stored.jpg", pixels=stored, exif_orientation=orientation)
    (root / "upright.xml").write_text(voc_xml("upright.jpg", (120, 80), [obj(box=(71, 21, 110, 50))]))
    ys, xs = np.nonzero(stored[..., 0] > 150)  # the object where the camera stored it
    stored_box = (xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1)
    (root / "stored.xml").write_text(voc_xml("stored.jpg", (80, 120), [obj(box=stored_box)]))
    ds = build_dataset(cfg_for(root, val_fraction=0.0), "train", imgsz=128, augment=False)
    by_name = {Path(r.file).stem: r for r in ds.records}
    for name in ("upright", "stored"):
        rec = by_name[name]
        assert (rec.height, rec.width) == (80, 120), name
        np.testing.assert_allclose(rec.boxes, [[70, 20, 110, 50]], atol=1, err_msg=name)
    assert ds.report.json_problems == {"exif rotated": 1}
    assert problems_of(ds.report, "stored.xml: <size> 80x120 is the stored size of this EXIF-rotated photo")
    img = ds.load_image(list(by_name).index("stored"))
    assert np.abs(img[25:45, 75:105].astype(int) - (250, 30, 30)).max() < 40


# ------------------------------------------------------------------------------------------------ layouts
def test_two_devkit_years_under_one_root_like_yolox(tmp_path):
    from hydra import compose, initialize_config_dir

    root = tmp_path / "VOCdevkit"
    write_devkit(root / "VOC2007", {f"00000{i}": (voc_xml("x", (100, 80), [obj("dog"), obj("person", (50, 10, 90, 70))]),
                                                  (100, 80)) for i in range(1, 7)},
                 {"trainval": ["000001", "000002", "000003", "000004"], "test": ["000005", "000006"]})
    write_devkit(root / "VOC2012", {f"2008_00000{i}": (voc_xml("x", (100, 80), [obj("cat", difficult=i % 2)]),
                                                       (100, 80)) for i in range(1, 4)},
                 {"trainval": ["2008_000001", "2008_000002", "2008_000003"]})
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=voc", f"data.root={tmp_path}", "data.train=[2007/trainval,2012/trainval]",
                                          "data.val=2007/test", "data.cache=false"])
    train = build_dataset(cfg.data, "train", imgsz=128)
    val = build_dataset(cfg.data, "val", imgsz=128)
    assert train.names == val.names == list(VOC_CLASSES)  # a VOC devkit: the 20 classes
    assert len(train) == 7 and len(val) == 2
    assert train.report.boxes_kept == 4 * 2 + 1 and train.report.crowd_kept == 2  # 2008_000001 and _3 difficult
    assert [r.image_id for r in train.records] == list(range(7))  # 2007 and 2012 ids mixed: indices
    assert [r.image_id for r in val.records] == [5, 6]  # all numeric: the numbers, as in VOC2007
    assert {Path(r.file).parent.parent.name for r in train.records} == {"VOC2007", "VOC2012"}
    assert VOC_CLASSES[train.records[-2].labels[0]] == VOC_CLASSES[train.records[-1].crowd_labels[0]] == "cat"
    # the year may also be spelled VOC2007, and the root may be the VOCdevkit folder itself
    same = build_dataset(dict(cfg_for(root), train=["VOC2007/trainval", "2012/trainval"]), "train", imgsz=128)
    assert [r.file for r in same.records] == [r.file for r in train.records]
    with pytest.raises(ConfigError, match=r"name the year in data.train, e.g. data.train=2007/train"):
        build_dataset(cfg_for(root), "train")
    with pytest.raises(DataError, match="no devkit folder '2010'"):
        build_dataset(cfg_for(root, train="2010/trainval"), "train")
    with pytest.raises(DataError, match=r"ImageSets/Main/val.txt not found \(.*has: test, trainval\)"):
        build_dataset(cfg_for(root, val="2007/val"), "val")
    one_year = build_dataset(cfg_for(root / "VOC2007", train="trainval"), "train")  # a VOC2007 folder: 20 classes
    assert one_year.names == list(VOC_CLASSES) and len(one_year) == 4


def write_labelimg(root: Path, n: int, sibling: bool = False) -> None:
    images = root / "images" if sibling else root
    xmls = root / "annotations" if sibling else root
    xmls.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_image(images / f"photo_{i:02d}.jpg", 64, 48, seed=i)
        name = ("zebra", "ant", "moth")[i % 3]
        (xmls / f"photo_{i:02d}.xml").write_text(voc_xml(f"photo_{i:02d}.jpg", (64, 48), [obj(name, (3, 4, 30, 40))]))


@pytest.mark.parametrize("sibling", [False, True])
def test_labelimg_folder_split_by_val_fraction(tmp_path, caplog, sibling):
    root = tmp_path / "labelimg"
    write_labelimg(root, 10, sibling)
    (root / "annotations" if sibling else root).joinpath("orphan.xml").write_text(voc_xml("orphan.jpg", (64, 48)))
    cfg = cfg_for(root, val_fraction=0.3, split_seed=1)
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        train, val = build_dataset(cfg, "train", imgsz=64), build_dataset(cfg, "val", imgsz=64)
    stems = lambda ds: [Path(r.file).stem for r in ds.records]  # noqa: E731
    assert len(train) == 7 and len(val) == 3
    assert sorted(stems(train) + stems(val)) == [f"photo_{i:02d}" for i in range(10)]
    assert train.names == val.names == ["ant", "moth", "zebra"]  # sorted, from every xml of the folder
    warned = [r.message for r in caplog.records if "data.names not set" in r.message]
    assert warned and "['ant', 'moth', 'zebra']" in warned[0]
    assert train.report.orphan_labels == 1 and problems_of(train.report, "orphan.xml: annotation without an image")
    again = build_dataset(cfg, "val", imgsz=64)
    assert stems(again) == stems(val)  # deterministic
    other = build_dataset(dict(cfg, split_seed=2), "val", imgsz=64)
    assert stems(other) != stems(val) and len(other) == 3
    with pytest.raises(ConfigError, match="must be train or val"):
        build_dataset(dict(cfg, train="trainval"), "train")
    with pytest.raises(ConfigError, match="val_fraction"):
        build_dataset(dict(cfg, val_fraction=1.5), "train")


def test_labelimg_folder_with_id_lists_and_unlabelled_images(tmp_path):
    root = tmp_path / "labelimg"
    write_labelimg(root, 6)
    write_image(root / "unlabelled.jpg", 64, 48)  # no xml yet: skipped, not a background
    (root / "val_ids.txt").write_text("photo_01\nphoto_04\n")
    (root / "train_ids.txt").write_text("# my split\nphoto_00\nphoto_02\nphoto_03 1\nphoto_05\nunlabelled\n")
    cfg = cfg_for(root, train="train_ids.txt", val=str(root / "val_ids.txt"), names=["zebra", "ant", "moth"])
    train, val = build_dataset(cfg, "train", imgsz=64), build_dataset(cfg, "val", imgsz=64)
    assert [Path(r.file).stem for r in val.records] == ["photo_01", "photo_04"]
    assert len(train) == 4 and train.report.images_skipped == {"no xml": 1}
    assert train.names == ["zebra", "ant", "moth"] and [r.labels.tolist() for r in val.records] == [[1], [1]]
    plain = build_dataset(cfg_for(root, val_fraction=0.0), "train", imgsz=64)
    assert len(plain) == 6 and problems_of(plain.report, "unlabelled.jpg: image skipped, no annotation")
    with pytest.raises(DataError, match="id list .*missing.txt not found"):
        build_dataset(dict(cfg, train="missing.txt"), "train")


def test_missing_root_and_empty_folder_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="dataset root .*nowhere not found: expected .*JPEGImages") as err:
        build_dataset(cfg_for(tmp_path / "nowhere"), "train")
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images in"):
        build_dataset(cfg_for(tmp_path / "empty"), "train")


# ------------------------------------------------------------------------------------------------ difficult, boxes
def test_difficult_objects_are_ignore_regions_and_iscrowd_in_the_ground_truth(tmp_path):
    xml = voc_xml("a.jpg", (100, 80), [obj(box=(11, 21, 40, 60)), obj("dog", (50, 10, 90, 70), difficult=1, truncated=1)])
    root = write_devkit(tmp_path / "kit", {"000007": (xml, (100, 80))}, {"train": ["000007"], "val": ["000007"]})
    ds = build_dataset(cfg_for(root, names=["cat", "dog"]), "val", imgsz=128)
    rec = ds.records[0]
    np.testing.assert_array_equal(rec.boxes, [[10, 20, 40, 60]])
    np.testing.assert_array_equal(rec.crowd_boxes, [[49, 9, 90, 70]])
    assert rec.labels.tolist() == [0] and rec.crowd_labels.tolist() == [1] and rec.image_id == 7
    assert "1 difficult for eval" in ds.report.summary()
    sample = ds[0]
    assert len(sample["boxes"]) == 1 and len(sample["crowd_boxes"]) == 1
    _, targets, _, ignore = collate_fn([sample])
    assert targets.shape == (1, 6) and ignore.shape == (1, 5)
    gt = ds.coco_gt()
    anns = sorted(gt.anns.values(), key=lambda a: a["iscrowd"])
    assert [(a["category_id"], a["iscrowd"]) for a in anns] == [(0, 0), (1, 1)]
    np.testing.assert_allclose(anns[1]["bbox"], [49, 9, 41, 61])
    train = build_dataset(cfg_for(root, names=["cat", "dog"]), "train", imgsz=128, aug_cfg={"mosaic": 0.0})
    s = train[0]
    assert len(s["crowd_boxes"]) == 1 and (s["labels"] == 0).all()  # the difficult dog is never a target


def test_one_based_pixel_boxes_become_zero_based(tmp_path):
    xml = voc_xml("a.jpg", (100, 80), [obj(box=(1, 1, 100, 80)), obj(box=("10.5", "20.5", "30.5", "40.5")),
                                       obj(box=(0, 0, 8, 8))])
    root = write_devkit(tmp_path / "kit", {"a": (xml, (100, 80))}, {"train": ["a"]})
    ds = build_dataset(cfg_for(root, names=["cat"]), "train", imgsz=128, augment=False)
    np.testing.assert_array_equal(ds.records[0].boxes, [[0, 0, 100, 80], [9.5, 19.5, 30.5, 40.5], [0, 0, 8, 8]])
    assert ds.report.boxes_clipped == 0 and ds.report.problems == []  # a 0 written by other tools: 1 px, not reported


def test_scan_cache_is_written_reused_and_invalidated(tmp_path):
    root = write_devkit(tmp_path / "kit", {"a": (voc_xml("a.jpg", (100, 80), [obj()]), (100, 80))}, {"train": ["a"]})
    cfg = cfg_for(root, cache=True, names=["cat"])
    first = build_dataset(cfg, "train", augment=False)
    assert not first.report.from_cache and (root / "train.ghostdet.cache").is_file()
    second = build_dataset(cfg, "train", augment=False)
    assert second.report.from_cache and second.report.summary() == first.report.summary() + " [from cache]"
    np.testing.assert_array_equal(second.records[0].boxes, first.records[0].boxes)
    xml = root / "Annotations" / "a.xml"
    xml.write_text(voc_xml("a.jpg", (100, 80), [obj(), obj(box=(50, 10, 90, 70), difficult=1)]))
    os.utime(xml, ns=(xml.stat().st_mtime_ns + 10**9,) * 2)
    third = build_dataset(cfg, "train", augment=False)
    assert not third.report.from_cache and third.report.crowd_kept == 1
    assert build_dataset(dict(cfg, names=["cat", "dog"]), "train").report.from_cache is False  # names changed
