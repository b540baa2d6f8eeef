"""The validation plots users know from ultralytics: P, R and F1 against confidence, the PR curve, the confusion
matrix (counts and normalised), ``labels.jpg`` (what the dataset holds) and val images with the ground truth next to
the predictions.

matplotlib's object API on its Agg canvas (no pyplot): no global backend switch, no display needed, safe in
DataLoader workers and threads. Boxes are drawn with ``torchvision.utils.draw_bounding_boxes``. Every function
returns the path it wrote (parent folders are created; written atomically, 0644).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ghostdet.eval.pr_metrics import PRResult
from ghostdet.utils.atomic import atomic_write

MAX_LABELLED = 20  # classes with their own coloured, labelled curve; more are drawn as thin grey lines
MAX_ANNOTATED = 30  # confusion matrices up to this many classes print their numbers in the cells


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path, dpi: int = 150) -> Path:
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as f:  # a plot open in a viewer is never seen half-written
        fig.savefig(f, dpi=dpi, format="jpeg" if fmt == "jpg" else fmt)
    return path


def _class_colors(n: int) -> list:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    order = [*range(0, 20, 2), *range(1, 20, 2)]  # tab20's dark shades first: neighbouring classes differ
    return [colormaps["tab20"](order[i % 20]) for i in range(n)]


# ------------------------------------------------------------------------------------------------ curves
def _curve(x: np.ndarray, per_class: np.ndarray, result: PRResult, path, xlabel: str, ylabel: str, title: str,
           mean_label, class_label=None, mark_conf: bool = False) -> Path:
    fig = _figure(9, 6)
    ax = fig.add_subplot()
    classes = np.flatnonzero(result.evaluated)
    label_each = len(classes) <= MAX_LABELLED
    colors = _class_colors(len(result.names))
    for c in classes:
        label = (class_label(c) if class_label else result.names[c]) if label_each else None
        ax.plot(x, per_class[c], linewidth=1, color=colors[c] if label_each else "grey",
                alpha=0.8 if label_each else 0.3, label=label)
    if len(classes):
        values = per_class[classes]
        # precision is NaN above a class's highest score: the mean is over the classes detected at that confidence
        # (ultralytics counts the others as precision 1, which lifts its curve to 1 at the right end)
        defined = (~np.isnan(values)).sum(0)
        mean = np.divide(np.nansum(values, 0), defined, out=np.full(len(x), np.nan), where=defined > 0)
        ax.plot(x, mean, linewidth=3, color="blue", label=mean_label(mean))
        if mark_conf:  # the confidence of the results.csv columns
            ax.axvline(result.conf, color="black", linestyle="--", linewidth=1, label=f"conf {result.conf:g}")
        ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no ground-truth boxes", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02), title=title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_pr_curves(result: PRResult, out_dir: str | Path) -> dict[str, Path]:
    """``P_curve.png``, ``R_curve.png``, ``F1_curve.png`` (against confidence, the chosen ``conf`` dashed) and
    ``PR_curve.png`` (IoU 0.5) in ``out_dir``: a line per class with ground truth (coloured and named up to 20
    classes, else grey), the mean over classes thick and blue. Returns ``{name: path}``."""
    out_dir = Path(out_dir)
    t = result.thresholds

    def peak(mean):
        if np.isnan(mean).all():
            return "all classes"
        return f"all classes {np.nanmax(mean):.2f} at {t[np.nanargmax(mean)]:.3f}"

    paths = {}
    for name, values, ylabel in (("P_curve", result.p_curve, "Precision"), ("R_curve", result.r_curve, "Recall"),
                                 ("F1_curve", result.f1_curve, "F1")):
        paths[name] = _curve(t, values, result, out_dir / f"{name}.png", "Confidence", ylabel,
                             f"{ylabel}-confidence curve (IoU 0.5)", peak, mark_conf=True)
    ap50 = result.ap50[result.evaluated].mean() if result.evaluated.any() else 0.0
    paths["PR_curve"] = _curve(result.recall_grid, result.pr_curve, result, out_dir / "PR_curve.png", "Recall",
                               "Precision", "Precision-recall curve (IoU 0.5)",
                               lambda mean: f"all classes {ap50:.3f} AP50",
                               class_label=lambda c: f"{result.names[c]} {result.ap50[c]:.3f}")
    return paths


# ------------------------------------------------------------------------------------------------ confusion
def plot_confusion_matrix(result: PRResult, path: str | Path, normalize: bool = True) -> Path:
    """The confusion matrix (true class across, predicted class down, ``background`` last), as ultralytics draws
    it; ``normalize``: each true-class column sums to 1 (where that class's boxes went). Classes that never occur
    (no ground truth and no detection) are left out, so a big label set stays readable."""
    matrix = result.normalized_confusion() if normalize else result.confusion.astype(np.float64)
    names = [*result.names, "background"]
    used = (result.confusion.sum(0) + result.confusion.sum(1)) > 0
    used[-1] = True
    keep = np.flatnonzero(used)
    matrix, names = matrix[np.ix_(keep, keep)], [names[i] for i in keep]
    n = len(names)
    fig = _figure(min(max(7.0, 0.3 * n + 3), 14), min(max(6.0, 0.3 * n + 2.5), 12.5))
    ax = fig.add_subplot()
    image = ax.imshow(np.where(matrix > 0, matrix, np.nan), cmap="Blues", vmin=0,
                      vmax=1 if normalize else max(matrix.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    ax.set_facecolor("white")
    if n <= MAX_ANNOTATED:
        peak = np.nanmax(matrix) if matrix.size else 1
        for i, j in zip(*np.nonzero(matrix)):
            value = matrix[i, j]
            text = f"{value:.2f}" if normalize else f"{int(value)}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8 if n < 15 else 6,
                    color="white" if value > 0.6 * peak else "black")
    fontsize = 9 if n <= MAX_ANNOTATED else 6 if n <= 60 else 5
    ax.set_xticks(range(n), names, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(n), names, fontsize=fontsize)
    ax.set(xlabel="True", ylabel="Predicted",
           title=f"Confusion matrix{', normalised by true class' if normalize else ''}\n"
                 f"detections with score > {result.cm_conf:g}, matched at IoU > {result.cm_iou:g}")
    return _save(fig, path)


def plot_confusion_matrices(result: PRResult, out_dir: str | Path) -> dict[str, Path]:
    """``confusion_matrix.png`` (counts) and ``confusion_matrix_normalized.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    return {"confusion_matrix": plot_confusion_matrix(result, out_dir / "confusion_matrix.png", normalize=False),
            "confusion_matrix_normalized": plot_confusion_matrix(result, out_dir / "confusion_matrix_normalized.png")}


# ------------------------------------------------------------------------------------------------ labels.jpg
def plot_labels(dataset, path: str | Path, names: Sequence[str] | None = None, max_points: int = 50_000,
                seed: int = 0) -> Path:
    """``labels.jpg``: boxes per class (bars), box centres and box width/height (fractions of the image), from a
    dataset's scanned records (``dataset.records``, or a list of ``ImageRecord``)."""
    records = getattr(dataset, "records", dataset)
    names = list(names if names is not None else getattr(dataset, "names", []))
    boxes = [r.boxes / np.array([r.width, r.height, r.width, r.height]) for r in records if len(r.boxes)]
    labels = np.concatenate([r.labels for r in records]) if records else np.zeros(0, np.int64)
    xyxy = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    num_classes = max(len(names), int(labels.max()) + 1 if len(labels) else 0)
    names = names + [str(i) for i in range(len(names), num_classes)]
    counts = np.bincount(labels, minlength=num_classes)
    if len(xyxy) > max_points:  # a scatter of millions of points says no more than a sample
        pick = np.random.default_rng(seed).choice(len(xyxy), max_points, replace=False)
        xyxy, sample_labels = xyxy[pick], labels[pick]
    else:
        sample_labels = labels
    colors = np.array(_class_colors(max(num_classes, 1)))

    fig = _figure(14, 4.8)
    bars, centres, sizes = fig.subplots(1, 3, width_ratios=[1.6, 1, 1])
    bars.bar(range(num_classes), counts, color=colors[:num_classes])
    if num_classes <= 40:
        bars.set_xticks(range(num_classes), names, rotation=90 if num_classes > 6 else 0,
                        fontsize=8 if num_classes <= 20 else 6)
    bars.set(ylabel="boxes", title=f"{int(counts.sum())} boxes in {len(records)} images, {num_classes} classes")
    point = {"s": 5, "alpha": 0.6 if len(xyxy) < 5000 else 0.2, "c": colors[sample_labels] if len(xyxy) else None,
             "linewidths": 0}
    centres.scatter((xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, **point)
    centres.set(xlim=(0, 1), ylim=(1, 0), xlabel="x (centre / image width)", ylabel="y (centre / image height)",
                title="box centres", aspect="equal")
    sizes.scatter(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1], **point)
    sizes.set(xlim=(0, 1), ylim=(0, 1), xlabel="width / image width", ylabel="height / image height",
              title="box sizes", aspect="equal")
    return _save(fig, path, dpi=100)


# ------------------------------------------------------------------------------------------------ val images
def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    image = image.detach().float().cpu()
    return (image.clamp(0, 1) * 255).round().to(torch.uint8) if image.max() <= 1.0 + 1e-6 else image.to(torch.uint8)


def _draw(image: torch.Tensor, boxes, labels, names, scores=None) -> np.ndarray:
    import inspect

    from matplotlib import font_manager
    from torchvision.utils import draw_bounding_boxes

    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    boxes = torch.cat([torch.minimum(boxes[:, :2], boxes[:, 2:]), torch.maximum(boxes[:, :2], boxes[:, 2:])], 1)
    labels = torch.as_tensor(labels).reshape(-1).long()
    if not len(boxes):
        return image.permute(1, 2, 0).numpy()
    palette = _class_colors(max(len(names), int(labels.max()) + 1))
    colors = [tuple(int(255 * v) for v in palette[int(c)][:3]) for c in labels]
    text = [names[int(c)] if int(c) < len(names) else str(int(c)) for c in labels]
    if scores is not None:
        text = [f"{t} {float(s):.2f}" for t, s in zip(text, torch.as_tensor(scores).reshape(-1))]
    side = max(image.shape[1:])
    # matplotlib's own DejaVu Sans: readable labels at any size (PIL's default bitmap font is 11 px and fixed)
    kwargs = {"font": font_manager.findfont("DejaVu Sans"), "font_size": max(10, round(side / 32))}
    if "fill_labels" in inspect.signature(draw_bounding_boxes).parameters:  # torchvision >= 0.23: label on its colour
        kwargs.update(fill_labels=True, label_colors="white")
    drawn = draw_bounding_boxes(image, boxes, text, colors, width=max(2, round(side / 200)), **kwargs)
    return drawn.permute(1, 2, 0).numpy()


def plot_val_batch(images, targets, preds: Sequence[dict], names: Sequence[str], path: str | Path,
                   conf: float = 0.25, max_images: int = 8) -> Path:
    """A val batch as pairs: each image with its ground truth (left) and the model's detections with score >=
    ``conf`` (right). ``images`` B x 3 x H x W (0-1 floats or uint8), ``targets`` (N, 6) [batch_idx, class, x1, y1,
    x2, y2] and ``preds`` (per image {boxes, scores, labels}) in the same input pixels."""
    images = images[:max_images]
    targets = torch.as_tensor(targets).detach().cpu().reshape(-1, 6)
    n = len(images)
    pairs_per_row = 2 if n > 1 else 1
    rows = -(-n // pairs_per_row)
    fig = _figure(6 * pairs_per_row, 3.1 * rows)
    axes = np.atleast_2d(fig.subplots(rows, 2 * pairs_per_row, squeeze=False))
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        image = _to_uint8(images[i])
        gt = targets[targets[:, 0] == i]
        pred = preds[i]
        keep = torch.as_tensor(pred["scores"]).detach().cpu() >= conf
        row, col = divmod(i, pairs_per_row)
        left, right = axes[row, 2 * col], axes[row, 2 * col + 1]
        left.imshow(_draw(image, gt[:, 2:], gt[:, 1], names))
        left.set_title(f"{i}: ground truth ({len(gt)})", fontsize=9)
        right.imshow(_draw(image, torch.as_tensor(pred["boxes"]).detach().cpu()[keep],
                           torch.as_tensor(pred["labels"]).detach().cpu()[keep], names,
                           torch.as_tensor(pred["scores"]).detach().cpu()[keep]))
        right.set_title(f"{i}: predictions, score >= {conf:g} ({int(keep.sum())})", fontsize=9)
    return _save(fig, path, dpi=100)


__all__ = ["plot_confusion_matrices", "plot_confusion_matrix", "plot_labels", "plot_pr_curves", "plot_val_batch"]
