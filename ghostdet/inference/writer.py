"""What detect writes to its output folder: annotated images and videos, predictions.json, YOLO label files
(``labels/``) and crops (``crops/<class>/``).

Nothing that existed before is ever replaced: the folder is a new numbered run folder (``OutputDir``), names that
are taken get ``_1``, ``_2`` …, and every file is written beside its name and renamed into place
(``ghostdet.utils.atomic``). The folder is created with the first output, so a run that reads nothing creates nothing.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ghostdet.inference.draw import draw_detections
from ghostdet.inference.results import Detections
from ghostdet.inference.sources import Frame, stream_name
from ghostdet.utils.atomic import atomic_write, missing_folders, new_numbered_dir, staged_path
from ghostdet.utils.checkpoint import newest_checkpoint
from ghostdet.utils.errors import CheckpointError, ConfigError, DataError

log = logging.getLogger(__name__)

_WRITABLE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def find_latest_weights(root: str | os.PathLike = "runs/train", option: str = "--weights") -> Path:
    """The most recently written ``weights/best.pt`` under ``root`` (the trainer's run folders). ``option``: how the
    calling tool takes a weights file, for the error message (``--weights``, ``weights=``)."""
    newest = newest_checkpoint(root, "best.pt")
    if newest is None:
        raise CheckpointError(
            f"no {option.rstrip('=')} given and no {root}/*/*/weights/best.pt found; train a model first "
            f"(python tools/train.py) or pass {option}{'' if option.endswith('=') else ' '}FILE (.pt, .onnx or an "
            "OpenVINO folder)"
        )
    return newest


class OutputDir:
    """Where a detect run writes, created only when the first output is: ``exact`` (``--out``: a new or empty folder,
    refused up front when it holds files) or a numbered ``project/name`` folder (``exp``, ``exp2`` …; ``exist_ok``
    reuses ``project/name`` and adds files beside the old ones under new names)."""

    def __init__(self, project: str | os.PathLike = "runs/detect", name: str = "exp", exist_ok: bool = False,
                 exact: str | os.PathLike | None = None):
        self.project, self.name, self.exist_ok = Path(project), name, exist_ok
        self.exact = Path(exact) if exact is not None else None
        if self.exact is not None and self.exact.exists() and (not self.exact.is_dir() or any(self.exact.iterdir())):
            raise ConfigError(f"--out {self.exact}: the folder already holds files, which detect never replaces; "
                              "name a new or empty folder, or drop --out for a numbered runs/detect/exp folder")
        if not name or Path(name).name != name:
            raise ConfigError(f"--name {name!r}: a folder name without slashes (e.g. exp)")
        self.path: Path | None = None
        self._created: list[Path] = []

    def create(self) -> Path:
        if self.path is None:
            if self.exact is not None:
                self._created = missing_folders(self.exact)
                self.exact.mkdir(parents=True, exist_ok=True)
                self.path = self.exact
            else:
                missing = missing_folders(self.project)
                reused = self.exist_ok and (self.project / self.name).is_dir()
                self.path = new_numbered_dir(self.project, self.name, exist_ok=self.exist_ok)
                self._created = ([] if reused else [self.path]) + missing
        return self.path

    def discard(self) -> None:
        """Remove the folders ``create`` made, while empty (innermost first)."""
        for folder in self._created:
            with contextlib.suppress(OSError):
                folder.rmdir()


class DetectionWriter:
    """Collects detect's outputs: one annotated file per input image (same name; ``_1``, ``_2`` appended on clashes),
    one annotated ``.mp4`` per input video or stream, ``predictions.json``, and with ``save_txt`` / ``save_crop`` a
    YOLO label file per image or frame with detections (``labels/<stem>.txt``: ``class cx cy w h [conf]``, 0-1 of the
    original size) and each detection cut out of the original (``crops/<class>/<stem>.jpg``).

    Use as a context manager: an interrupted run still finishes its video and JSON for what it processed; a run that
    processed nothing leaves nothing (not even the folder).
    """

    def __init__(self, out: OutputDir | str | os.PathLike, save_images: bool = True, save_json: bool = True,
                 save_txt: bool = False, save_conf: bool = False, save_crop: bool = False, hide_labels: bool = False,
                 hide_conf: bool = False, line_width: int | None = None):
        self.out = out if isinstance(out, OutputDir) else OutputDir(exact=out)
        self.save_images, self.save_json = save_images, save_json
        self.save_txt, self.save_conf, self.save_crop = save_txt, save_conf, save_crop
        self.draw_options = dict(hide_labels=hide_labels, hide_conf=hide_conf, line_width=line_width)
        self.records: list[dict] = []
        self.count = 0  # images and frames added
        self._used_names: set[tuple[str, str]] = set()  # (subfolder, name)
        self._video = None  # (source key, cv2.VideoWriter, final path, staged_path context)
        self.saved: list[Path] = []

    @property
    def out_dir(self) -> Path | None:
        """The run folder, or None while nothing has been written."""
        return self.out.path

    def add(self, frame: Frame, detections: Detections) -> Path | None:
        """Record one image's detections; returns the annotated file written (None when not saving images)."""
        self.count += 1
        if self.save_json:
            record = detections.to_dict()
            if frame.stream is not None:
                record["file"] = frame.stream
            self.records.append(record)
        stem = self._stem(frame)
        if self.save_txt and len(detections):
            self._write_labels(stem, detections)
        if self.save_crop and len(detections):
            self._write_crops(frame.image, stem, detections)
        if not self.save_images:
            return None
        annotated = draw_detections(frame.image, detections, **self.draw_options)
        if frame.is_video:
            return self._add_video_frame(frame, annotated)
        suffix = frame.path.suffix.lower() if frame.path is not None else ".jpg"
        suffix = suffix if suffix in _WRITABLE_SUFFIXES else ".jpg"  # e.g. .gif: OpenCV cannot write it
        return self._write_image(self._unique("", self._stem(frame), suffix), annotated)

    @staticmethod
    def _stem(frame: Frame) -> str:
        if frame.stream is not None:
            return f"{stream_name(frame.stream)}_{frame.index}"
        if frame.path is None:
            return f"image{frame.index}"
        return f"{frame.path.stem}_{frame.index}" if frame.is_video else frame.path.stem

    def _unique(self, subfolder: str, stem: str, suffix: str) -> Path:
        """A name in ``out_dir/subfolder`` used neither by this run nor by a file already there."""
        folder = self.out.create() / subfolder if subfolder else self.out.create()
        candidate, n = f"{stem}{suffix}", 0
        while (subfolder, candidate) in self._used_names or (folder / candidate).exists():
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        self._used_names.add((subfolder, candidate))
        return folder / candidate

    def _write_bytes(self, target: Path, data: bytes) -> Path:
        with atomic_write(target, "wb", overwrite=False) as f:
            f.write(data)
        self.saved.append(target)
        return target

    def _write_image(self, target: Path, rgb: np.ndarray) -> Path:
        ok, encoded = cv2.imencode(target.suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise DataError(f"{target}: OpenCV could not encode the image as {target.suffix}")
        return self._write_bytes(target, encoded.tobytes())

    def _write_labels(self, stem: str, detections: Detections) -> Path:
        h, w = detections.orig_shape
        lines = []
        for box, label, score in zip(detections.boxes, detections.labels, detections.scores):
            x1, x2 = (min(max(float(v), 0.0), w) for v in box[0::2])  # clipped: label files hold 0-1 values
            y1, y2 = (min(max(float(v), 0.0), h) for v in box[1::2])
            values = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            line = f"{int(label)} " + " ".join(f"{v:.6f}" for v in values)
            lines.append(line + (f" {float(score):.5f}" if self.save_conf else ""))
        return self._write_bytes(self._unique("labels", stem, ".txt"), ("\n".join(lines) + "\n").encode())

    def _write_crops(self, image: np.ndarray, stem: str, detections: Detections) -> None:
        h, w = image.shape[:2]
        for box, name in zip(detections.boxes, detections.names):
            x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
            x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
            if x2 <= x1 or y2 <= y1:
                continue  # a box outside the image or thinner than a pixel
            folder = "crops/" + ("".join(c if c.isalnum() or c in " -_." else "_" for c in name).strip() or "class")
            self._write_image(self._unique(folder, stem, ".jpg"), image[y1:y2, x1:x2])

    def _add_video_frame(self, frame: Frame, annotated: np.ndarray) -> Path:
        key = frame.stream if frame.stream is not None else frame.path
        if self._video is None or self._video[0] != key:
            self._close_video()
            stem = stream_name(frame.stream) if frame.stream is not None else frame.path.stem
            target = self._unique("", stem, ".mp4")
            stage = staged_path(target, overwrite=False)  # the video appears under its name only when finished
            staged = stage.__enter__()
            h, w = annotated.shape[:2]
            writer = cv2.VideoWriter(str(staged), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps or 30.0, (w, h))
            if not writer.isOpened():
                stage.__exit__(DataError, None, None)
                raise DataError(f"{target}: OpenCV could not open a video writer (mp4v); is the output folder writable?")
            self._video = (key, writer, target, stage)
            self.saved.append(target)
        self._video[1].write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))
        return self._video[2]

    def _close_video(self) -> None:
        if self._video is not None:
            _key, writer, _target, stage = self._video
            self._video = None
            writer.release()
            stage.__exit__(None, None, None)

    def close(self) -> Path | None:
        """Finish the current video and write predictions.json (returns its path, or None when not writing it).
        A run that added nothing removes the folder it created."""
        self._close_video()
        if self.count == 0:
            self.out.discard()
            return None
        if not self.save_json:
            return None
        path = self._unique("", "predictions", ".json")
        # one image per line: compact for thousands of images, still readable and greppable
        text = "[\n" + ",\n".join(json.dumps(r) for r in self.records) + "\n]\n"
        return self._write_bytes(path, text.encode())

    def __enter__(self) -> "DetectionWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
