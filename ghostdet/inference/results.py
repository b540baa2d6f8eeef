"""The per-image result of ``Detector.predict`` and its JSON form (the predictions file of tools/detect.py)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """Detections on one image, in that image's original pixels.

    boxes: (n, 4) float32 xyxy; scores: (n,) float32; labels: (n,) int64 class indices;
    names: (n,) class names; category_ids: (n,) COCO category ids, or None when the model has none;
    file: the source path (None for in-memory images); orig_shape: (height, width);
    speed_ms: preprocess / inference / postprocess times.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    names: list[str]
    orig_shape: tuple[int, int]
    category_ids: list[int] | None = None
    file: str | None = None
    frame: int | None = None
    speed_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.scores)

    def counts(self) -> dict[str, int]:
        """Detections per class name, most frequent first."""
        return dict(Counter(self.names).most_common())

    def summary(self) -> str:
        """``2 person, 1 dog`` (or ``no detections``)."""
        counts = self.counts()
        return ", ".join(f"{n} {name}" for name, n in counts.items()) if counts else "no detections"

    def to_dict(self, decimals: int = 2) -> dict:
        """The predictions-JSON entry: file, width, height, (frame,) detections[{bbox, score, class, name, category_id?}]."""
        h, w = self.orig_shape
        out: dict = {"file": self.file, "width": int(w), "height": int(h)}
        if self.frame is not None:
            out["frame"] = int(self.frame)
        detections = []
        for i in range(len(self)):
            det = {
                "bbox": [round(float(v), decimals) for v in self.boxes[i]],
                "score": round(float(self.scores[i]), 5),
                "class": int(self.labels[i]),
                "name": self.names[i],
            }
            if self.category_ids is not None:
                det["category_id"] = int(self.category_ids[i])
            detections.append(det)
        out["detections"] = detections
        return out

    @classmethod
    def empty(cls, orig_shape: tuple[int, int], **kwargs) -> "Detections":
        return cls(
            boxes=np.zeros((0, 4), np.float32), scores=np.zeros((0,), np.float32), labels=np.zeros((0,), np.int64),
            names=[], orig_shape=orig_shape, **kwargs,
        )
