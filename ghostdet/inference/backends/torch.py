"""PyTorch backend: a training checkpoint (``best.pt``) or a model in memory, and the TorchScript files
``tools/export.py --format torchscript`` writes (loaded only to check them: a TorchScript file is code, so
``Detector`` refuses it; see ``ghostdet.export.formats``)."""
from __future__ import annotations

import logging
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ghostdet.utils.errors import CheckpointError, ConfigError
from ghostdet.utils.exported import parse_metadata

log = logging.getLogger(__name__)

TORCHSCRIPT_META = "ghostdet.json"  # the extra file holding the metadata in a TorchScript archive


class TorchBackend:
    """A PyTorch Ghost-YOLO: decoded boxes and scores for a batch of letterboxed 0-1 RGB images."""

    kind = "pytorch"
    fixed_imgsz: tuple[int, int] | None = None
    fixed_batch: int | None = None
    nms = False

    def __init__(self, model: torch.nn.Module, device: torch.device, channels_last: bool = False,
                 meta: dict | None = None, path: Path | None = None):
        # channels_last: oneDNN's NHWC kernels run these 1x1/depthwise-heavy models faster on CPU
        # (benchmarks/bench_vs_yolov8n_ghost.py: ghost_yolo 158 -> 136 ms at 640, 2 threads)
        self.model = model.use_channels_last() if channels_last and hasattr(model, "use_channels_last") else model
        self.device = device
        self.meta = meta or {}
        self.path = path
        self.num_classes = getattr(model, "num_classes", None)
        param = next(model.parameters(), None)
        self.precision = "fp16" if param is not None and param.dtype == torch.float16 else "fp32"

    @torch.inference_mode()
    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        param = next(self.model.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        x = torch.from_numpy(batch).to(self.device, dtype)  # NHWC, if at all, is the model's choice (use_channels_last)
        boxes, scores = self.model.decode(self.model(x))
        return boxes.float().cpu(), scores.float().cpu()

    def describe(self) -> str:
        return f"PyTorch {self.precision} on {self.device}"


class TorchScriptBackend:
    """A traced ``images -> (boxes, scores)`` module written by ``ghostdet.export.export_torchscript``."""

    kind = "torchscript"
    fixed_imgsz: tuple[int, int] | None = None
    fixed_batch: int | None = None
    nms = False

    def __init__(self, path: Path, device: torch.device):
        self.path, self.device = path, device
        self.meta = read_metadata(path)
        self.half = bool(self.meta.get("half"))
        self.precision = "fp16" if self.half else "fp32"
        self.num_classes = len(self.meta["names"]) if self.meta.get("names") else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            try:
                self.module = torch.jit.load(str(path), map_location=device)
            except Exception as e:
                raise CheckpointError(f"{path}: not a loadable TorchScript file ({type(e).__name__})") from None

    def __call__(self, batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, torch.float16 if self.half else torch.float32)
            boxes, scores = self.module(x)
        return boxes.float().cpu(), scores.float().cpu()

    def describe(self) -> str:
        return f"TorchScript {self.precision} on {self.device}"


def load(path: str | os.PathLike, *, device: str | torch.device = "cpu", precision: str | None = None,
         threads: int | None = None, fuse: bool = True):
    """A checkpoint (fused deploy form, channels_last) or a TorchScript file. PyTorch's threads are process-wide
    (``torch.set_num_threads``), so ``threads`` is left to the caller; ``precision`` other than fp32 is refused."""
    from ghostdet.utils.device import select_device

    if precision not in (None, "auto", "fp32"):
        raise ConfigError(f"precision {precision}: PyTorch models run in their own precision here; drop --precision")
    path, dev = Path(path), select_device(device)
    if path.suffix.lower() == ".torchscript":
        return TorchScriptBackend(path, dev)
    from ghostdet.models import deploy_form
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(path, map_location=dev)
    model = deploy_form(model) if fuse else model.eval()
    return TorchBackend(model, dev, channels_last=True, meta=meta, path=path)


def read_metadata(path: str | os.PathLike) -> dict:
    """A TorchScript file's record, read from its zip archive without loading the code; a checkpoint's names,
    category ids and training size."""
    path = Path(path)
    if path.suffix.lower() != ".torchscript":
        from ghostdet.utils.checkpoint import build_model_from_checkpoint

        _, meta = build_model_from_checkpoint(path)
        return meta
    try:
        with zipfile.ZipFile(path) as archive:
            entry = next((n for n in archive.namelist() if n.endswith(f"/extra/{TORCHSCRIPT_META}")), None)
            raw = archive.read(entry) if entry else None
    except (OSError, zipfile.BadZipFile):
        raise CheckpointError(f"{path}: not a TorchScript archive; export one with tools/export.py --format torchscript") from None
    return parse_metadata(raw, path)


__all__ = ["TorchBackend", "TorchScriptBackend", "load", "read_metadata"]
