"""COCOEvaluator, result conversion and the shared evaluation loop, on real COCO annotations."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_convert, box_iou

from ghostdet.data.letterbox import letterbox, letterbox_boxes
from ghostdet.eval import (
    STAT_KEYS,
    COCOEvaluator,
    evaluate_model,
    load_coco_gt,
    per_class_table,
    plot_pr_curve,
    predictions_to_coco,
    resolve_category_ids,
)
from ghostdet.utils.errors import DataError
from helpers import capture_figures, png_size_and_spread

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's, as pycocotools defines them


def _has_faster_coco_eval() -> bool:
    try:
        import faster_coco_eval  # noqa: F401
    except ImportError:
        return False
    return True


BACKENDS = ["pycocotools", pytest.param("faster-coco-eval", marks=pytest.mark.skipif(
    not _has_faster_coco_eval(), reason="faster-coco-eval not installed (pip install ghostdet[fast-eval])"))]


@pytest.fixture(scope="module")
def coco128_json(shared_data) -> Path:
    return shared_data / "coco128" / "annotations" / "instances_train2017.json"


@pytest.fixture(scope="module")
def coco128_gt(coco128_json):
    return load_coco_gt(coco128_json)


def _perfect_detections(coco_gt, score=1.0):
    """Every non-crowd ground-truth box as a detection (crowd regions are 'ignore' in COCO, never targets)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": score}
            for a in coco_gt.dataset["annotations"] if not a.get("iscrowd", 0)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_reproduces_official_cocoapi_fake_bbox_results(shared_data, backend):
    ref = shared_data / "cocoeval_ref"
    expected = json.loads((ref / "expected_stats.json").read_text())["bbox"]["stats"]
    metrics = COCOEvaluator(ref / "instances_val2014_100.json", backend=backend).evaluate(
        ref / "instances_val2014_fakebbox100_results.json")
    got = [metrics[k] for k in STAT_KEYS]
    if backend == "pycocotools":
        assert got == expected  # exactly: the evaluator adds nothing to COCOeval's arithmetic
    else:  # its C++ accumulation sums in another order
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_results_list_and_file_agree_and_input_is_not_mutated(shared_data, tmp_path):
    ref = shared_data / "cocoeval_ref"
    dets = json.loads((ref / "instances_val2014_fakebbox100_results.json").read_text())
    before = copy.deepcopy(dets)
    evaluator = COCOEvaluator(load_coco_gt(ref / "instances_val2014_100.json"))
    from_list = evaluator.evaluate(dets)
    assert dets == before  # pycocotools' loadRes adds keys in place; the evaluator must copy
    from_file = evaluator.evaluate(ref / "instances_val2014_fakebbox100_results.json")
    assert {k: from_list[k] for k in STAT_KEYS} == {k: from_file[k] for k in STAT_KEYS}
    assert from_list["per_class"] == from_file["per_class"]
    # per-class AP averages to the overall AP (COCO's AP is the mean over categories with ground truth)
    assert np.mean(list(from_list["per_class"].values())) == pytest.approx(from_list["AP"], abs=1e-12)
    assert np.mean(list(from_list["per_class_ap50"].values())) == pytest.approx(from_list["AP50"], abs=1e-12)
    assert evaluator.precision.shape == (101, 80)
    assert "maxDets=100 ] = 0.505" in evaluator.summary


@pytest.mark.parametrize("backend", BACKENDS)
def test_perfect_predictions_give_ap_1(coco128_gt, backend):
    metrics = COCOEvaluator(coco128_gt, backend=backend).evaluate(_perfect_detections(coco128_gt))
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "ARs", "ARm", "ARl"):
        assert metrics[key] == pytest.approx(1.0, abs=1e-12), key
    assert len(metrics["per_class"]) == 71  # categories present in coco128 (non-crowd or crowd)
    assert all(v == pytest.approx(1.0) for v in metrics["per_class"].values())


def _square_gt(shifts_by_class: dict[int, float], images_per_class: int = 5, size: float = 100.0):
    """One 100x100 box per image, one class per image group; returns (gt dict, detections shifted by dx px)."""
    images, anns, dets = [], [], []
    for cat_id, dx in shifts_by_class.items():
        for _ in range(images_per_class):
            img_id = len(images) + 1
            images.append({"id": img_id, "width": 640, "height": 480, "file_name": f"{img_id}.jpg"})
            box = [50.0 + img_id, 60.0, size, size]
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": cat_id, "bbox": box,
                         "area": size * size, "iscrowd": 0})
            dets.append({"image_id": img_id, "category_id": cat_id, "bbox": [box[0] + dx, box[1], size, size],
                         "score": 0.9})
    cats = [{"id": c, "name": f"class{c}"} for c in shifts_by_class]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def test_shifted_boxes_give_the_ap_their_iou_implies():
    shifts = {3: 20.0, 7: 5.0}  # px along x on 100 px boxes
    gt, dets = _square_gt(shifts)
    metrics = COCOEvaluator(gt).evaluate(dets)

    # independent expectation: a shifted box matches at every threshold <= its IoU with the GT box,
    # and there precision is 1 at every recall (one box per image, all matched); elsewhere AP is 0
    expected_per_class = {}
    for cat_id, dx in shifts.items():
        iou = box_iou(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), torch.tensor([[dx, 0.0, 100.0 + dx, 100.0]])).item()
        assert np.abs(IOU_THRESHOLDS - iou).min() > 1e-3  # no threshold sits on the IoU
        expected_per_class[f"class{cat_id}"] = float((IOU_THRESHOLDS <= iou).mean())
    assert expected_per_class == {"class3": 0.4, "class7": 0.9}  # IoU 0.667 and 0.905
    assert metrics["per_class"] == pytest.approx(expected_per_class, abs=1e-12)
    assert metrics["AP"] == pytest.approx(0.65, abs=1e-12)
    assert metrics["AP50"] == pytest.approx(1.0)
    assert metrics["AP75"] == pytest.approx(0.5)  # only the 5 px shift (IoU 0.905) passes 0.75
    assert metrics["APl"] == pytest.approx(metrics["AP"])  # 100x100 boxes are "large" (> 96^2)
    assert metrics["APs"] == -1 and metrics["APm"] == -1  # undefined, as pycocotools reports it


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_detections_give_zeros_without_crash(coco128_gt, coco128_json, tmp_path, backend):
    evaluator = COCOEvaluator(coco128_gt, backend=backend)
    empty_file = tmp_path / "empty.json"
    empty_file.write_text("[]")
    for dets in ([], empty_file):
        metrics = evaluator.evaluate(dets)
        assert all(metrics[k] == 0.0 for k in STAT_KEYS)  # coco128 has small, medium and large objects
        assert len(metrics["per_class"]) == 71 and set(metrics["per_class"].values()) == {0.0}
    assert "= 0.000" in evaluator.summary


def test_images_without_ground_truth(coco128_gt):
    background = [i["id"] for i in coco128_gt.dataset["images"] if not coco128_gt.getAnnIds(imgIds=[i["id"]])]
    assert sorted(background) == [250, 508]  # the two coco128 background images
    perfect = _perfect_detections(coco128_gt, score=0.9)
    evaluator = COCOEvaluator(coco128_gt)
    person_id = 1
    person_instances = sum(1 for d in perfect if d["category_id"] == person_id)

    # a false positive on a background image scored below every true positive costs nothing ...
    low_fp = {"image_id": 250, "category_id": person_id, "bbox": [10.0, 10.0, 50.0, 80.0], "score": 0.5}
    assert evaluator.evaluate(perfect + [low_fp])["per_class"]["person"] == pytest.approx(1.0)

    # ... one scored above them all caps the interpolated precision at N/(N+1) at every recall and threshold
    high_fp = dict(low_fp, score=1.0)
    metrics = evaluator.evaluate(perfect + [high_fp])
    assert metrics["per_class"]["person"] == pytest.approx(person_instances / (person_instances + 1), abs=1e-12)
    others = [v for k, v in metrics["per_class"].items() if k != "person"]
    assert metrics["AP"] == pytest.approx((sum(others) + person_instances / (person_instances + 1)) / 71, abs=1e-12)


def test_unknown_image_ids_raise_and_unknown_categories_warn(coco128_gt, caplog):
    evaluator = COCOEvaluator(coco128_gt)
    with pytest.raises(DataError, match="not in the ground truth"):
        evaluator.evaluate([{"image_id": 123456789, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}])
    with caplog.at_level(logging.WARNING):
        metrics = evaluator.evaluate([{"image_id": 9, "category_id": 0, "bbox": [0, 0, 10, 10], "score": 0.5}])
    assert metrics["AP"] == 0.0
    assert "not ground-truth categories" in caplog.text


def test_bad_inputs_raise_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such COCO annotation file"):
        COCOEvaluator(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        COCOEvaluator(broken)
    with pytest.raises(DataError, match="needs 'images'"):
        COCOEvaluator({"images": []})


def test_category_id_round_trip_with_non_contiguous_ids(coco128, coco128_gt):
    cat_ids = resolve_category_ids(coco128_gt)
    listed = [int(x) for x in (coco128 / "coco_category_ids.txt").read_text().split()]
    assert cat_ids == listed and cat_ids[-1] == 90 and len(cat_ids) == 80  # 1..90 with gaps
    assert resolve_category_ids(coco128_gt, listed, num_classes=80) == listed
    with pytest.raises(DataError, match="80 categories"):
        resolve_category_ids(coco128_gt, None, num_classes=20)
    with pytest.raises(DataError, match="not categories"):
        resolve_category_ids(coco128_gt, [0] + listed[1:])

    # ground truth -> contiguous labels in letterboxed input pixels (what a model predicts) -> COCO results
    cls_of = {c: i for i, c in enumerate(cat_ids)}
    predictions, metas = [], []
    for img in coco128_gt.dataset["images"]:
        anns = [a for a in coco128_gt.imgToAnns[img["id"]] if not a["iscrowd"]]
        xyxy = box_convert(torch.tensor([a["bbox"] for a in anns], dtype=torch.float64).reshape(-1, 4), "xywh", "xyxy")
        ratio = 320 / max(img["height"], img["width"])
        pad = (3.0, 17.0)
        predictions.append({"boxes": letterbox_boxes(xyxy, ratio, pad), "scores": torch.ones(len(anns)),
                            "labels": torch.tensor([cls_of[a["category_id"]] for a in anns])})
        metas.append({"image_id": img["id"], "orig_size": (img["height"], img["width"]), "ratio": ratio, "pad": pad})
    results = predictions_to_coco(predictions, metas, cat_ids)
    assert {r["category_id"] for r in results} == {a["category_id"] for a in coco128_gt.dataset["annotations"] if not a["iscrowd"]}
    assert max(r["category_id"] for r in results) > 80  # ids above the class count really occur
    metrics = COCOEvaluator(coco128_gt).evaluate(results)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-9)
    # the classic bug: class indices used as category ids; the evaluator says so rather than silently scoring ~0
    identity = predictions_to_coco(predictions, metas, None)
    assert COCOEvaluator(coco128_gt).evaluate(identity)["AP"] < 0.2


def test_non_square_letterbox_maps_back_exactly(coco128):
    image_file = coco128 / "images" / "train2017" / "000000000009.jpg"
    image = np.asarray(Image.open(image_file).convert("RGB"))
    h, w = image.shape[:2]  # 480 x 640
    orig_boxes = torch.tensor([[1.08, 187.69, 612.67, 473.53], [311.73, 4.31, 631.01, 232.99], [0.0, 0.0, w, h]])
    for new_shape in ((256, 416), (640, 320)):  # pad on one axis, then the other
        padded, ratio, pad = letterbox(image, new_shape)
        assert padded.shape[:2] == new_shape and (pad[0] > 0 or pad[1] > 0)
        preds = [{"boxes": letterbox_boxes(orig_boxes, ratio, pad), "scores": torch.tensor([0.9, 0.8, 0.7]),
                  "labels": torch.tensor([0, 3, 1])}]
        metas = [{"image_id": 9, "orig_size": (h, w), "ratio": ratio, "pad": pad}]
        results = predictions_to_coco(preds, metas, [1, 5, 9, 44])
        assert [r["image_id"] for r in results] == [9, 9, 9]
        assert [r["category_id"] for r in results] == [1, 44, 5]
        assert [r["score"] for r in results] == pytest.approx([0.9, 0.8, 0.7])
        expected_xywh = box_convert(orig_boxes, "xyxy", "xywh")
        np.testing.assert_allclose([r["bbox"] for r in results], expected_xywh.numpy(), atol=2e-3)


def _yolo_split_coco_gt(root: Path):
    """In-memory COCO ground truth of a YOLO-format split (class index = category id), as a YOLO dataset builds it."""
    names = (root / "classes.txt").read_text().splitlines()
    images, anns = [], []
    for image_id, image_file in enumerate(sorted((root / "images" / "train2017").glob("*.jpg"))):
        w, h = Image.open(image_file).size
        images.append({"id": image_id, "file_name": image_file.name, "width": w, "height": h})
        label_file = root / "labels" / "train2017" / f"{image_file.stem}.txt"
        lines = label_file.read_text().splitlines() if label_file.exists() else []
        for line in lines:
            c, cx, cy, bw, bh = map(float, line.split())
            box = [(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(c), "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
    return {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}


def test_yolo_split_through_in_memory_ground_truth(coco128, coco128_gt):
    gt = load_coco_gt(_yolo_split_coco_gt(coco128))
    assert len(gt.getImgIds()) == 128 and len(gt.getAnnIds()) == 929
    cat_ids = resolve_category_ids(gt, None, num_classes=80)
    assert cat_ids == list(range(80))  # YOLO data: class index is the category id

    # the official json's boxes, re-keyed to the YOLO image ids and class indices, are near-perfect detections
    stem_to_id = {i["file_name"]: i["id"] for i in gt.dataset["images"]}
    json_id_to_file = {i["id"]: i["file_name"] for i in coco128_gt.dataset["images"]}
    class_of = {c: i for i, c in enumerate(resolve_category_ids(coco128_gt))}
    dets = [{"image_id": stem_to_id[json_id_to_file[d["image_id"]]], "category_id": class_of[d["category_id"]],
             "bbox": d["bbox"], "score": d["score"]} for d in _perfect_detections(coco128_gt)]
    metrics = COCOEvaluator(gt).evaluate(dets)
    assert metrics["AP"] == pytest.approx(1.0, abs=1e-9)
    table = per_class_table(metrics, gt)
    assert table.splitlines()[1].split()[:3] == ["all", "128", "929"]


def test_pr_curve_plot(shared_data, tmp_path, monkeypatch):
    ref = shared_data / "cocoeval_ref"
    evaluator = COCOEvaluator(ref / "instances_val2014_100.json")
    metrics = evaluator.evaluate(ref / "instances_val2014_fakebbox100_results.json")
    figures = capture_figures(monkeypatch)
    path = plot_pr_curve(evaluator.precision, evaluator.category_names, tmp_path / "pr.png")
    ax = figures[-1].axes[0]
    valid = (evaluator.precision > -1).all(axis=0)
    *per_class, mean_line = ax.lines
    assert len(per_class) == valid.sum()  # one line per class with ground truth, then the mean
    np.testing.assert_allclose(mean_line.get_xdata(), np.linspace(0, 1, 101))
    np.testing.assert_allclose(mean_line.get_ydata(), evaluator.precision[:, valid].mean(axis=1))
    # the mean curve's label is the AP50 COCOeval reports (the mean of the 101-point precision over classes)
    label_ap50 = float(mean_line.get_label().split()[2])
    assert label_ap50 == pytest.approx(metrics["AP50"], abs=5e-4)
    size, spread = png_size_and_spread(path)
    assert size == (1350, 900) and spread > 5  # 9 x 6 inches at 150 dpi, not a blank canvas


class _ReplayDetector(torch.nn.Module):
    """A test double with the detector's predict() contract that returns prepared predictions batch by batch."""

    def __init__(self, batches, num_classes):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.batches = list(batches)
        self.num_classes = num_classes
        self.calls = []

    def predict(self, images, conf=0.25, iou=0.45, max_det=300):
        self.calls.append((tuple(images.shape), conf, iou, max_det))
        return self.batches.pop(0)


def test_evaluate_model_loop_maps_letterboxed_predictions_back(coco128, coco128_gt):
    """The shared loop: batches of letterboxed images + metas in, COCO metrics + speed + detections out."""
    ids = [9, 25, 30, 34, 36]
    sub = {"images": [i for i in coco128_gt.dataset["images"] if i["id"] in ids],
           "annotations": [a for a in coco128_gt.dataset["annotations"] if a["image_id"] in ids],
           "categories": coco128_gt.dataset["categories"]}
    gt = load_coco_gt(sub)
    cat_ids = resolve_category_ids(gt)
    cls_of = {c: i for i, c in enumerate(cat_ids)}
    loader, replies, batch = [], [], ([], [], [])
    for n, image_id in enumerate(ids):
        info = gt.imgs[image_id]
        image = np.asarray(Image.open(coco128 / "images" / "train2017" / info["file_name"]).convert("RGB"))
        padded, ratio, pad = letterbox(image, (320, 320))
        anns = [a for a in gt.imgToAnns[image_id] if not a["iscrowd"]]
        xyxy = box_convert(torch.tensor([a["bbox"] for a in anns]).reshape(-1, 4), "xywh", "xyxy")
        batch[0].append(torch.from_numpy(padded).permute(2, 0, 1).float() / 255)
        batch[1].append({"boxes": letterbox_boxes(xyxy, ratio, pad), "scores": torch.full((len(anns),), 0.8),
                         "labels": torch.tensor([cls_of[a["category_id"]] for a in anns])})
        batch[2].append({"image_id": image_id, "file": info["file_name"], "orig_size": image.shape[:2],
                         "ratio": ratio, "pad": pad})
        if len(batch[0]) == 2 or n == len(ids) - 1:
            loader.append((torch.stack(batch[0]), torch.zeros(0, 6), batch[2]))
            replies.append(batch[1])
            batch = ([], [], [])
    model = _ReplayDetector(replies, num_classes=80)
    result = evaluate_model(model, loader, gt, cat_ids, conf=0.001, iou=0.7, max_det=300, progress=False)
    assert model.calls == [((2, 3, 320, 320), 0.001, 0.7, 300)] * 2 + [((1, 3, 320, 320), 0.001, 0.7, 300)]
    assert result.metrics["AP"] == pytest.approx(1.0, abs=1e-9)
    assert result.num_images == 5 and {d["image_id"] for d in result.detections} <= set(ids)
    assert set(result.speed) == {"preprocess", "inference", "postprocess"} and all(v >= 0 for v in result.speed.values())
    assert result.precision.shape == (101, 80) and len(result.names) == 80
