"""Annotated images: a box per detection in a colour of its class, with the class name and score."""
from __future__ import annotations

import colorsys
import functools

import cv2
import numpy as np

from ghostdet.inference.results import Detections


@functools.lru_cache(maxsize=None)
def class_color(label: int) -> tuple[int, int, int]:
    """A stable RGB colour per class index; golden-ratio hue steps keep neighbouring classes far apart."""
    hue = (label * 0.618033988749895) % 1.0
    value = 0.95 if label % 2 == 0 else 0.75  # alternate brightness so classes 80 hues apart still differ
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(
    image: np.ndarray, detections: Detections, hide_labels: bool = False, hide_conf: bool = False, line_width: int | None = None
) -> np.ndarray:
    """Return a copy of ``image`` (HxWx3 uint8 RGB) with the detections drawn on it.

    Labels use OpenCV's Hershey font, which has ASCII glyphs only: other characters in class names show as '?'.
    """
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    lw = line_width or max(1, round((h + w) / 2 * 0.003))
    font_scale = lw / 3
    font_thickness = max(lw - 1, 1)
    # draw low scores first so the most confident boxes and labels end up on top
    for i in np.argsort(detections.scores, kind="stable"):
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections.boxes[i])
        color = class_color(int(detections.labels[i]))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, lw, cv2.LINE_AA)
        if hide_labels:
            continue
        text = detections.names[i] if hide_conf else f"{detections.names[i]} {detections.scores[i]:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness)
        th += baseline
        above = y1 - th >= 0  # put the label above the box, or inside it at the image top
        ty1 = y1 - th if above else y1
        tx1 = min(max(x1, 0), max(w - tw, 0))
        cv2.rectangle(out, (tx1, ty1), (tx1 + tw, ty1 + th), color, -1, cv2.LINE_AA)
        luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
        text_color = (0, 0, 0) if luminance > 150 else (255, 255, 255)
        cv2.putText(out, text, (tx1, ty1 + th - baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale, text_color, font_thickness, cv2.LINE_AA)
    return out
