"""Human-readable evaluation output: the COCO 12-line summary, per-class tables, Markdown, the PR-curve plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ghostdet.utils.atomic import atomic_write, write_text
from ghostdet.utils.tables import text_table

# The order of COCOeval.stats (bbox): see pycocotools.cocoeval.COCOeval.summarize.
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (metric, iou, area, maxDets) of each stat, for the summary lines
_STAT_ROWS = (
    ("Average Precision", "(AP)", "0.50:0.95", "all", 100),
    ("Average Precision", "(AP)", "0.50", "all", 100),
    ("Average Precision", "(AP)", "0.75", "all", 100),
    ("Average Precision", "(AP)", "0.50:0.95", "small", 100),
    ("Average Precision", "(AP)", "0.50:0.95", "medium", 100),
    ("Average Precision", "(AP)", "0.50:0.95", "large", 100),
    ("Average Recall", "(AR)", "0.50:0.95", "all", 1),
    ("Average Recall", "(AR)", "0.50:0.95", "all", 10),
    ("Average Recall", "(AR)", "0.50:0.95", "all", 100),
    ("Average Recall", "(AR)", "0.50:0.95", "small", 100),
    ("Average Recall", "(AR)", "0.50:0.95", "medium", 100),
    ("Average Recall", "(AR)", "0.50:0.95", "large", 100),
)


def format_summary(metrics: dict) -> str:
    """The 12 lines ``COCOeval.summarize()`` prints, from a metrics dict (same layout, 3 decimals)."""
    lines = []
    for key, (title, short, iou, area, max_det) in zip(STAT_KEYS, _STAT_ROWS):
        iou_str = f"{iou:<9}"
        lines.append(f" {title:<18} {short} @[ IoU={iou_str} | area={area:>6s} | maxDets={max_det:>3d} ] = {metrics[key]:0.3f}")
    return "\n".join(lines)


def gt_counts(coco_gt) -> dict[str, tuple[int, int]]:
    """Per category name: (images containing it, non-crowd instances) in the ground truth."""
    counts = {}
    for cat in coco_gt.loadCats(sorted(coco_gt.getCatIds())):
        anns = [a for a in coco_gt.loadAnns(coco_gt.getAnnIds(catIds=[cat["id"]])) if not a.get("iscrowd", 0)]
        counts[cat.get("name", str(cat["id"]))] = (len({a["image_id"] for a in anns}), len(anns))
    return counts


def per_class_rows(metrics: dict, coco_gt=None) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows of the per-class table: class, [images, instances,] AP50, AP50-95 (classes with ground truth)."""
    counts = gt_counts(coco_gt) if coco_gt is not None else None
    headers = ["class"] + (["images", "instances"] if counts else []) + ["AP50", "AP50-95"]
    rows = []
    for name, ap in metrics.get("per_class", {}).items():
        row = [name]
        if counts:
            row += list(counts.get(name, (0, 0)))
        row += [f"{metrics.get('per_class_ap50', {}).get(name, float('nan')):.3f}", f"{ap:.3f}"]
        rows.append(row)
    return headers, rows


def per_class_table(metrics: dict, coco_gt=None) -> str:
    """The per-class AP table for the console, with an ``all`` row of the overall AP50 and AP."""
    headers, rows = per_class_rows(metrics, coco_gt)
    total = ["all"]
    if coco_gt is not None:
        total += [len(coco_gt.getImgIds()), sum(r[2] for r in rows)]
    total += [f"{metrics['AP50']:.3f}", f"{metrics['AP']:.3f}"]
    return text_table(headers, [total] + rows)


def plot_pr_curve(precision: np.ndarray, names: Sequence[str], path: str | Path, max_named: int = 20) -> Path:
    """Save the precision-recall curve at IoU 0.5 (COCO's 101-point interpolated precision).

    ``precision``: (101, K) from ``COCOEvaluator.precision``, -1 for categories without ground truth.
    Each class is a thin line (labelled with its AP50 when there are at most ``max_named`` classes); the
    thick line is the mean over classes with ground truth, labelled with mAP@0.5.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe to call from servers and tests
    import matplotlib.pyplot as plt

    path = Path(path)
    recall = np.linspace(0.0, 1.0, precision.shape[0])
    valid = (precision > -1).all(axis=0)
    fig, ax = plt.subplots(figsize=(9, 6), tight_layout=True)
    label_each = valid.sum() <= max_named
    for k in np.flatnonzero(valid):
        p = precision[:, k]
        ax.plot(recall, p, linewidth=1, alpha=0.6 if label_each else 0.3, color=None if label_each else "grey",
                label=f"{names[k]} {p.mean():.3f}" if label_each else None)
    if valid.any():
        mean = precision[:, valid].mean(axis=1)
        ax.plot(recall, mean, linewidth=3, color="blue", label=f"all classes {mean.mean():.3f} mAP@0.5")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("Precision-Recall curve (IoU 0.5, COCO 101-point)")
    if valid.any():
        ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left", fontsize=8)
    try:
        with atomic_write(path, "wb") as f:  # a crash leaves no half-written PNG
            fig.savefig(f, format="png", dpi=150)
    finally:
        plt.close(fig)
    return path


def save_eval_outputs(result, out_dir: str | Path, settings: dict | None = None, save_json: bool = True,
                      plots: bool = True) -> dict[str, Path]:
    """Write an ``EvalResult``: ``metrics.json`` (metrics, speed, settings), ``detections.json`` (COCO
    results) and ``pr_curve.png``, each atomically (a crash leaves the old file or the new one, never half of one).
    Returns ``{kind: path}`` of what was written."""
    out_dir = Path(out_dir)
    paths = {}
    summary = {"metrics": result.metrics, "speed_ms_per_image": result.speed, "num_images": result.num_images,
               "num_detections": len(result.detections), "settings": settings or {}}
    paths["metrics"] = out_dir / "metrics.json"
    write_text(paths["metrics"], json.dumps(summary, indent=2))
    if save_json:
        paths["detections"] = out_dir / "detections.json"
        with atomic_write(paths["detections"], "w", encoding="utf-8") as f:
            json.dump(result.detections, f)
    if plots and result.precision is not None:
        paths["pr_curve"] = plot_pr_curve(result.precision, result.names, out_dir / "pr_curve.png")
    return paths
