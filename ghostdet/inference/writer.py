"""What detect writes to its output folder: annotated images, annotated videos, and predictions.json."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ghostdet.inference.draw import draw_detections
from ghostdet.inference.results import Detections
from ghostdet.inference.sources import Frame, video_fps
from ghostdet.utils.checkpoint import newest_checkpoint
from ghostdet.utils.errors import CheckpointError, DataError

log = logging.getLogger(__name__)

_WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def increment_dir(base: str | os.PathLike = "runs/detect") -> Path:
    """Create and return the next free numbered folder ``base/1``, ``base/2``, ... (safe against parallel runs)."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    n = max(taken, default=0) + 1
    while True:
        try:
            (base / str(n)).mkdir()
            return base / str(n)
        except FileExistsError:
            n += 1


def find_latest_weights(root: str | os.PathLike = "runs/train") -> Path:
    """The most recently written ``weights/best.pt`` under ``root`` (the trainer's run folders)."""
    newest = newest_checkpoint(root, "best.pt")
    if newest is None:
        raise CheckpointError(
            f"no --weights given and no {root}/*/*/weights/best.pt found; train a model first (python tools/train.py) "
            "or pass --weights FILE (.pt or .onnx)"
        )
    return newest


class DetectionWriter:
    """Collects detect's outputs in ``out_dir``: one annotated file per input image (same name; ``_1``, ``_2``
    appended on clashes), one annotated ``.mp4`` per input video, and ``predictions.json`` written on ``close``.

    Use as a context manager so the JSON and videos are finished even when the run is interrupted.
    """

    def __init__(self, out_dir: str | os.PathLike, save_images: bool = True, save_json: bool = True,
                 hide_labels: bool = False, hide_conf: bool = False, line_width: int | None = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.save_images, self.save_json = save_images, save_json
        self.draw_options = dict(hide_labels=hide_labels, hide_conf=hide_conf, line_width=line_width)
        self.records: list[dict] = []
        self._used_names: set[str] = set()
        self._video: tuple[Path, cv2.VideoWriter, Path] | None = None  # (source, writer, output)
        self.saved: list[Path] = []

    def add(self, frame: Frame, detections: Detections) -> Path | None:
        """Record one image's detections; returns the annotated file written (None when not saving)."""
        if self.save_json:
            self.records.append(detections.to_dict())
        if not self.save_images:
            return None
        annotated = draw_detections(frame.image, detections, **self.draw_options)
        if frame.is_video:
            return self._add_video_frame(frame, annotated)
        target = self._unique_name(frame.name if frame.path is not None else f"image{frame.index}.jpg")
        if not cv2.imwrite(str(target), cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR)):
            raise DataError(f"{target}: could not write the annotated image; is the output folder writable?")
        self.saved.append(target)
        return target

    def _unique_name(self, name: str) -> Path:
        stem, suffix = Path(name).stem, Path(name).suffix.lower()
        if suffix not in _WRITABLE_SUFFIXES:
            suffix = ".jpg"  # e.g. .gif: OpenCV cannot write it
        candidate, n = f"{stem}{suffix}", 0
        while candidate in self._used_names:
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self._used_names.add(candidate)
        return self.out_dir / candidate

    def _add_video_frame(self, frame: Frame, annotated: np.ndarray) -> Path:
        if self._video is None or self._video[0] != frame.path:
            self._close_video()
            target = self._unique_name(f"{frame.path.stem}.mp4")
            target = target.with_suffix(".mp4")
            h, w = annotated.shape[:2]
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), video_fps(frame.path), (w, h))
            if not writer.isOpened():
                raise DataError(f"{target}: OpenCV could not open a video writer (mp4v); is the output folder writable?")
            self._video = (frame.path, writer, target)
            self.saved.append(target)
        self._video[1].write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
        return self._video[2]

    def _close_video(self) -> None:
        if self._video is not None:
            self._video[1].release()
            self._video = None

    def close(self) -> Path | None:
        """Finish the current video and write predictions.json (returns its path, or None when not saving JSON)."""
        self._close_video()
        if not self.save_json:
            return None
        path = self.out_dir / "predictions.json"
        tmp = path.with_suffix(".json.tmp")
        # one image per line: compact for thousands of images, still readable and greppable
        tmp.write_text("[\n" + ",\n".join(json.dumps(r) for r in self.records) + "\n]\n")
        os.replace(tmp, path)
        return path

    def __enter__(self) -> "DetectionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
