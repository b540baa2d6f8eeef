"""Precision / recall / F1, their curves, the confusion matrix (ghostdet/eval/pr_metrics.py) on hand-made cases with
known answers, AP50 against pycocotools, and the plots (ghostdet/eval/plots.py) as files a user opens."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from PIL import Image

from ghostdet.eval.plots import plot_confusion_matrices, plot_labels, plot_pr_curves, plot_val_batch
from ghostdet.eval.pr_metrics import PRMetrics
from ghostdet.utils.errors import ConfigError

from helpers import png_size_and_spread

# one class, two objects; four detections: a hit, a miss in empty space, a hit (IoU 0.82), a duplicate of the first
GT = [[0, 0, 10, 10], [20, 20, 30, 30]]
DETS = [[0, 0, 10, 10], [50, 50, 60, 60], [21, 20, 31, 30], [1, 0, 11, 10]]
SCORES = [0.9, 0.8, 0.3, 0.2]


def one_class_result(conf):
    m = PRMetrics(1, ["thing"])
    m.add(DETS, SCORES, [0, 0, 0, 0], GT, [0, 0])
    return m.compute(conf)


@pytest.mark.parametrize("conf, p, r, f1", [
    (0.25, 2 / 3, 1.0, 0.8),       # hit, miss, hit
    (0.5, 0.5, 0.5, 0.5),          # hit, miss
    (0.1, 0.5, 1.0, 2 / 3),        # + the duplicate, a false positive (its object is taken)
    (0.95, 0.0, 0.0, 0.0),         # nothing detected: precision 0, not 1
    (0.9, 1.0, 0.5, 2 / 3),        # score >= conf: the 0.9 detection counts
])
def test_precision_recall_f1_at_a_confidence(conf, p, r, f1):
    result = one_class_result(conf)
    assert result.summary() == pytest.approx({"precision": p, "recall": r, "F1": f1})
    assert result.per_class()["thing"]["instances"] == 2


def test_curves_equal_direct_counts_and_the_pr_curve_is_cocos():
    result = one_class_result(0.25)
    for k in (0, 150, 299, 300, 500, 850, 899, 900, 999):  # thresholds k / 999 on both sides of every score
        t = result.thresholds[k]
        direct = one_class_result(t)
        assert result.r_curve[0, k] == pytest.approx(direct.recall)
        assert result.f1_curve[0, k] == pytest.approx(direct.f1)
        if t <= 0.9:
            assert result.p_curve[0, k] == pytest.approx(direct.precision)
        else:  # above the highest score a class has no precision (the curve ends there)
            assert np.isnan(result.p_curve[0, k]) and direct.precision == 0
    # ranked: TP (P 1, R .5), FP (.5, .5), TP (2/3, 1), FP (.5, 1): envelope 1 up to recall .5, then 2/3
    expected = np.r_[np.ones(51), np.full(50, 2 / 3)]
    np.testing.assert_allclose(result.pr_curve[0], expected)
    assert result.ap50[0] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert result.best_f1_conf == pytest.approx(result.thresholds[np.argmax(result.f1_curve[0])])
    assert 0.2 < result.best_f1_conf <= 0.3  # F1 0.8 between the duplicate's score and the second hit's


def test_detections_take_objects_in_score_order_like_cocoeval():
    m = PRMetrics(1)
    # the higher score with IoU 0.6 takes the object; the better-fitting but lower-scored one is a false positive
    m.add([[0, 0, 10, 6], [0, 0, 10, 9]], [0.9, 0.8], [0, 0], [[0, 0, 10, 10]], [0])
    assert m.compute(0.85).precision == 1.0 and m.compute(0.5).precision == 0.5
    # each detection takes the free object it overlaps most (IoU 0.8 over 0.5), leaving the other to the next
    m = PRMetrics(1)
    m.add([[0, 0, 10, 5], [0, 0, 10, 10]], [0.9, 0.8], [0, 0], [[0, 0, 10, 10], [0, 0, 10, 4]], [0, 0])
    assert m.compute(0.5).summary() == pytest.approx({"precision": 1.0, "recall": 1.0, "F1": 1.0})
    m = PRMetrics(1)  # IoU exactly 0.5 is a hit (COCO's >=)
    m.add([[0, 0, 10, 5]], [0.9], [0], [[0, 0, 10, 10]], [0])
    assert m.compute(0.5).precision == 1.0


def confusion_case() -> PRMetrics:
    m = PRMetrics(2, ["cat", "dog"])
    a, b = [0, 0, 100, 100], [200, 200, 300, 300]
    # image 1: a cat A and a dog B; a dog detection on A (confused), a dog on B (right), a cat in empty space (false),
    # a cat on A with IoU 0.7 (A is already paired with the IoU-1 dog: a false detection here; a TP for P/R), a low dog
    m.add([a, b, [400, 400, 450, 450], [0, 0, 100, 70], b], [0.9, 0.8, 0.7, 0.6, 0.2], [1, 1, 0, 0, 1],
          [a, b], [0, 1])
    m.add(np.zeros((0, 4)), [], [], [[0, 0, 50, 50]], [0])     # image 2: a cat, missed
    m.add([[10, 10, 60, 60]], [0.5], [1], np.zeros((0, 4)), [])  # image 3: nothing there, a dog detected
    return m


def test_confusion_matrix_with_background_row_and_column():
    result = confusion_case().compute(0.25)
    # [predicted, true], order cat, dog, background
    np.testing.assert_array_equal(result.confusion, [[0, 0, 2],
                                                     [1, 1, 1],
                                                     [1, 0, 0]])
    np.testing.assert_allclose(result.normalized_confusion(), [[0, 0, 2 / 3],
                                                               [0.5, 1, 1 / 3],
                                                               [0.5, 0, 0]])
    # P/R per class: cat 1 hit of 2 detections and 2 objects; dog 1 hit of 3 detections, 1 object
    assert result.per_class()["cat"] == pytest.approx({"instances": 2, "precision": 0.5, "recall": 0.5, "F1": 0.5,
                                                       "AP50": result.ap50[0]})
    assert result.per_class_precision[1] == pytest.approx(1 / 3) and result.per_class_recall[1] == 1.0
    assert result.summary() == pytest.approx({"precision": 5 / 12, "recall": 0.75, "F1": 0.5})


def test_batches_and_ignore_regions():
    per_image = confusion_case().compute(0.25)
    m = PRMetrics(2, ["cat", "dog"])
    a, b = [0, 0, 100, 100], [200, 200, 300, 300]
    preds = [{"boxes": torch.tensor([a, b, [400, 400, 450, 450], [0, 0, 100, 70], b], dtype=torch.float32),
              "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.2]), "labels": torch.tensor([1, 1, 0, 0, 1])},
             {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
             {"boxes": torch.tensor([[10.0, 10, 60, 60]]), "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}]
    targets = torch.tensor([[0, 0, *a], [0, 1, *b], [1, 0, 0, 0, 50, 50]], dtype=torch.float32)
    m.add_batch(preds, targets, torch.zeros(0, 5))
    batched = m.compute(0.25)
    np.testing.assert_array_equal(batched.confusion, per_image.confusion)
    assert batched.summary() == per_image.summary()
    # a crowd region over the empty-space cat detection: neither a true nor a false positive any more
    m = PRMetrics(2, ["cat", "dog"])
    m.add_batch(preds, targets, torch.tensor([[0, 390, 390, 460, 460]], dtype=torch.float32))
    crowd = m.compute(0.25)
    assert crowd.per_class_precision[0] == 1.0 and crowd.confusion[0, 2] == 1


def test_ap50_equals_pycocotools(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    m = PRMetrics(3)
    images, anns, dets = [], [], []
    for image_id in range(1, 21):
        images.append({"id": image_id, "width": 640, "height": 480})
        xy = rng.uniform(0, 400, (rng.integers(0, 6), 2))
        gt = np.c_[xy, xy + rng.uniform(20, 200, (len(xy), 2))]
        gl = rng.integers(0, 3, len(gt))
        jitter = gt + rng.normal(0, 12, gt.shape)
        fp_xy = rng.uniform(0, 400, (rng.integers(0, 4), 2))
        boxes = np.r_[jitter, np.c_[fp_xy, fp_xy + 60]]
        confused = np.where(rng.random(len(gl)) < 0.8, gl, rng.integers(0, 3, len(gl)))
        labels = np.r_[confused, rng.integers(0, 3, len(fp_xy))]
        scores = rng.random(len(boxes))
        m.add(boxes, scores, labels, gt, gl)
        for box, label in zip(gt, gl):
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": int(label), "iscrowd": 0,
                         "bbox": [*box[:2], *(box[2:] - box[:2])], "area": float(np.prod(box[2:] - box[:2]))})
        dets += [{"image_id": image_id, "category_id": int(label), "score": float(score),
                  "bbox": [*box[:2], *(box[2:] - box[:2])]} for box, label, score in zip(boxes, labels, scores)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": i} for i in range(3)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate(), ev.accumulate(), ev.summarize()
    result = m.compute()
    assert result.ap50[result.evaluated].mean() == pytest.approx(ev.stats[1], abs=1e-9)


def test_bad_input_is_refused():
    m = PRMetrics(2)
    with pytest.raises(ConfigError, match="a detection of class 5 outside 0..1"):
        m.add([[0, 0, 1, 1]], [0.5], [5], np.zeros((0, 4)), [])
    with pytest.raises(ConfigError, match="3 class names for 2 classes"):
        PRMetrics(2, ["a", "b", "c"])


# ------------------------------------------------------------------------------------------------ plots
def test_every_plot_is_a_readable_image(tmp_path, coco128):
    from ghostdet.data import build_dataset

    result = confusion_case().compute(0.25)
    paths = {**plot_pr_curves(result, tmp_path), **plot_confusion_matrices(result, tmp_path)}
    assert sorted(p.name for p in paths.values()) == ["F1_curve.png", "PR_curve.png", "P_curve.png", "R_curve.png",
                                                      "confusion_matrix.png", "confusion_matrix_normalized.png"]
    for path in paths.values():
        (width, height), spread = png_size_and_spread(path)
        assert width >= 600 and height >= 500 and spread > 10, path
    dataset = build_dataset({"format": "yolo", "root": str(coco128), "data_yaml": "coco128.yaml"}, "val", imgsz=320)
    labels = plot_labels(dataset, tmp_path / "labels.jpg")
    with Image.open(labels) as img:
        assert img.format == "JPEG" and img.size[0] > 1000
    images = torch.rand(3, 3, 64, 96)
    targets = torch.tensor([[0, 1, 5, 5, 40, 40], [2, 0, 10, 10, 90, 60]], dtype=torch.float32)
    preds = [{"boxes": torch.tensor([[6.0, 5, 41, 42], [50, 10, 20, 30]]), "scores": torch.tensor([0.9, 0.3]),
              "labels": torch.tensor([1, 0])}, {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                                                "labels": torch.zeros(0, dtype=torch.int64)},
             {"boxes": torch.tensor([[10.0, 10, 90, 60]]), "scores": torch.tensor([0.1]), "labels": torch.tensor([0])}]
    batch = plot_val_batch(images, targets, preds, ["cat", "dog"], tmp_path / "val_batch0.jpg")
    with Image.open(batch) as img:
        assert img.format == "JPEG" and img.size[0] >= 1000


def test_plots_of_an_empty_evaluation(tmp_path):
    result = PRMetrics(3).compute(0.25)
    assert result.summary() == {"precision": 0.0, "recall": 0.0, "F1": 0.0}
    for path in [*plot_pr_curves(result, tmp_path).values(), *plot_confusion_matrices(result, tmp_path).values()]:
        assert png_size_and_spread(path)[1] > 0
