"""The one table of deployable formats. ``tools/export.py --format``, ``Detector.from_file``, the benchmark's modes, the
export check, the int8 gate and the docs table (``markdown_table``) all read it; adding a runtime is one row here plus
an exporter module (``ghostdet/export/<name>.py``) and a backend module (``ghostdet/inference/backends/<name>.py``,
contract in that package's docstring). Nothing here imports a runtime or a format module: rows name them as strings,
imported on first use, so a missing package or module is one line (``pip install 'ghostdet[<extra>]'``).

**Exporter module** (``ExportFormat.exporter``), functions looked up by name:

* ``export(model, out, imgsz, **options) -> Path``: ``model`` is the trained GhostYOLO (prepare a fused copy with
  ``ghostdet.export.onnx.prepare_for_export``); ``out`` the file or folder to publish. ``run_export`` passes only the
  keywords the function accepts, out of ``batch, names, category_ids, device, opset`` and, where the row allows them,
  ``dynamic``, ``half`` (fp16 in ``precisions``), ``nms, conf, iou, max_det``; a non-default option it does not accept
  is refused before anything runs. Publish through ``ghostdet.utils.atomic.staged_path(out, is_dir=row.is_dir)`` (the
  old output stays until the new one is complete) and write ``ghostdet.utils.exported.build_metadata(...)`` where the
  backend's ``read_metadata`` finds it.
* ``write_metadata(path, meta)``: replace the metadata of the export at ``path`` in place (the int8 gate records the
  measured mAPs in a staged copy).
* ``quantize(fp32_path, out, images, float_last_convs=False) -> dict`` (rows with ``int8``): write the int8 export of
  ``fp32_path`` at ``out`` (a staging path the gate publishes), calibrated on ``images`` (1 x 3 x H x W float32 0-1
  letterboxed batches), carrying the fp32 metadata with ``precision: "int8"``; return the scheme record (runtime, tool,
  weights/activations, which nodes stay float).
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path

from ghostdet.utils.errors import ConfigError


@dataclass(frozen=True)
class ExportFormat:
    name: str                                  # --format value
    suffix: str                                # default output: best<suffix> ("best.onnx", "best_openvino/")
    is_dir: bool                               # the export is a folder
    runtime: str                               # who runs it (docs, logs, benchmark labels)
    mode: str                                  # benchmark mode stem: "<mode>" (fp32), "<mode>-<precision>"
    packages: tuple[str, ...]                  # import names the backend needs
    export_packages: tuple[str, ...]           # import names the exporter needs (besides ``packages``)
    extra: str                                 # pip install 'ghostdet[<extra>]'
    precisions: tuple[str, ...]                # fp32 first; fp16 = --half, int8 = --int8 (accuracy gate)
    int8_packages: tuple[str, ...] = ()        # import names the int8 quantizer needs (besides the exporter's)
    hints: tuple[str, ...] = ()                # run-time precision hints of the backend (--precision)
    bench: tuple[str, ...] = ("fp32",)         # precisions (file or hint) the benchmark times
    nms: bool = False                          # --nms possible
    dynamic: bool = False                      # --dynamic possible
    exporter: str | None = None                # module with export / write_metadata / quantize
    backend: str | None = None                 # module with load / read_metadata
    aliases: tuple[str, ...] = ()              # other suffixes that name this format (".xml", "_openvino_model")
    marker: str | None = None                  # a folder of this format holds a file matching this glob
    detect: bool = True                        # Detector / tools/detect.py may load it
    note: str = ""

    def output_for(self, weights: str | os.PathLike, *tags: str) -> Path:
        """``runs/.../best.pt`` + tags ("nms", "fp16", "int8") -> ``runs/.../best_nms_fp16.onnx`` (or ``..._openvino``)."""
        weights = Path(weights)
        stem = "_".join([weights.stem, *[t for t in tags if t]])
        return weights.with_name(stem + self.suffix)

    def variant(self, path: str | os.PathLike, tag: str) -> Path:
        """``best.onnx`` -> ``best_<tag>.onnx``, ``best_openvino/`` -> ``best_<tag>_openvino`` (the int8 file beside)."""
        path = Path(path)
        name = path.name.rstrip("/")
        for tail in (self.suffix, *self.aliases):
            if tail and name.endswith(tail) and len(name) > len(tail):
                return path.with_name(f"{name[: -len(tail)]}_{tag}{tail}")
        return path.with_name(f"{name}_{tag}{self.suffix if self.suffix.startswith('_') else ''}")

    def modes(self) -> dict[str, str]:
        """``{benchmark mode: precision}`` of this row."""
        return {(self.mode if p == "fp32" else f"{self.mode}-{p}"): p for p in self.bench}


FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("pytorch", ".pt", False, "PyTorch", "fused", ("torch",), (), "", ("fp32",), aliases=(".pth",),
                 backend="ghostdet.inference.backends.torch", bench=(), note="the training checkpoint itself"),
    ExportFormat("onnx", ".onnx", False, "ONNX Runtime", "onnxruntime", ("onnxruntime",), ("onnx", "onnxscript"),
                 "export", ("fp32", "fp16", "int8"), bench=("fp32", "int8"), nms=True, dynamic=True,
                 exporter="ghostdet.export.onnx", backend="ghostdet.inference.backends.onnxruntime"),
    ExportFormat("openvino", "_openvino", True, "OpenVINO", "openvino", ("openvino",), ("onnx", "onnxscript"),
                 "openvino", ("fp32", "int8"), int8_packages=("nncf",), hints=("fp32", "bf16", "auto"), bench=("fp32", "bf16", "int8"), nms=True,
                 dynamic=True, exporter="ghostdet.export.openvino", backend="ghostdet.inference.backends.openvino",
                 aliases=(".xml", "_openvino_model"), marker="*.xml"),
    ExportFormat("torchscript", ".torchscript", False, "TorchScript", "torchscript", ("torch",), (), "",
                 ("fp32", "fp16"), bench=(), dynamic=True, exporter="ghostdet.export.torchscript",
                 backend="ghostdet.inference.backends.torch", detect=False,
                 note="for libtorch/C++; a TorchScript file is code, so Detector loads only checkpoints and data files"),
    ExportFormat("ncnn", "_ncnn_model", True, "ncnn", "ncnn", ("ncnn",), ("pnnx",), "ncnn", ("fp32", "fp16"),
                 bench=("fp32",), exporter="ghostdet.export.ncnn", backend="ghostdet.inference.backends.ncnn",
                 marker="*.param"),
    ExportFormat("mnn", ".mnn", False, "MNN", "mnn", ("MNN",), (), "mnn", ("fp32", "fp16", "int8"),
                 bench=("fp32", "int8"), exporter="ghostdet.export.mnn", backend="ghostdet.inference.backends.mnn"),
    ExportFormat("litert", ".tflite", False, "LiteRT (TFLite)", "litert", ("ai_edge_litert",), (), "litert",
                 ("fp32", "fp16", "int8"), bench=("fp32", "int8"), exporter="ghostdet.export.litert",
                 backend="ghostdet.inference.backends.litert"),
)
_BY_NAME = {f.name: f for f in FORMATS}
EXPORT_FORMATS = tuple(f.name for f in FORMATS if f.exporter)  # tools/export.py --format choices


def get_format(name: str) -> ExportFormat:
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        raise ConfigError(f"format {name!r}: choose one of {', '.join(EXPORT_FORMATS)}") from None


def format_for_path(path: str | os.PathLike) -> ExportFormat:
    """The row of an exported file or folder: by suffix (``.onnx``, ``.xml``, ``_openvino``, ``_ncnn_model`` ...), then for
    an existing folder by what it holds (``marker``); any other folder is taken as an OpenVINO IR (its error then says
    what is missing); anything else is a checkpoint."""
    p = Path(path)
    name = p.name.lower()
    for row in FORMATS:
        for tail in (row.suffix, *row.aliases):
            if name.endswith(tail.lower()) and (not tail.startswith("_") or row.is_dir):
                return row
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        for row in FORMATS:
            if row.is_dir and row.marker and p.is_dir() and any(p.glob(row.marker)):
                return row
        return _BY_NAME["openvino"]
    return _BY_NAME["pytorch"]


def missing_packages(row: ExportFormat, export: bool = False, int8: bool = False) -> list[str]:
    wanted = row.packages + (row.export_packages if export or int8 else ()) + (row.int8_packages if int8 else ())
    return [p for p in wanted if importlib.util.find_spec(p) is None]


def require(row: ExportFormat, export: bool = False) -> None:
    """ConfigError naming the extra to install when a package of ``row`` is missing."""
    missing = missing_packages(row, export)
    if missing:
        hint = f"pip install 'ghostdet[{row.extra}]'" if row.extra else f"pip install {' '.join(missing)}"
        raise ConfigError(f"{row.name} {'export' if export else 'models'} need{'s' if len(missing) == 1 else ''} "
                          f"{', '.join(missing)}: {hint}")


def module_of(row: ExportFormat, which: str = "exporter"):
    """The exporter or backend module of ``row``; a module this install lacks is one line."""
    name = getattr(row, which)
    if name is None:
        raise ConfigError(f"{row.name}: ghostdet has no {which} for this format")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (e.name == name or name.startswith(e.name + ".")):
            raise ConfigError(f"{row.name}: this ghostdet has no {name} module (the format is not built yet)") from None
        raise ConfigError(f"{row.name} needs {e.name}: pip install 'ghostdet[{row.extra}]'") from None


_ALWAYS = ("batch", "names", "category_ids", "device", "opset")
_DEFAULTS = {"dynamic": False, "half": False, "nms": False}


def run_export(row: ExportFormat, model, out: str | os.PathLike, imgsz, **options) -> Path:
    """Call ``row``'s exporter with the options it takes (see the module docstring); a non-default option the row or
    its function does not support is a ConfigError before anything is written."""
    allowed = set(_ALWAYS)
    allowed |= {"dynamic"} if row.dynamic else set()
    allowed |= {"half"} if "fp16" in row.precisions else set()
    allowed |= {"nms", "conf", "iou", "max_det"} if row.nms else set()
    require(row, export=True)
    export = module_of(row).export
    accepted = inspect.signature(export).parameters
    kwargs = {}
    for key, value in options.items():
        if value is None:
            continue
        if key in allowed:
            if key in accepted:  # an allowed option the function does not take is inherent (TorchScript: any size)
                kwargs[key] = value
        elif key in _DEFAULTS and value != _DEFAULTS[key]:
            raise ConfigError(f"--{key} is not available for --format {row.name} "
                              f"(the format table: {describe(row)})")
    return Path(export(model, Path(out), imgsz, **kwargs))


def describe(row: ExportFormat) -> str:
    bits = [f"precisions {'/'.join(row.precisions)}", "NMS in the graph" if row.nms else "no NMS in the graph",
            "dynamic shapes" if row.dynamic else "fixed shapes"]
    return ", ".join(bits)


def benchmark_modes() -> dict[str, tuple[ExportFormat, str]]:
    """``{mode: (row, precision)}`` of every exported runtime the benchmark can time, in table order."""
    return {mode: (row, p) for row in FORMATS if row.exporter and row.backend for mode, p in row.modes().items()}


def markdown_table() -> str:
    """The docs table (docs/inference.md keeps a copy; tests/test_formats.py checks they agree)."""
    lines = ["| format | `--format` | output | runtime | extra | precisions | NMS in graph | dynamic shapes | backend |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in FORMATS:
        if not row.exporter:
            continue
        out = f"`best{row.suffix}{'/' if row.is_dir else ''}`"
        extra = f"`ghostdet[{row.extra}]`" if row.extra else "-"
        backend = f"`{row.backend.rsplit('.', 1)[-1]}`" if row.backend and row.detect else "- (not loaded)"
        lines.append(f"| {row.runtime} | `{row.name}` | {out} | {', '.join(row.packages)} | {extra} | "
                     f"{', '.join(row.precisions + tuple(h for h in row.hints if h not in row.precisions + ('auto',)))} | "
                     f"{'yes' if row.nms else 'no'} | {'yes' if row.dynamic else 'no'} | {backend} |")
    return "\n".join(lines)


def check_detectable(row: ExportFormat, path) -> None:
    if not row.detect:
        raise ConfigError(f"{path}: {row.runtime} files are not loaded by Detector ({row.note}); pass the .pt checkpoint "
                          "or another export")


__all__ = ["EXPORT_FORMATS", "FORMATS", "ExportFormat", "benchmark_modes", "check_detectable", "format_for_path",
           "get_format", "markdown_table", "missing_packages", "module_of", "require", "run_export"]
