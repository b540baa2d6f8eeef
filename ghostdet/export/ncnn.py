"""ncnn export: the ONNX export (``export_onnx``: same graph, same metadata) converted by pnnx into a folder::

    best_ncnn_model/model.ncnn.param, model.ncnn.bin, metadata.json

The graph takes one input blob ``images`` (3 x H x W float RGB 0-1, letterboxed: ncnn runs one image per
extractor, so a batch is run image by image) and has two output blobs, ``boxes`` (A x 4 xyxy input pixels) and
``scores`` (A x nc sigmoid probabilities), exactly the ONNX export's outputs without the batch axis. pnnx names
blobs ``in0``/``out0``/``out1``; they are renamed in the ``.param`` so that every format uses the same names.

Precisions: fp32 (``.bin`` weights in fp32) and fp16 (``half=True``: pnnx's ``fp16=1``, weights stored as fp16, half
the file). At run time ncnn's own options decide the arithmetic: ``use_fp16_storage`` / ``use_fp16_packed`` /
``use_fp16_arithmetic`` (ghostdet's backend turns them on for an fp16 file and off for an fp32 one). On x86 ncnn
computes in fp32 whatever the options say (fp16 weights are widened at load); ARMv8.2 CPUs (Raspberry Pi 5,
most phones since 2018) run fp16 arithmetic.

No int8: ncnn quantizes with its C++ tools ``ncnn2table`` (calibration table) and ``ncnn2int8``, which are not in the
``ncnn`` or ``pnnx`` packages on PyPI (the ``ncnn`` wheel is the Python binding of the runtime only); building ncnn's
tools from source is outside what ``pip install`` gives. Use MNN or LiteRT int8 (or ONNX Runtime / OpenVINO) for
int8 on ARM.

Converters run as subprocesses (``run_converter``, ``ghostdet.export.converters``) in a work folder beside the output;
the result is published with ``ghostdet.utils.atomic.staged_path``, so a failed conversion leaves nothing behind.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import torch.nn as nn

# run_converter and last_line are re-exported here (docs and callers have named them as ghostdet.export.ncnn's)
from ghostdet.export.converters import converter_work, last_line, package_version, run_converter  # noqa: F401
from ghostdet.utils.errors import ConfigError, ExportMismatchError
from ghostdet.utils.exported import INPUT_NAME, METADATA_FILE, OUTPUT_NAMES, parse_metadata

log = logging.getLogger(__name__)

PARAM_FILE = "model.ncnn.param"
BIN_FILE = "model.ncnn.bin"
PNNX_BLOBS = {"in0": INPUT_NAME, "out0": OUTPUT_NAMES[0], "out1": OUTPUT_NAMES[1]}
def pnnx_executable() -> Path:
    """The ``pnnx`` converter binary shipped in the ``pnnx`` wheel (found without importing the package)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("ncnn export needs pnnx and ncnn: pip install 'ghostdet[ncnn]'")
    folder = Path(list(spec.submodule_search_locations)[0])
    exe = folder / ("pnnx.exe" if sys.platform == "win32" else "pnnx")
    if not exe.is_file():
        raise ConfigError(f"{folder}: the pnnx package has no pnnx binary; reinstall it (pip install --force-reinstall pnnx)")
    return exe


def onnx_for_conversion(model: nn.Module, folder: Path, imgsz, names, category_ids, device, opset: int | None) -> tuple[Path, dict, tuple[int, int]]:
    """The NMS-free, fixed 1 x 3 x H x W fp32 ONNX export of ``model`` in ``folder`` (the converters' input), with its
    metadata record and input size. Shared by the ncnn and MNN exporters."""
    from ghostdet.export.onnx import DEFAULT_OPSET, _quiet_loggers, export_onnx
    from ghostdet.inference.backends.onnxruntime import read_metadata

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    with _quiet_loggers("ghostdet.export.onnx"):  # its "exported <temp file>" line would name a file that is gone
        export_onnx(model, path, imgsz, dynamic=False, half=False, opset=opset or DEFAULT_OPSET, batch=1, names=names,
                    category_ids=category_ids, device=device)
    meta = read_metadata(path)
    h, w = meta["imgsz"]
    return path, meta, (int(h), int(w))


def export_ncnn(model: nn.Module, out: str | os.PathLike, imgsz: int | Sequence[int] = 640, half: bool = False,
                batch: int = 1, names: Sequence[str] | None = None, category_ids: Sequence[int] | None = None,
                device: str = "cpu", opset: int | None = None) -> Path:
    """Write ``model`` (a GhostYOLO) as the ncnn folder ``out`` (``best_ncnn_model/``); returns the folder.
    ``half``: fp16 weights. ``batch`` is accepted for the table's sake: an ncnn graph takes one image whatever it is
    (ghostdet's backend runs any batch image by image)."""
    if batch != 1:
        log.info("ncnn takes one image per call: the file has no batch axis (any --batch runs image by image)")
    exe = pnnx_executable()
    if importlib.util.find_spec("ncnn") is None:
        raise ConfigError("ncnn export needs pnnx and ncnn: pip install 'ghostdet[ncnn]'")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; an ncnn export is a folder (e.g. best_ncnn_model/)")
    started = time.perf_counter()
    with converter_work(out, is_dir=True) as (staged, work):
        source, meta, (h, w) = onnx_for_conversion(model, work, imgsz, names, category_ids, device, opset)
        convert_onnx(work, source.name, (h, w), half, exe)
        (staged / PARAM_FILE).write_text(rename_blobs((work / PARAM_FILE).read_text()))
        os.replace(work / BIN_FILE, staged / BIN_FILE)
        meta.update(format="ncnn", precision="fp16" if half else "fp32", half=bool(half),
                    weights="fp16" if half else "fp32", converter=f"pnnx {package_version('pnnx')}",
                    input=f"{INPUT_NAME}: 3 x H x W float RGB 0-1, letterboxed (one image per extractor)",
                    outputs=f"{OUTPUT_NAMES[0]}: A x 4 xyxy input pixels; {OUTPUT_NAMES[1]}: A x nc sigmoid")
        write_folder_metadata(staged, meta)
    log.info("exported %s in %.1f s (ncnn via pnnx, %s weights, fixed 3x%dx%d)", out, time.perf_counter() - started,
             "fp16" if half else "fp32", h, w)
    return out


def convert_onnx(work: Path, source: str, hw: tuple[int, int], half: bool = False, exe: Path | None = None) -> None:
    """pnnx on ``work/source`` (a fixed-size ONNX file), in a subprocess: writes ``work/PARAM_FILE`` and
    ``work/BIN_FILE`` (pnnx's own blob names; ``half``: fp16 weights). The conversion step of ``export_ncnn``, for
    callers that convert other models exactly as ghostdet converts its own (benchmarks/bench_edge.py)."""
    h, w = hw
    run_converter([exe or pnnx_executable(), source, f"inputshape=[1,3,{h},{w}]", f"ncnnparam={PARAM_FILE}",
                   f"ncnnbin={BIN_FILE}", "pnnxparam=model.pnnx.param", "pnnxbin=model.pnnx.bin",
                   "pnnxpy=model_pnnx.py", "pnnxonnx=model.pnnx.onnx", "ncnnpy=model_ncnn.py", f"fp16={int(bool(half))}",
                   "device=cpu"],
                  "pnnx (ONNX -> ncnn)", cwd=work, expect=(PARAM_FILE, BIN_FILE))


def rename_blobs(param: str, names: dict[str, str] = PNNX_BLOBS) -> str:
    """pnnx's blob names (``in0``, ``out0``, ``out1``) -> ``images``, ``boxes``, ``scores`` in an ncnn ``.param`` text.
    Tokens are replaced whole (layer and blob names are space-separated tokens; ``out10`` is left alone)."""
    lines = param.splitlines()
    if not lines or lines[0].strip() != "7767517":
        raise ExportMismatchError("pnnx wrote an ncnn .param without the 7767517 magic line; nothing was written")
    taken = {tok for line in lines[2:] for tok in line.split()}
    clash = [new for new in names.values() if new in taken]
    if clash:
        raise ExportMismatchError(f"pnnx's graph already has a blob named {clash[0]!r}; nothing was written")
    renamed = [lines[0], lines[1]] + [" ".join(names.get(tok, tok) for tok in line.split()) for line in lines[2:]]
    return "\n".join(renamed) + "\n"


def write_folder_metadata(folder: Path, meta: dict) -> None:
    (Path(folder) / METADATA_FILE).write_text(json.dumps(parse_metadata(meta, folder), indent=2) + "\n")


def write_metadata(path: str | os.PathLike, meta: dict) -> None:
    """Replace the ghostdet record (``metadata.json``) of the ncnn folder at ``path``, atomically."""
    from ghostdet.utils.atomic import write_text

    write_text(Path(path) / METADATA_FILE, json.dumps(parse_metadata(meta, path), indent=2) + "\n")


export = export_ncnn  # the format table's entry point (ghostdet.export.formats)

__all__ = ["BIN_FILE", "PARAM_FILE", "convert_onnx", "export", "export_ncnn", "last_line", "onnx_for_conversion",
           "pnnx_executable", "rename_blobs", "run_converter", "write_metadata"]
