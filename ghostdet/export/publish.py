"""Where exports go and how they are published. Default names come from the format table: a variant never takes
another's name (``best.onnx``, ``best_fp16.onnx``, ``best_nms.onnx``, ``best_int8.onnx``, ``best_openvino/``,
``best_int8_openvino/``), and every file or folder is written through ``ghostdet.utils.atomic.staged_path``, so a
failed export leaves what was there before."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from ghostdet.export.formats import get_format


def default_output(weights: str | os.PathLike, fmt: str, nms: bool = False, half: bool = False) -> Path:
    """``runs/.../best.pt`` -> the export's default path: ``best[_nms][_fp16]<suffix>`` of the format."""
    return get_format(fmt).output_for(weights, "nms" if nms else "", "fp16" if half else "")


def int8_path_for(fp32_out: str | os.PathLike, fmt: str) -> Path:
    """Where the int8 export of ``fp32_out`` goes: ``best.onnx`` -> ``best_int8.onnx``, ``best_openvino`` ->
    ``best_int8_openvino``."""
    return get_format(fmt).variant(fp32_out, "int8")


def remove_export(path: str | os.PathLike) -> None:
    """Delete an export file or folder (an int8 export of an earlier run that must not pass for this one's)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def export_size_mb(path: str | os.PathLike) -> float:
    """Size of an export in MB: the file, or every file of the folder (an IR's xml + bin, ncnn's param + bin)."""
    path = Path(path)
    files = [p for p in path.rglob("*") if p.is_file() and p.suffix != ".json"] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 1e6


__all__ = ["default_output", "export_size_mb", "int8_path_for", "remove_export"]
