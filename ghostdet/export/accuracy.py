"""The int8 accuracy gate, shared by every format that quantizes, and runtime evaluation of any export.

    fp32 export  --calibrate on train images (calibration)-->  int8 export (the format's ``quantize``, staged beside
    the output)  --COCO mAP of both on the val split-->  published only when the drop is <= max_map_drop

Both files run through their backend (``ghostdet.inference.backends``) inside ``BackendModule``, scored by the COCO
evaluator of ``tools/eval.py`` (``ghostdet.eval.evaluate_model``, conf 0.001, iou 0.7, max_det 300, multi-label).
When the int8 mAP50-95 is more than ``max_map_drop`` points (of 100) below the fp32 one, ``ExportMismatchError`` is
raised and no int8 export is left: the staged copy is deleted, and so is an int8 export of an earlier run at the
output path (it would look like the result of this one). The published file's metadata gets ``precision: "int8"`` and
an ``int8`` record (scheme, calibration, val split, eval settings, both mAPs, the drop).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ghostdet.export.calibration import CALIBRATION_IMAGES, calibration_images, data_root, square
from ghostdet.export.formats import get_format, module_of
from ghostdet.export.publish import int8_path_for, remove_export
from ghostdet.inference.backends import BackendModule, load_backend, read_file_metadata
from ghostdet.utils.atomic import staged_path
from ghostdet.utils.errors import ConfigError, ExportMismatchError

log = logging.getLogger(__name__)

MAX_MAP_DROP = 1.0  # points of mAP50-95 (x100)
EVAL_SETTINGS = {"conf": 0.001, "iou": 0.7, "max_det": 300}  # tools/eval.py's (configs/eval.yaml)


@dataclass
class ValSplit:
    """The val split of a data config, ready for ``evaluate_model``: dataset, loader and COCO ground truth."""

    dataset: Any
    loader: Any
    coco_gt: Any
    description: str = ""

    @classmethod
    def build(cls, data_cfg, imgsz: int | tuple[int, int], batch: int = 8, workers: int = 0,
              read_only: bool = False) -> "ValSplit":
        from ghostdet.data import build_dataloader, build_dataset

        size = imgsz if isinstance(imgsz, int) else square(imgsz, "the val evaluation")
        dataset = build_dataset(data_cfg, split="val", imgsz=size, augment=False, read_only=read_only)
        loader = build_dataloader(dataset, batch_size=batch, workers=workers, shuffle=False)
        return cls(dataset, loader, dataset.coco_gt(), f"{len(dataset)} images of the val split of {data_root(data_cfg)}")


def evaluate_runtime(model: torch.nn.Module, val: ValSplit, **settings) -> dict[str, float]:
    """COCO mAP50-95 / mAP50 (0-1) of ``model`` (a detector or a ``BackendModule``) on ``val`` with the eval settings."""
    from ghostdet.eval import evaluate_model

    kwargs = {**EVAL_SETTINGS, **settings}
    quiet = [logging.getLogger(n) for n in ("ghostdet.eval.coco_evaluator", "ghostdet.eval.loop")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.WARNING)
    try:
        result = evaluate_model(model, val.loader, val.coco_gt, val.dataset.category_ids, names=val.dataset.names,
                                device="cpu", progress=False, **kwargs)
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    return {"mAP50-95": float(result.metrics["AP"]), "mAP50": float(result.metrics["AP50"])}


def exported_runtime_model(path: str | os.PathLike, fmt: str, num_classes: int, precision: str | None = "fp32",
                           threads: int | None = None) -> BackendModule:
    """A ``BackendModule`` over the export at ``path`` (``precision``: the run-time hint, for runtimes that take one)."""
    row = get_format(fmt)
    backend = load_backend(path, fmt, precision=precision if row.hints else None, threads=threads)
    return BackendModule(backend, num_classes, backend.fixed_batch)


@dataclass
class Int8Result:
    """What ``quantize_export`` measured. mAPs are 0-1; ``drop`` is in points (x100)."""

    path: Path
    fp32: dict[str, float]
    int8: dict[str, float]
    drop: float
    max_drop: float
    calibration: str
    val: str
    scheme: dict = field(default_factory=dict)
    ok: bool = True

    def table(self) -> str:
        rows = [("fp32", self.fp32), ("int8", self.int8)]
        lines = [f"{'':6} {'mAP50-95':>9} {'mAP50':>7}"]
        lines += [f"{name:6} {m['mAP50-95']:9.4f} {m['mAP50']:7.4f}" for name, m in rows]
        return "\n".join(lines)


def int8_formats() -> list[str]:
    from ghostdet.export.formats import FORMATS

    return [f.name for f in FORMATS if "int8" in f.precisions]


def quantize_export(fp32_path: str | os.PathLike, fmt: str, data_cfg, imgsz: tuple[int, int],
                    out: str | os.PathLike | None = None, calib_images: int = CALIBRATION_IMAGES,
                    max_map_drop: float = MAX_MAP_DROP, precision: str = "fp32", threads: int | None = None,
                    read_only: bool = False, float_last_convs: bool = False, val_batch: int = 8,
                    workers: int = 0) -> Int8Result:
    """Quantize the fp32 export at ``fp32_path`` (any format whose row has int8) to int8, evaluate both on the val
    split of ``data_cfg`` and publish the int8 export at ``out`` (default ``int8_path_for``) only if its mAP50-95 is
    within ``max_map_drop`` points of the fp32 export's; otherwise raise ``ExportMismatchError`` (one line, both mAPs;
    ``error.result`` holds the ``Int8Result``) and leave no int8 export behind. ``precision``: the run-time hint both
    are evaluated with, for runtimes that take one (OpenVINO: the int8 model's float parts run in it)."""
    row = get_format(fmt)
    if "int8" not in row.precisions:
        raise ConfigError(f"int8 export is for the {', '.join(int8_formats())} formats, not {fmt!r}")
    if max_map_drop < 0:
        raise ConfigError(f"max mAP drop {max_map_drop}: must be >= 0 (points of mAP50-95)")
    fp32_path = Path(fp32_path)
    out = Path(out) if out else int8_path_for(fp32_path, fmt)
    meta = read_file_metadata(fp32_path, fmt)
    if meta.get("nms"):
        raise ConfigError("int8 needs the NMS-free export (its accuracy check scores raw outputs at conf 0.001); "
                          "export without --nms")
    module = module_of(row)
    num_classes = len(meta.get("names") or []) or None
    images, calibration = calibration_images(data_cfg, imgsz, calib_images, read_only=read_only)
    log.info("int8 calibration on %s", calibration)
    val = ValSplit.build(data_cfg, imgsz, batch=val_batch, workers=workers, read_only=read_only)
    num_classes = num_classes or val.dataset.num_classes
    # staged beside ``out`` (its folder is created): published by a rename on the same filesystem, or not at all
    with staged_path(out, is_dir=row.is_dir) as staged:
        scheme = module.quantize(fp32_path, staged, images, float_last_convs=float_last_convs)
        fp32_map = evaluate_runtime(exported_runtime_model(fp32_path, fmt, num_classes, precision, threads), val)
        int8_map = evaluate_runtime(exported_runtime_model(staged, fmt, num_classes, precision, threads), val)
        drop = 100.0 * (fp32_map["mAP50-95"] - int8_map["mAP50-95"])
        result = Int8Result(out, fp32_map, int8_map, drop, max_map_drop, calibration, val.description, scheme,
                            ok=drop <= max_map_drop)
        if not result.ok:
            remove_export(out)  # an int8 export of an earlier run must not pass for this one's
            error = ExportMismatchError(
                f"{out.name}: int8 mAP50-95 {int8_map['mAP50-95']:.4f} vs fp32 {fp32_map['mAP50-95']:.4f} on "
                f"{val.description}: {drop:.2f} points lost > --max-map-drop {max_map_drop:g}; no int8 file was "
                "written: deploy the fp32 export, or calibrate on more/other images (--calib-images)")
            error.result = result
            raise error
        record = dict(meta, precision="int8", weights="int8", int8={
            **scheme, "calibration": calibration, "val": val.description, "eval": dict(EVAL_SETTINGS),
            "precision_hint": precision if row.hints else None,
            "fp32": fp32_map, "int8": int8_map, "map_drop_points": round(drop, 3)})
        module.write_metadata(staged, record)
    return result


__all__ = ["EVAL_SETTINGS", "Int8Result", "MAX_MAP_DROP", "ValSplit", "evaluate_runtime", "exported_runtime_model",
           "int8_formats", "quantize_export"]
