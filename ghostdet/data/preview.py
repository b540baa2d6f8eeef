"""What tools/check_data.py shows: the class table of a scan and sample images to draw boxes on."""
from __future__ import annotations

import math

import numpy as np

from ghostdet.data.scan import ScanReport


def class_table(names: list[str], reports: dict[str, ScanReport]) -> str:
    """Boxes per class and split, as aligned text (classes without any box are listed too)."""
    splits = list(reports)
    width = max([len("class"), *(len(n) for n in names)])
    lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>8}" for s in splits)]
    for i, name in enumerate(names):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{reports[s].class_counts.get(i, 0):>8}" for s in splits))
    lines.append(f"{'all':<{width}}  " + "  ".join(f"{reports[s].boxes_kept:>8}" for s in splits))
    return "\n".join(lines)


def preview_samples(dataset, count: int, seed: int = 0) -> list[dict]:
    """``count`` samples exactly as the loader yields them (augmented for a training set), reproducibly."""
    if count <= 0:
        return []
    rng = np.random.default_rng(seed)
    indices = rng.choice(len(dataset), size=min(count, len(dataset)), replace=False)
    dataset.set_random_seed(seed)
    return [dataset[int(i)] for i in indices]


def tile(images: list[np.ndarray], pad_value: int = 0) -> np.ndarray:
    """Images (same size) on a near-square grid."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    h, w, c = images[0].shape
    grid = np.full((rows * h, cols * w, c), pad_value, dtype=images[0].dtype)
    for k, img in enumerate(images):
        r, q = divmod(k, cols)
        grid[r * h:(r + 1) * h, q * w:(q + 1) * w] = img
    return grid
