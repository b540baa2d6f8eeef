"""Model benchmark: parameters, GFLOPs, latency in PyTorch eager / fused+re-parameterized and in every exported runtime
of the format table (``ghostdet.export.formats``: ONNX Runtime fp32/int8, OpenVINO fp32/bf16/int8, ncnn, MNN, LiteRT
...), and with data the mAP of every mode.

Every latency is ``ghostdet.utils.timing.measure_latency`` (warm-up, then the median of ``repeats``) of the deployable
graph ``images -> (boxes, scores)``: the detector's ``forward`` + ``decode``, which is also exactly what each export
computes. An exported mode runs through its backend (``ghostdet.inference.backends``), the very object ``Detector``
uses, with ``threads`` threads; NMS is left out (its cost depends on the scene and on ``conf``).

The int8 modes quantize the export with the format's own quantizer (``ghostdet.export.quantizers``: ONNX Runtime static
QDQ, NNCF for OpenVINO, decode tail in float), calibrated on the images passed as ``calibration``
(``tools/benchmark.py``: the train split of ``data=``), else on synthetic scenes (latency only).
"""
from __future__ import annotations

import copy
import logging
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ghostdet.export.formats import benchmark_modes, missing_packages, module_of
from ghostdet.utils.device import cpu_name
from ghostdet.utils.errors import ConfigError, GhostdetError
from ghostdet.utils.timing import measure_latency

LOGGER = logging.getLogger(__name__)

RUNTIME_MODES = benchmark_modes()  # {mode: (format row, precision)}
MODES = ("eager", "fused", *RUNTIME_MODES)
LABELS = {"eager": "PyTorch", "fused": "PyTorch fused",
          **{m: row.runtime + ("" if p == "fp32" else f" {p}") for m, (row, p) in RUNTIME_MODES.items()}}
SYNTHETIC_CALIBRATION = 32  # synthetic scenes the int8 modes calibrate on when no images are given


def onnxruntime_available() -> bool:
    return not missing_packages(RUNTIME_MODES["onnxruntime"][0])


def skip_reason(mode: str, device: torch.device) -> str | None:
    """Why ``mode`` cannot run here (None: it can): CPU only, a package or module missing, a CPU feature missing."""
    if mode in ("eager", "fused"):
        return None
    row, precision = RUNTIME_MODES[mode]
    if device.type != "cpu":
        return "CPU only"
    missing = missing_packages(row, export=True, int8=precision == "int8")
    if missing:
        return f"{', '.join(missing)} not installed (pip install 'ghostdet[{row.extra}]')"
    try:
        module = module_of(row, "backend")
        module_of(row, "exporter")
    except ConfigError as e:
        return str(e)
    check = getattr(module, "unavailable", None)
    return check(precision) if check else None


class _Exports:
    """The exports a benchmark runs, written once per (format, batch, precision) into one temporary folder."""

    def __init__(self, model: torch.nn.Module, imgsz: int, folder: str, calibration):
        self.model, self.imgsz, self.folder, self.calibration = model, imgsz, Path(folder), calibration
        self.paths: dict[tuple[str, int, str], Path] = {}

    def path(self, row, batch: int, precision: str) -> Path:
        from ghostdet.export.formats import run_export

        file_precision = "fp32" if precision in row.hints else precision
        key = (row.name, batch, file_precision)
        if key not in self.paths:
            out = self.folder / f"model_b{batch}_{file_precision}{row.suffix}"
            if file_precision == "int8":
                module_of(row).quantize(self.path(row, batch, "fp32"), out, self.calibration)
            else:
                run_export(row, self.model, out, self.imgsz, batch=batch, half=file_precision == "fp16")
            self.paths[key] = out
        return self.paths[key]

    def backend(self, row, batch: int, precision: str, threads: int):
        from ghostdet.inference.backends import load_backend

        hint = precision if precision in row.hints else ("fp32" if row.hints else None)
        return load_backend(self.path(row, batch, precision), row.name, precision=hint, threads=threads)


@torch.inference_mode()
def benchmark_model(
    model: torch.nn.Module,
    imgsz: int = 640,
    batch_sizes: Sequence[int] = (1, 8),
    modes: Sequence[str] = MODES,
    warmup: int = 3,
    repeats: int = 10,
    threads: int = 1,
    device: str | torch.device = "cpu",
    onnx_dir: str | Path | None = None,
    calibration: Sequence[np.ndarray] | None = None,
    calibration_source: str = "",
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
) -> dict[str, Any]:
    """Params, GFLOPs at ``imgsz`` and latency of ``model`` (a GhostYOLO) for each mode and batch size.

    Returns ``{"params", "gflops", "latency": {mode: {batch: measure_latency dict}}, "skipped": {mode: why}}``.
    ``modes``: names of ``MODES`` (``all``: every one). ``fused`` is a BN-folded, re-parameterized copy (the deploy
    form); an exported mode writes that form with its format's exporter (fixed shape per batch size, into a temporary
    folder under ``onnx_dir``) and runs it through its backend with ``threads`` threads; a mode whose package, module
    or CPU feature is missing is skipped with the reason in ``skipped``. ``-int8`` modes quantize the export with the
    format's quantizer calibrated on ``calibration`` (1 x 3 x imgsz x imgsz float 0-1 batches, preprocessed as at
    inference; described by ``calibration_source``), else on ``SYNTHETIC_CALIBRATION`` synthetic scenes.
    ``evaluate``: a callable ``model -> {"mAP50-95", "mAP50"}`` (e.g. ``ghostdet.export.accuracy.evaluate_runtime``
    on a val split); each mode at the first batch size is evaluated with it into ``mode_metrics`` (an export as a
    ``BackendModule``). Returns also ``calibration`` (what the int8 modes calibrated on, or None). ``model`` itself
    is not changed.
    """
    from ghostdet.export.onnx import prepare_for_export
    from ghostdet.inference.backends import BackendModule
    from ghostdet.utils.flops import count_params, gflops

    modes = list(MODES) if "all" in modes else list(modes)
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ConfigError(f"unknown benchmark mode(s) {sorted(unknown)}; choose from all, {', '.join(MODES)}")
    device = torch.device(device)
    model = copy.deepcopy(model).to(device).eval()
    out: dict[str, Any] = {"params": count_params(model), "gflops": gflops(model, imgsz), "latency": {}, "skipped": {},
                           "mode_metrics": {}, "calibration": None}
    deploy = prepare_for_export(model, device=device)
    out["params_fused"] = sum(p.numel() for p in deploy.parameters())
    generator = torch.Generator().manual_seed(0)
    inputs = {b: torch.rand(b, 3, imgsz, imgsz, generator=generator).to(device) for b in batch_sizes}

    if any(m.endswith("-int8") for m in modes):
        if calibration is None:
            from ghostdet.export.calibration import synthetic_calibration

            calibration = synthetic_calibration((imgsz, imgsz), SYNTHETIC_CALIBRATION)
            calibration_source = f"{len(calibration)} synthetic scenes (no data given: latency only)"
        out["calibration"] = calibration_source or f"{len(calibration)} images"
    num_classes = int(getattr(model, "num_classes", 0)) or None
    eval_batch = batch_sizes[0]
    with tempfile.TemporaryDirectory(dir=onnx_dir) as tmp:
        exports = _Exports(model, imgsz, tmp, calibration)
        for mode in modes:
            reason = skip_reason(mode, device)
            if reason:
                out["skipped"][mode] = reason
                LOGGER.info("skipping %s: %s", LABELS[mode], reason)
                continue
            out["latency"][mode] = {}
            for b in batch_sizes:
                if mode in ("eager", "fused"):
                    target = model if mode == "eager" else deploy
                    run = (lambda m=target, x=inputs[b]: m.decode(m(x)))
                    stats = measure_latency(run, warmup, repeats, device)
                else:
                    row, precision = RUNTIME_MODES[mode]
                    try:
                        backend = exports.backend(row, b, precision, threads)
                    except GhostdetError as e:  # an export or quantizer this model/runtime cannot do: noted, not fatal
                        out["skipped"][mode] = str(e)
                        LOGGER.warning("skipping %s: %s", LABELS[mode], e)
                        out["latency"].pop(mode, None)
                        break
                    feed = np.ascontiguousarray(inputs[b].cpu().numpy())
                    stats = measure_latency(lambda r=backend, f=feed: r(f), warmup, repeats)
                    target = BackendModule(backend, num_classes or 0, b)
                if evaluate is not None and b == eval_batch and num_classes:
                    out["mode_metrics"][mode] = evaluate(target)
                    LOGGER.info("%-16s mAP50-95 %.4f mAP50 %.4f", mode, out["mode_metrics"][mode]["mAP50-95"],
                                out["mode_metrics"][mode]["mAP50"])
                stats["per_image"] = stats["median"] / b
                out["latency"][mode][b] = stats
                LOGGER.info("%-11s batch %-3d median %.2f ms (%.2f ms/image)", mode, b, stats["median"], stats["per_image"])
    return out


# ---------------------------------------------------------------- runtimes for foreign graphs (benchmarks/ scripts)
def ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session for any ONNX file (a peer's too) with ghostdet's one set-up and ``threads``."""
    from ghostdet.inference.backends.onnxruntime import onnx_session

    return onnx_session(path, "cpu", threads)


def openvino_ir(model: torch.nn.Module, x: torch.Tensor):
    """``model`` (a GhostYOLO) exported with ``export_openvino`` at ``x``'s shape, read back as an ``openvino.Model``."""
    import openvino as ov

    from ghostdet.export.openvino import export_openvino

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_openvino(model, Path(tmp) / "model_openvino", imgsz=tuple(x.shape[-2:]), batch=x.shape[0])
        return ov.Core().read_model(str(folder / "model.xml"))


def openvino_runner(ir, x: torch.Tensor, threads: int, precision: str = "fp32", compiled_out: list | None = None):
    """A callable running ``ir`` (an ``openvino.Model``, or an ONNX path OpenVINO converts) on ``x`` with ghostdet's
    CPU set-up (``ghostdet.inference.backends.openvino.compile_model``); for peers' graphs, whose outputs differ."""
    from ghostdet.inference.backends.openvino import compile_model

    if isinstance(ir, (str, Path)):
        import openvino as ov

        ir = ov.convert_model(str(ir))
    compiled, _, _ = compile_model(ir, precision, threads)
    if compiled_out is not None:
        compiled_out.append(compiled)
    request, feed = compiled.create_infer_request(), {0: x.cpu().numpy()}
    return lambda: request.infer(feed)


def openvino_int8_ir(ir, calibration):
    """The fp32 ``openvino.Model`` quantized with NNCF (``ghostdet.export.quantizers.quantize_openvino_model``)."""
    from ghostdet.export.quantizers import quantize_openvino_model

    return quantize_openvino_model(ir, calibration)[0]


def openvino_skip_reason(mode: str, device: torch.device) -> str | None:
    """Why an OpenVINO mode cannot run here (None: it can)."""
    return skip_reason(mode, device)


def environment(threads: int, device: str | torch.device = "cpu") -> dict[str, Any]:
    """What the figures depend on: versions, CPU, threads, and how busy the machine was (1-min load average)."""
    env = {"torch": torch.__version__, "threads": threads, "device": str(device), "python": platform.python_version(),
           "machine": platform.machine(), "cpu": cpu_name(), "cpus": os.cpu_count(), "onnxruntime": None, "openvino": None,
           "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if env["load_avg_1m"] is not None and env["load_avg_1m"] > (os.cpu_count() or 1):
        LOGGER.warning("the machine is busy (load average %.1f on %d CPUs): latencies will be inflated and noisy; "
                       "with threads > 1 PyTorch's OpenMP threads wait on descheduled siblings (10x slower is "
                       "common), so prefer threads=1 there", env["load_avg_1m"], os.cpu_count() or 1)
    if onnxruntime_available():
        import onnxruntime

        env["onnxruntime"] = onnxruntime.__version__
    try:
        import openvino

        env["openvino"] = openvino.__version__.split("-")[0]
    except ImportError:
        pass
    if torch.device(device).type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def benchmark_rows(results: Sequence[dict], batch_sizes: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of the benchmark table: one row per model.

    ``results``: dicts with ``name``, ``imgsz`` and the ``benchmark_model`` output, plus ``metrics`` (or None).
    Batch 1 columns are ms per image; batch N columns are ms per image of a batch of N (median batch time / N).
    """
    labels = LABELS
    modes = [m for m in MODES if any(m in r["latency"] for r in results)]
    headers = ["model", "size", "params (M)", "GFLOPs"]
    headers += [f"{labels[m]} b{b} (ms{'/img' if b > 1 else ''})" for b in batch_sizes for m in modes]
    headers += ["mAP50-95", "mAP50"]
    rows = []
    for r in results:
        row = [r["name"], str(r["imgsz"]), f"{r['params'] / 1e6:.2f}", f"{r['gflops']:.2f}"]
        for b in batch_sizes:
            for m in modes:
                stats = r["latency"].get(m, {}).get(b)
                row.append(f"{stats['per_image']:.1f}" if stats else "-")
        metrics = r.get("metrics")
        row += [f"{metrics['AP']:.3f}", f"{metrics['AP50']:.3f}"] if metrics else ["-", "-"]
        rows.append(row)
    return headers, rows


def mode_rows(results: Sequence[dict], batch_sizes: Sequence[int]) -> tuple[list[str], list[list[str]]]:
    """The speed-accuracy table, one row per (model, mode): latency at each batch size next to that mode's own mAP
    (``mode_metrics``, measured when ``benchmark_model`` got ``evaluate``) and the speed-up over ONNX Runtime fp32."""
    headers = ["model", "mode"] + [f"b{b} (ms{'/img' if b > 1 else ''})" for b in batch_sizes]
    headers += ["speed-up vs ONNX Runtime fp32", "mAP50-95", "mAP50"]
    rows = []
    for r in results:
        base = r["latency"].get("onnxruntime", {}).get(batch_sizes[0])
        for m in MODES:
            if m not in r["latency"]:
                continue
            row = [r["name"], LABELS[m]]
            row += [f"{r['latency'][m][b]['per_image']:.1f}" if b in r["latency"][m] else "-" for b in batch_sizes]
            first = r["latency"][m].get(batch_sizes[0])
            row.append(f"{base['per_image'] / first['per_image']:.2f}x" if base and first else "-")
            metrics = (r.get("mode_metrics") or {}).get(m)
            row += [f"{metrics['mAP50-95']:.4f}", f"{metrics['mAP50']:.4f}"] if metrics else ["-", "-"]
            rows.append(row)
    return headers, rows
