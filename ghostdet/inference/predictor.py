"""``Detector``: run a trained Ghost-YOLO (a .pt checkpoint or any exported file of ``ghostdet.export.formats``) on images.

    from ghostdet import Detector
    det = Detector.from_checkpoint("runs/train/.../weights/best.pt")   # or Detector.from_onnx("model.onnx"),
                                                                       # Detector.from_file("best_openvino/")
    for result in det.predict(["a.jpg", "photos/"]):
        print(result.file, result.summary(), result.boxes)             # boxes: xyxy, original pixels

Numpy arrays are taken as **RGB** (like PIL, torchvision and the rest of ghostdet); pass ``bgr=True`` for
arrays from ``cv2.imread`` / ``cv2.VideoCapture`` (ultralytics' convention).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ghostdet.data.image_io import pil_to_rgb, to_chw_batch
from ghostdet.data.letterbox import PAD_VALUE, letterbox, unletterbox_boxes
from ghostdet.inference.backends import Backend, load_backend, output_order  # noqa: F401 (output_order: re-export)
from ghostdet.inference.backends.onnxruntime import OnnxBackend, onnx_session  # noqa: F401 (re-exports, old home)
from ghostdet.inference.backends.torch import TorchBackend
from ghostdet.inference.results import Detections
from ghostdet.inference.sources import Frame, MediaFile, array_to_rgb, collect_sources, iter_frames
from ghostdet.utils.device import select_device
from ghostdet.utils.errors import CheckpointError, ConfigError, DataError
from ghostdet.utils.imgsz import input_hw, max_stride
from ghostdet.utils.timing import torch_threads

log = logging.getLogger(__name__)


def parse_imgsz(text: str) -> tuple[int, int] | int:
    """Command-line size: ``640``, ``480,640`` or ``480x640`` (height, width)."""
    import argparse

    try:
        values = [int(v) for v in str(text).lower().replace("x", ",").split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size like 640, or height,width like 480,640")
    return values[0] if len(values) == 1 else (values[0], values[1])


def nms_outputs_to_detections(outputs: Sequence[Any], count: int | None = None, conf: float | None = None,
                              max_det: int | None = None, classes: Sequence[int] | None = None) -> list[dict[str, torch.Tensor]]:
    """The padded outputs of an NMS graph (num_dets, det_boxes, det_scores, det_classes) -> one dict per image (the
    first ``count``) with boxes/scores/labels like ``postprocess``'s; optionally filtered further by a higher ``conf``,
    a smaller ``max_det`` and ``classes`` (the graph's own thresholds cannot be undone)."""
    num, boxes, scores, labels = (torch.as_tensor(np.asarray(o)) for o in outputs)
    results = []
    for i in range(len(num) if count is None else count):
        k = int(num[i].reshape(-1)[0])
        found = {"boxes": boxes[i, :k].float(), "scores": scores[i, :k].float(), "labels": labels[i, :k].long()}
        keep = torch.ones(k, dtype=torch.bool)
        if conf is not None:
            keep &= found["scores"] > conf
        if classes is not None:
            keep &= torch.isin(found["labels"], torch.as_tensor(list(classes), dtype=torch.long))
        found = {key: value[keep][:max_det] for key, value in found.items()}
        results.append(found)
    return results


class Detector:
    """Runs a detector on images and returns ``Detections`` in each image's original pixels.

    Build it with ``Detector.from_checkpoint(path)``, ``Detector.from_onnx(path)``, ``Detector.from_openvino(path)``
    or ``Detector.from_file(path)`` (picks by suffix / folder). ``conf``, ``iou``,
    ``max_det`` and ``classes`` set the defaults of ``predict``; each call may override them.
    """

    def __init__(
        self,
        backend,
        names: Sequence[str],
        imgsz: int | Sequence[int] = 640,
        category_ids: Sequence[int] | None = None,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        classes: Sequence[int | str] | None = None,
        batch_size: int = 1,
        source: str | None = None,
    ):
        self.backend = backend
        self.names = [str(n) for n in names]
        self.category_ids = [int(c) for c in category_ids] if category_ids else None
        if self.category_ids is not None and len(self.category_ids) != len(self.names):
            log.warning("%s: %d category ids for %d classes; ignoring the category ids", source or "model", len(self.category_ids), len(self.names))
            self.category_ids = None
        self.imgsz = input_hw(imgsz, max_stride(getattr(backend, "model", None)))
        self.conf, self.iou, self.max_det = float(conf), float(iou), int(max_det)
        self.classes = self._class_indices(classes)
        self.batch_size = max(1, int(batch_size))
        self.source = source
        self.nms_settings: dict[str, Any] | None = None  # an NMS graph's baked-in conf/iou/max_det (_from_exported)
        self._warned: set[tuple[str, float]] = set()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu", imgsz: int | Sequence[int] | None = None,
                        fuse: bool = True, **kwargs) -> "Detector":
        """Load a ghostdet training checkpoint (``weights/best.pt``). Safe: loading never runs code from the file.

        ``fuse`` re-parameterizes RepGhost blocks and folds BatchNorm into convs (same outputs, faster).
        ``imgsz`` defaults to the training size stored in the checkpoint.
        """
        from ghostdet.inference.backends.torch import load

        backend = load(path, device=device, fuse=fuse)
        meta = backend.meta
        return cls(backend, meta["names"] or _default_names(backend.model), imgsz=imgsz or meta.get("imgsz") or 640,
                   category_ids=meta.get("category_ids"), source=str(path), **kwargs)

    @classmethod
    def from_model(cls, model: torch.nn.Module, names: Sequence[str] | None = None, device: str | torch.device | None = None,
                   **kwargs) -> "Detector":
        """Wrap a detector already in memory (e.g. straight after training); it is put in eval mode, not fused."""
        dev = select_device(device) if device is not None else next(model.parameters()).device
        model.to(dev).eval()
        return cls(TorchBackend(model, dev), names or _default_names(model), **kwargs)

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, imgsz: int | Sequence[int] | None = None, device: str = "cpu",
                  threads: int | None = None, **kwargs) -> "Detector":
        """Load an ONNX model exported by ``tools/export.py`` and run it with ONNX Runtime.

        A model exported with a fixed input size runs at that size: asking for another ``imgsz`` raises
        ConfigError (re-export with ``--dynamic`` or with the size you want). Class names come from the
        file's metadata. ``threads`` sets ONNX Runtime's intra-op threads (default: its own choice).
        """
        return cls.from_backend(load_backend(path, "onnx", device=device, threads=threads), imgsz, **kwargs)

    @classmethod
    def from_openvino(cls, path: str | os.PathLike, imgsz: int | Sequence[int] | None = None, device: str = "cpu",
                      precision: str = "auto", threads: int | None = None, **kwargs) -> "Detector":
        """Load an OpenVINO IR exported by ``tools/export.py --format openvino`` (its folder, or the ``.xml``) and run
        it with OpenVINO's CPU plugin (latency hint).

        ``precision``: ``fp32``, ``bf16`` or ``auto`` (bf16 where the CPU reports BF16, else fp32); the choice and its
        reason are in ``detector.backend.precision`` / ``.precision_reason`` (and logged). ``threads`` sets
        ``INFERENCE_NUM_THREADS`` (default: OpenVINO's choice). Sizes and class names work as in ``from_onnx``.
        """
        backend = load_backend(path, "openvino", device=device, precision=precision, threads=threads)
        return cls.from_backend(backend, imgsz, **kwargs)

    @classmethod
    def from_backend(cls, backend: Backend, imgsz: int | Sequence[int] | None = None, **kwargs) -> "Detector":
        """A Detector on a loaded backend (``ghostdet.inference.backends``): the input size checked against the
        file's, class names and (NMS graphs) thresholds from its validated metadata."""
        meta, path = backend.meta, backend.path
        imgsz = input_hw(imgsz) if imgsz is not None else None
        if imgsz is not None and backend.fixed_imgsz is not None and imgsz != tuple(backend.fixed_imgsz):
            fh, fw = backend.fixed_imgsz
            raise ConfigError(
                f"{path}: exported for a fixed {fh}x{fw} input, but imgsz {imgsz[0]}x{imgsz[1]} was asked; "
                f"drop --imgsz (uses {fh}x{fw}) or re-export with --imgsz {imgsz[0]} or --dynamic"
            )
        size = imgsz or backend.fixed_imgsz or meta.get("imgsz") or 640
        names = meta.get("names")
        if not names:
            if backend.num_classes is None:
                raise CheckpointError(f"{path}: no ghostdet metadata and no fixed class count; export it with tools/export.py")
            log.warning("%s: no class names in the model's metadata; naming classes by index", path)
            names = [str(i) for i in range(backend.num_classes)]
        if backend.fixed_batch not in (None, 1):
            kwargs.setdefault("batch_size", backend.fixed_batch)
        if backend.nms:  # NMS in the graph: its thresholds are the defaults (a higher conf / lower max_det can filter)
            for key in ("conf", "iou", "max_det"):
                if meta.get(key) is not None:
                    kwargs.setdefault(key, meta[key])
        detector = cls(backend, names, imgsz=size, category_ids=meta.get("category_ids"), source=str(path), **kwargs)
        detector.nms_settings = {key: meta.get(key) for key in ("conf", "iou", "max_det")} if backend.nms else None
        return detector

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "cpu", imgsz: int | Sequence[int] | None = None,
                  precision: str | None = None, threads: int | None = None, format: str | None = None,
                  **kwargs) -> "Detector":
        """Pick the runtime from the path with the format table (``ghostdet.export.formats.format_for_path``: ``.onnx``,
        an IR folder or ``.xml``, ``_ncnn_model/``, ``.mnn``, ``.tflite`` ...; a checkpoint otherwise), or by ``format``.

        ``precision`` is a run-time hint for runtimes that take one (OpenVINO: fp32/bf16/auto); elsewhere it is
        ignored with a warning. ``threads`` sets the runtime's threads (PyTorch's are process-wide:
        ``torch.set_num_threads``).
        """
        from ghostdet.export.formats import check_detectable, format_for_path, get_format

        row = get_format(format) if format else format_for_path(path)
        check_detectable(row, path)
        if precision not in (None, "auto", "fp32") and precision not in row.hints:
            log.warning("%s: precision %s is not a run-time choice of %s models; running in the model's own precision",
                        path, precision, row.runtime)
            precision = None
        if row.name == "pytorch":
            return cls.from_checkpoint(path, device=device, imgsz=imgsz, **kwargs)
        hint = precision if row.hints else None
        if row.name == "openvino" and hint is None:
            hint = "auto"
        backend = load_backend(path, row.name, device=device, precision=hint, threads=threads)
        return cls.from_backend(backend, imgsz, **kwargs)

    # ------------------------------------------------------------------ inference
    @property
    def num_classes(self) -> int:
        return len(self.names)

    def predict(self, source: Any, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
                classes: Sequence[int | str] | None = None, bgr: bool = False) -> list[Detections]:
        """Detect objects; returns one ``Detections`` per image (per frame for videos), in input order.

        ``source``: a path (image, video, folder, glob pattern), a numpy HxWx3 uint8 array (**RGB**; ``bgr=True``
        for OpenCV arrays), a PIL image, or a list of these. Boxes are xyxy in the original image's pixels.
        """
        return [det for _, det in self.stream(source, conf=conf, iou=iou, max_det=max_det, classes=classes, bgr=bgr)]

    __call__ = predict

    def stream(self, source: Any, conf: float | None = None, iou: float | None = None, max_det: int | None = None,
               classes: Sequence[int | str] | None = None, bgr: bool = False) -> Iterator[tuple[Frame, Detections]]:
        """Like ``predict`` but lazy: yields ``(frame, detections)`` one image at a time (memory stays flat on long videos)."""
        settings = dict(
            conf=self.conf if conf is None else float(conf),
            iou=self.iou if iou is None else float(iou),
            max_det=self.max_det if max_det is None else int(max_det),
            classes=self.classes if classes is None else self._class_indices(classes),
        )
        if getattr(self.backend, "nms", False):
            self._warn_about_baked_in_nms(settings)
        batch: list[Frame] = []
        for frame in _frames(source, bgr):
            batch.append(frame)
            if len(batch) == self.batch_size:
                yield from zip(batch, self._run(batch, **settings))
                batch = []
        if batch:
            yield from zip(batch, self._run(batch, **settings))

    def _run(self, frames: list[Frame], conf: float, iou: float, max_det: int, classes: list[int] | None) -> list[Detections]:
        from ghostdet.models.postprocess import postprocess

        t0 = time.perf_counter()
        padded, geometry = [], []
        for frame in frames:
            image, ratio, pad = letterbox(frame.image, self.imgsz)
            padded.append(image)
            geometry.append((ratio, pad, frame.image.shape[:2]))
        batch = to_chw_batch(padded)
        if self.backend.fixed_batch and len(frames) < self.backend.fixed_batch:  # a static-batch ONNX: pad the last batch
            batch = np.concatenate([batch, np.zeros((self.backend.fixed_batch - len(frames), *batch.shape[1:]), batch.dtype)])
        t1 = time.perf_counter()
        outputs = self.backend(batch)
        t2 = time.perf_counter()
        if getattr(self.backend, "nms", False):  # NMS ran in the graph: only filter by a higher conf, classes, max_det
            kept = nms_outputs_to_detections(outputs, len(frames), conf, max_det, classes)
        else:
            boxes, scores = outputs
            # Another runtime's worker threads keep spinning for a while after it returns, so a PyTorch op on more
            # than one thread waits for a core it cannot get: ONNX Runtime at 2 threads on 2 cores made this step
            # 6.9-7.5 ms instead of 0.3 ms (gghost_yolo @160, docs/detector.md). The tensors are small: one thread.
            with torch_threads(1) if self.backend.kind not in ("pytorch", "torchscript") else contextlib.nullcontext():
                # clipped to the input before NMS, exactly as evaluation does (eval.loop), so detect and eval agree
                kept = postprocess(boxes[: len(frames)], scores[: len(frames)], conf, iou, max_det, classes,
                                   clip_shape=tuple(batch.shape[-2:]))
        results = []
        for frame, found, (ratio, pad, shape) in zip(frames, kept, geometry):
            labels = found["labels"].cpu().numpy().astype(np.int64)
            results.append(Detections(
                boxes=unletterbox_boxes(found["boxes"].float().cpu().numpy(), ratio, pad, shape).astype(np.float32).reshape(-1, 4),
                scores=found["scores"].float().cpu().numpy().astype(np.float32),
                labels=labels,
                names=[self.names[i] for i in labels],
                category_ids=[self.category_ids[i] for i in labels] if self.category_ids is not None else None,
                orig_shape=(int(shape[0]), int(shape[1])),
                file=str(frame.path) if frame.path is not None else None,
                frame=frame.index if frame.is_video else None,
            ))
        t3 = time.perf_counter()
        n = len(frames)
        speed = {"preprocess": (t1 - t0) * 1e3 / n, "inference": (t2 - t1) * 1e3 / n, "postprocess": (t3 - t2) * 1e3 / n}
        for r in results:
            r.speed_ms = dict(speed)
        return results

    def _warn_about_baked_in_nms(self, settings: dict[str, Any]) -> None:
        """One warning per setting an NMS graph cannot honour: conf below, iou other than, max_det above its own."""
        baked = self.nms_settings or {}
        checks = [("conf", baked.get("conf") is not None and settings["conf"] < baked["conf"] - 1e-9,
                   "detections below it are not in the graph's output"),
                  ("iou", baked.get("iou") is not None and abs(settings["iou"] - baked["iou"]) > 1e-9,
                   "NMS ran in the graph at its own IoU"),
                  ("max_det", baked.get("max_det") is not None and settings["max_det"] > baked["max_det"],
                   "the graph returns at most that many")]
        for key, unmet, why in checks:
            if unmet and (key, settings[key]) not in self._warned:
                self._warned.add((key, settings[key]))
                log.warning("%s: NMS is in the graph with %s %s; %s %s asked for cannot apply (%s); re-export with "
                            "tools/export.py --nms --%s %s", self.source or "model", key, baked[key], key, settings[key],
                            why, key.replace("_", "-"), settings[key])

    def warmup(self, runs: int = 1) -> None:
        """Run on blank images so the first real image is not slowed by lazy initialisation."""
        blank = np.full((*self.imgsz, 3), PAD_VALUE, np.uint8)
        for _ in range(runs):
            self._run([Frame(blank, None, 0)] * self.batch_size, self.conf, self.iou, self.max_det, self.classes)

    def _class_indices(self, classes: Sequence[int | str] | None) -> list[int] | None:
        """Class filter given as indices or names → sorted indices (ConfigError for unknown ones)."""
        if classes is None:
            return None
        if isinstance(classes, (int, str)):
            classes = [classes]
        out = set()
        for c in classes:
            if isinstance(c, str) and not c.strip().lstrip("-").isdigit():
                if c not in self.names:
                    raise ConfigError(f"class {c!r} is not one of the model's classes ({', '.join(self.names[:10])}{', ...' if len(self.names) > 10 else ''})")
                out.add(self.names.index(c))
                continue
            index = int(c)
            if not 0 <= index < len(self.names):
                raise ConfigError(f"class index {index} out of range: the model has {len(self.names)} classes (0..{len(self.names) - 1})")
            out.add(index)
        return sorted(out)

    def __repr__(self) -> str:
        return (f"Detector({self.backend.kind}, {self.source or 'in-memory'}, classes={len(self.names)}, "
                f"imgsz={list(self.imgsz)}, conf={self.conf}, iou={self.iou})")


def is_openvino_path(path: str | os.PathLike) -> bool:
    """An OpenVINO IR by the format table: an ``.xml`` file, a ``*_openvino`` name, or a folder of no other format."""
    from ghostdet.export.formats import format_for_path

    return format_for_path(path).name == "openvino"


def _default_names(model) -> list[str]:
    nc = getattr(model, "num_classes", None)
    if nc is None:
        raise CheckpointError("the model has no class names and no num_classes; pass names=[...]")
    return [str(i) for i in range(int(nc))]


def _frames(source: Any, bgr: bool) -> Iterator[Frame]:
    """Every kind of ``predict`` source → Frames (RGB uint8), in order."""
    items: Iterable[Any] = source if isinstance(source, (list, tuple)) else [source]
    for index, item in enumerate(items):
        if isinstance(item, MediaFile):  # already collected (tools/detect.py checks paths before loading the model)
            yield from iter_frames([item])
        elif isinstance(item, (str, os.PathLike)):
            yield from iter_frames(collect_sources(item))
        elif isinstance(item, np.ndarray):
            yield Frame(array_to_rgb(item, bgr=bgr), None, index)
        elif type(item).__module__.startswith("PIL."):
            yield Frame(pil_to_rgb(item), None, index)
        elif isinstance(item, torch.Tensor):
            raise DataError("torch tensors are not accepted by Detector.predict (their layout and range are ambiguous); "
                            "pass HxWx3 uint8 numpy arrays, or call model.predict on a letterboxed 0-1 batch")
        else:
            raise DataError(f"cannot read a {type(item).__name__} as an image; pass a path, a numpy HxWx3 array or a PIL image")
