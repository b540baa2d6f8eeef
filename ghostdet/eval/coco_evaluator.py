"""COCO bbox mAP through pycocotools' COCOeval (or faster-coco-eval), with the numbers it prints, exactly.

The evaluator never re-implements the matching or the precision/recall accumulation: the figures it
returns are ``COCOeval.stats`` themselves, so they agree with every paper and leaderboard that uses
pycocotools. What it adds is what a framework needs around it: in-memory ground truth, results as a
list or a file, no crash on an empty result list, quiet stdout (the summary goes to ``logging``),
per-class AP, and the precision/recall array for plots.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ghostdet.eval.report import STAT_KEYS, format_summary
from ghostdet.utils.errors import ConfigError, DataError

LOGGER = logging.getLogger(__name__)

BACKENDS = ("pycocotools", "faster-coco-eval")


def _read_json(path: str | os.PathLike, if_missing: str, what_expected: str) -> Any:
    """Parsed JSON of ``path``; a DataError naming the file when it is missing or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {if_missing}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e}); {what_expected}") from None


def load_coco_gt(gt: Any):
    """A ``pycocotools.coco.COCO`` from a json path, a COCO object (returned as is) or a dataset dict."""
    from pycocotools.coco import COCO

    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, dict):
        dataset = gt
        where = "ground-truth dict"
    elif isinstance(gt, (str, os.PathLike)):
        dataset = _read_json(gt, "no such COCO annotation file; pass the instances_*.json of the split to evaluate",
                             "is it a COCO instances json?")
        where = str(gt)
    else:
        raise ConfigError(f"ground truth must be a COCO json path, a dict or a pycocotools COCO object, got {type(gt).__name__}")
    if not isinstance(dataset, dict) or not all(k in dataset for k in ("images", "annotations", "categories")):
        raise DataError(f"{where}: not a COCO instances json (needs 'images', 'annotations' and 'categories')")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _load_results(dets: Any) -> list[dict]:
    if isinstance(dets, (str, os.PathLike)):
        path = Path(dets)
        dets = _read_json(path, "no such detections file; pass a COCO results json ([{image_id, category_id, bbox, score}, ...])",
                          "expected a COCO results list")
        if not isinstance(dets, list):
            raise DataError(f"{path}: expected a JSON list of COCO results, got {type(dets).__name__}")
    if not isinstance(dets, (list, tuple)):
        raise ConfigError(f"detections must be a results-json path or a list of COCO result dicts, got {type(dets).__name__}")
    required = ("image_id", "category_id", "bbox", "score")
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or any(k not in d for k in required):
            raise DataError(f"detection #{i} is not a COCO bbox result: it needs keys {', '.join(required)}")
    # pycocotools' loadRes adds keys to the dicts it is given: copy so the caller's list stays as it was
    return [dict(d) for d in dets]


class COCOEvaluator:
    """COCO bbox evaluation of detections against one ground truth.

    Args:
        gt: path to a COCO instances json, a ``pycocotools.coco.COCO`` (e.g. ``dataset.coco_gt()``
            for a YOLO-format split) or the json's dict.
        backend: ``"pycocotools"`` (reference) or ``"faster-coco-eval"`` (optional extra,
            ``pip install faster-coco-eval``; same numbers to ~1e-16, several times faster on big sets).

    ``evaluate(dets)`` returns ``{AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl,
    per_class, per_class_ap50}``: the 12 ``COCOeval.stats`` as floats in 0..1, and per-class AP
    (IoU .50:.95) and AP50 keyed by category name, for categories that have ground truth.
    As in pycocotools, -1 means "undefined": the ground truth has no object in that size range.
    After ``evaluate``, ``precision`` holds COCOeval's precision array at IoU 0.5, area all,
    maxDets 100, shaped (101 recall points, K categories) with -1 where a category has no ground truth,
    and ``summary`` the 12 lines pycocotools prints (its stdout itself is silenced).
    """

    def __init__(self, gt: Any, backend: str = "pycocotools"):
        if backend not in BACKENDS:
            raise ConfigError(f"unknown COCO eval backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "faster-coco-eval":
            try:
                import faster_coco_eval  # noqa: F401
            except ImportError:
                raise ConfigError(
                    "backend 'faster-coco-eval' is not installed; pip install faster-coco-eval (or ghostdet[fast-eval]), "
                    "or use backend=pycocotools"
                ) from None
        self.backend = backend
        self.coco_gt = load_coco_gt(gt)
        self.cat_ids = sorted(self.coco_gt.getCatIds())
        self.cat_names = {c["id"]: c.get("name", str(c["id"])) for c in self.coco_gt.loadCats(self.cat_ids)}
        self.precision: np.ndarray | None = None
        self._faster_gt = None  # faster-coco-eval's own copy of the ground truth, built on first use
        self.summary = ""

    @property
    def category_names(self) -> list[str]:
        """Category names in the order of sorted category ids (the order of COCOeval's K axis)."""
        return [self.cat_names[c] for c in self.cat_ids]

    def evaluate(self, dets: Any) -> dict:
        results = _load_results(dets)
        self._check_ids(results)
        if self.backend == "faster-coco-eval":
            coco_eval = self._faster_cocoeval(results)
        else:
            coco_eval = self._pycocotools_cocoeval(results)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        LOGGER.debug("COCOeval output:\n%s", out.getvalue())
        metrics: dict[str, Any] = {k: float(v) for k, v in zip(STAT_KEYS, coco_eval.stats)}
        self.summary = format_summary(metrics)
        LOGGER.info("COCO bbox evaluation (%s, %d detections on %d images):\n%s",
                    self.backend, len(results), len(self.coco_gt.getImgIds()), self.summary)
        metrics.update(self._per_class(coco_eval.eval["precision"]))
        return metrics

    def _check_ids(self, results: list[dict]) -> None:
        img_ids = set(self.coco_gt.getImgIds())
        unknown_imgs = {d["image_id"] for d in results} - img_ids
        if unknown_imgs:
            raise DataError(
                f"{len(unknown_imgs)} detection image_id(s) are not in the ground truth (e.g. {sorted(unknown_imgs, key=str)[:3]}); "
                "evaluate against the annotations of the same split the detections were made on"
            )
        unknown_cats = {d["category_id"] for d in results} - set(self.cat_ids)
        if unknown_cats:
            # COCOeval silently ignores them, which hides a class-mapping bug behind a low mAP
            LOGGER.warning(
                "%d detection category_id(s) are not ground-truth categories and count for nothing (e.g. %s; GT ids: %s...); "
                "check the class -> category_id mapping", len(unknown_cats), sorted(unknown_cats, key=str)[:5], self.cat_ids[:5])

    def _empty_dataset(self) -> dict:
        # loadRes([]) crashes in pycocotools: an empty result set with the GT's images and categories
        # evaluates to 0 wherever there is ground truth, as an empty results file should
        return {"images": self.coco_gt.dataset["images"], "categories": copy.deepcopy(self.coco_gt.dataset["categories"]),
                "annotations": []}

    def _pycocotools_cocoeval(self, results: list[dict]):
        from pycocotools.cocoeval import COCOeval

        if results:
            with contextlib.redirect_stdout(io.StringIO()):
                coco_dt = self.coco_gt.loadRes(results)
        else:
            coco_dt = load_coco_gt(self._empty_dataset())
        return COCOeval(self.coco_gt, coco_dt, "bbox")

    def _faster_cocoeval(self, results: list[dict]):
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster

        with contextlib.redirect_stdout(io.StringIO()):
            if self._faster_gt is None:
                self._faster_gt = FasterCOCO(self.coco_gt.dataset)
            coco_dt = self._faster_gt.loadRes(results) if results else FasterCOCO(self._empty_dataset())
        return COCOeval_faster(self._faster_gt, coco_dt, "bbox", print_function=LOGGER.debug)

    def _per_class(self, precision: np.ndarray) -> dict:
        # precision: [T iou thresholds, R recall points, K categories, A area ranges, M maxDets];
        # area "all" is index 0 and maxDets=100 the last index, as in COCOeval.summarize
        pr = precision[:, :, :, 0, -1]
        self.precision = pr[0].copy()  # IoU 0.5
        per_class, per_class_ap50 = {}, {}
        for k, cat_id in enumerate(self.cat_ids):
            p = pr[:, :, k]
            if (p > -1).any():  # categories without ground truth have no AP
                name = self.cat_names[cat_id]
                per_class[name] = float(p[p > -1].mean())
                p50 = p[0][p[0] > -1]
                per_class_ap50[name] = float(p50.mean()) if p50.size else 0.0
        return {"per_class": per_class, "per_class_ap50": per_class_ap50}


def resolve_category_ids(coco_gt, category_ids: Sequence[int] | None = None, num_classes: int | None = None) -> list[int]:
    """The category id of each contiguous class index, checked against the ground truth.

    ``category_ids`` given (COCO ids per class, e.g. 1..90 with gaps): used as is; each must be a
    ground-truth category. ``None`` (YOLO-format data): class i is the i-th ground-truth category in
    id order, the YOLO convention for COCO (classes.txt = categories sorted by id); this also covers
    an in-memory ground truth whose ids are 0..C-1 or 1..C.
    """
    gt_ids = sorted(load_coco_gt(coco_gt).getCatIds())
    if category_ids is None:
        if num_classes is not None and num_classes != len(gt_ids):
            raise DataError(
                f"the model has {num_classes} classes but the ground truth has {len(gt_ids)} categories; "
                "evaluate on data with the model's classes (or pass category_ids)"
            )
        return gt_ids
    ids = [int(c) for c in category_ids]
    missing = sorted(set(ids) - set(gt_ids))
    if missing:
        raise DataError(f"category ids {missing[:5]} are not categories of the ground truth (its ids: {gt_ids[:5]}...); check the class mapping")
    if num_classes is not None and num_classes != len(ids):
        raise DataError(f"the model has {num_classes} classes but {len(ids)} category ids were given; they must match one to one")
    return ids
