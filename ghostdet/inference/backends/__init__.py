"""One backend per runtime: load an exported file, run a batch, return decoded outputs in one contract.

Adding a runtime = one row in ``ghostdet.export.formats.FORMATS`` + one exporter module ``ghostdet/export/<name>.py`` +
one backend module here. ``Detector``, the export check (``ghostdet.export.verify``), the int8 accuracy gate
(``ghostdet.export.accuracy``) and the benchmark (``ghostdet.eval.benchmark``) reach a runtime only through
``load_backend`` below, so a new module is picked up by all of them.

**Backend module** (``ghostdet/inference/backends/<runtime>.py``, imported lazily by the table's ``backend`` string, so
a missing runtime package costs nothing until used; import the runtime package inside functions, and raise
``ConfigError("... pip install 'ghostdet[<extra>]'")`` when it is missing):

* ``load(path, *, device="cpu", precision=None, threads=None) -> backend``: ``path`` is the exported file or folder
  (``best.onnx``, ``best_openvino/``, ``best_ncnn_model/``, ...). ``precision`` is a run-time hint (``None``: the
  runtime's default for the file; a hint the runtime cannot honour is a ConfigError); ``threads`` the intra-op
  threads (``None``: the runtime's choice). Every session set-up of this runtime lives here (threads, precision
  hints, providers, log levels): the benchmark gives every runtime the same ``threads``.
* ``read_metadata(path) -> dict``: the file's ghostdet metadata, cheaply (no session), via
  ``ghostdet.utils.exported.parse_metadata`` (the one validated reader; ``{}``-like defaults when absent).
* optional ``unavailable(precision) -> str | None``: why this machine cannot run ``precision`` (e.g. OpenVINO bf16
  without CPU BF16); the benchmark skips that mode with the reason.
* Errors: one line, typed (``ghostdet.utils.errors``): ``CheckpointError`` for a missing / broken / foreign file,
  ``ConfigError`` for a missing package or an unsupported device/precision. Never print, never ``sys.exit``.

**Backend object** (what ``load`` returns):

* ``__call__(batch)``: ``batch`` is a ``numpy`` float32 array B x 3 x H x W, RGB, values 0-1, letterboxed (pad 114/255),
  NCHW. Returns ``(boxes, scores)``: ``torch.float32`` CPU tensors, ``boxes`` B x A x 4 xyxy in input pixels,
  ``scores`` B x A x nc class probabilities (sigmoid applied), A = anchors over all levels (8/16/32). A backend whose
  runtime wants NHWC or another dtype converts inside. For a graph with NMS in it (``nms``): the four outputs
  ``NMS_OUTPUT_NAMES`` (num_dets B x 1 int32, det_boxes B x K x 4, det_scores B x K, det_classes B x K int32), as
  tensors. Copy outputs the runtime will overwrite on the next call.
* ``kind``: the runtime's name (``"pytorch"``, ``"onnxruntime"``, ``"openvino"``, ``"ncnn"``, ``"mnn"``, ``"litert"``).
* ``path``: the file or folder it loaded (None in memory).
* ``fixed_imgsz``: ``(h, w)`` the file only accepts, or None (any multiple of 32).
* ``fixed_batch``: the only batch size it accepts, or None. ``Detector`` pads short batches up to it.
* ``nms``: the graph ends in NMS (outputs as above).
* ``num_classes``: nc, or None when the file does not say (an NMS graph).
* ``meta``: the validated metadata dict (``parse_metadata``): names, category_ids, imgsz, nms/conf/iou/max_det, ...
* ``precision``: what it runs in (``"fp32"``, ``"fp16"``, ``"bf16"``, ``"int8"``); ``describe()`` one line for logs.

``BackendModule`` turns any backend into a ``torch.nn.Module`` with ``forward`` + ``decode``, so
``ghostdet.eval.evaluate_model`` scores an exported file exactly as it scores a checkpoint.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch as _torch  # not ``torch``: importing the submodule backends.torch rebinds that name in this package

from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import NMS_OUTPUT_NAMES


class Backend(Protocol):
    """What every backend object provides (see the module docstring)."""

    kind: str
    path: Path | None
    fixed_imgsz: tuple[int, int] | None
    fixed_batch: int | None
    nms: bool
    num_classes: int | None
    meta: dict
    precision: str

    def __call__(self, batch: np.ndarray) -> tuple[_torch.Tensor, ...]: ...


def backend_module(fmt):
    """The backend module of a format row (``ghostdet.export.formats.ExportFormat``), its packages checked first."""
    from ghostdet.export.formats import require

    require(fmt)
    return importlib.import_module(fmt.backend)


def load_backend(path: str | os.PathLike, fmt: str | None = None, *, device: str = "cpu", precision: str | None = None,
                 threads: int | None = None) -> Backend:
    """The backend for the exported file or folder at ``path``; ``fmt`` (a format name) or else its suffix picks the
    runtime (``ghostdet.export.formats.format_for_path``)."""
    from ghostdet.export.formats import format_for_path, get_format

    row = get_format(fmt) if fmt else format_for_path(path)
    if row.backend is None:
        raise CheckpointError(f"{path}: {row.name} files are not run by ghostdet ({row.note})")
    return backend_module(row).load(Path(path), device=device, precision=precision, threads=threads)


def read_file_metadata(path: str | os.PathLike, fmt: str | None = None) -> dict:
    """The validated metadata of an exported file or folder, without building a session."""
    from ghostdet.export.formats import format_for_path, get_format

    row = get_format(fmt) if fmt else format_for_path(path)
    return backend_module(row).read_metadata(Path(path))


def output_order(names: Sequence[set[str] | str], path: os.PathLike | str) -> tuple[bool, list[int]]:
    """``(nms, order)`` for the outputs of an exported graph, each given by its name (or set of names): the order
    that yields ``(boxes, scores)``, or for an NMS graph ``NMS_OUTPUT_NAMES``, whatever order the file lists them in."""
    sets = [{n} if isinstance(n, str) else set(n) for n in names]

    def index(name: str) -> int | None:
        return next((i for i, s in enumerate(sets) if name in s), None)

    if len(sets) == len(NMS_OUTPUT_NAMES) and all(index(n) is not None for n in NMS_OUTPUT_NAMES):
        return True, [index(n) for n in NMS_OUTPUT_NAMES]  # type: ignore[misc]
    if len(sets) != 2:
        listed = ", ".join(sorted(next(iter(s)) for s in sets if s))
        raise CheckpointError(f"{path}: has {len(sets)} outputs ({listed}); expected decoded boxes and scores, or "
                              f"{', '.join(NMS_OUTPUT_NAMES)} (an export from tools/export.py)")
    if index("boxes") == 1 and index("scores") == 0:
        return False, [1, 0]
    return False, [0, 1]


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first non-empty line of a runtime's exception (they are often multi-line C++ traces)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]


def run_image_by_image(batch: np.ndarray, runtime: str, run_one) -> tuple[_torch.Tensor, _torch.Tensor]:
    """The ``__call__`` of a runtime whose graph takes one image per call (ncnn, MNN): ``batch`` checked to be
    B x 3 x H x W, ``run_one`` (a 3 x H x W float32 array -> its boxes and scores as numpy arrays, copied out of the
    runtime's buffers) run on each image, the results stacked as boxes B x A x 4 and scores B x A x nc."""
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ConfigError(f"{runtime} input of shape {tuple(batch.shape)}: expected B x 3 x H x W")
    boxes, scores = [], []
    for image in batch:
        image_boxes, image_scores = run_one(image)
        boxes.append(np.asarray(image_boxes, dtype=np.float32).reshape(-1, 4))
        scores.append(np.asarray(image_scores, dtype=np.float32).reshape(len(boxes[-1]), -1))
    return _torch.from_numpy(np.stack(boxes)), _torch.from_numpy(np.stack(scores))


class BackendModule(_torch.nn.Module):
    """A backend (or any ``batch -> (boxes, scores)`` callable) seen as a detector with ``forward`` + ``decode``, so
    ``ghostdet.eval.evaluate_model`` scores it exactly as it scores the checkpoint (same loader, same NMS, same COCO
    evaluator). A fixed-batch file gets the loader's batches in chunks of its size (the last one padded)."""

    def __init__(self, run: Any, num_classes: int, fixed_batch: int | None = None):
        super().__init__()
        self.run, self.num_classes = run, int(num_classes)
        self.fixed_batch = fixed_batch if fixed_batch is not None else getattr(run, "fixed_batch", None)

    def forward(self, images: _torch.Tensor) -> tuple[_torch.Tensor, _torch.Tensor]:
        x = np.ascontiguousarray(images.detach().cpu().numpy(), dtype=np.float32)
        step = self.fixed_batch or len(x)
        boxes, scores = [], []
        for i in range(0, len(x), step):
            chunk = x[i:i + step]
            n = len(chunk)
            if n < step:
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
            b, s = self.run(chunk)[:2]
            boxes.append(_torch.as_tensor(np.asarray(b, np.float32))[:n])
            scores.append(_torch.as_tensor(np.asarray(s, np.float32))[:n])
        return _torch.cat(boxes), _torch.cat(scores)

    @staticmethod
    def decode(raw):
        return raw


__all__ = ["Backend", "BackendModule", "backend_module", "first_line", "load_backend", "output_order",
           "read_file_metadata", "run_image_by_image"]
