"""Model benchmark: parameters, GFLOPs, latency in PyTorch eager / fused+re-parameterized / ONNX Runtime (fp32, int8) /
OpenVINO (fp32, bf16, int8), and with data the mAP of every mode.

Every latency is ``ghostdet.utils.timing.measure_latency`` (warm-up, then the median of ``repeats``)
of the deployable graph ``images -> (boxes, scores)``: the detector's ``forward`` + ``decode``, which is
also exactly what the ONNX file computes. NMS is left out (its cost depends on the scene and on ``conf``;
``tools/eval.py`` reports it as post-processing).

The int8 modes quantize that export after training (``ghostdet.export.quantize``: ONNX Runtime static QDQ, NNCF for
OpenVINO, decode tail in float), calibrated on the images passed as ``calibration`` (``tools/benchmark.py``: the train
split of ``data=``), else on synthetic scenes (``synthetic_calibration``: fine for latency, not for accuracy).
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

from ghostdet.utils.device import cpu_name
from ghostdet.utils.timing import measure_latency

LOGGER = logging.getLogger(__name__)

MODES = ("eager", "fused", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8")
LABELS = {"eager": "PyTorch", "fused": "PyTorch fused", "onnxruntime": "ONNX Runtime", "onnxruntime-int8": "ONNX Runtime int8",
          "openvino": "OpenVINO", "openvino-bf16": "OpenVINO bf16", "openvino-int8": "OpenVINO int8"}
SYNTHETIC_CALIBRATION = 32  # synthetic scenes the int8 modes calibrate on when no images are given


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _decoded(model: torch.nn.Module):
    def run(x):
        return model.decode(model(x))

    return run


def ort_session(path: Path, threads: int):
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads: the same set-up as ``Detector``
    (``inference.predictor.onnx_session``), with the same thread budget as PyTorch, or the comparison is unfair."""
    from ghostdet.inference.predictor import onnx_session

    return onnx_session(path, "cpu", threads)


def openvino_ir(model: torch.nn.Module, x: torch.Tensor):
    """``model`` (a GhostYOLO) exported with ``export_openvino`` at ``x``'s shape, read back as an ``openvino.Model``."""
    import openvino as ov

    from ghostdet.export.openvino import export_openvino

    with tempfile.TemporaryDirectory() as tmp:
        folder = export_openvino(model, Path(tmp) / "model_openvino", imgsz=tuple(x.shape[-2:]), batch=x.shape[0])
        return ov.Core().read_model(str(folder / "model.xml"))


def openvino_runner(ir, x: torch.Tensor, threads: int, precision: str = "fp32", compiled_out: list | None = None):
    """A callable running ``ir`` (an ``openvino.Model``, or an ONNX path OpenVINO converts) on ``x`` in OpenVINO's CPU
    plugin with the latency hint, ``precision`` (fp32/bf16) and ``threads`` threads (every benchmark uses this).
    ``compiled_out``: a list the compiled model is appended to (to evaluate it too)."""
    from ghostdet.inference.openvino import compile_model

    if isinstance(ir, (str, Path)):
        import openvino as ov

        ir = ov.convert_model(str(ir))
    compiled, _, _ = compile_model(ir, precision, threads)
    if compiled_out is not None:
        compiled_out.append(compiled)
    request, feed = compiled.create_infer_request(), {0: x.cpu().numpy()}
    return lambda: request.infer(feed)  # outputs as numpy arrays, like ONNX Runtime's session.run


def ort_int8_session(model: torch.nn.Module, b: int, imgsz: int, threads: int, calibration, tmp: str | Path):
    """``model`` exported at batch ``b`` and quantized to static QDQ int8 (``ghostdet.export.quantize.quantize_onnx``,
    calibrated on ``calibration``), in an ONNX Runtime session."""
    from ghostdet.export.onnx import export_onnx
    from ghostdet.export.quantize import quantize_onnx

    path = export_onnx(model, Path(tmp) / f"model_b{b}.onnx", imgsz=imgsz, batch=b)
    quantize_onnx(path, Path(tmp) / f"model_b{b}_int8.onnx", calibration)
    return ort_session(Path(tmp) / f"model_b{b}_int8.onnx", threads)


def openvino_int8_ir(ir, calibration):
    """The fp32 ``openvino.Model`` quantized with NNCF (``ghostdet.export.quantize.quantize_openvino_model``)."""
    from ghostdet.export.quantize import quantize_openvino_model

    return quantize_openvino_model(ir, calibration)[0]


def session_runner(session):
    """``batch -> (boxes, scores)`` of an ONNX Runtime session (for evaluating it)."""
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[:2]


def compiled_runner(compiled):
    """``batch -> (boxes, scores)`` of an OpenVINO compiled model (for evaluating it); outputs found by name."""
    request = compiled.create_infer_request()
    names = [set(o.get_names()) for o in compiled.outputs]
    order = [1, 0] if "boxes" in names[1] and "scores" in names[0] else [0, 1]

    def run(batch):
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return tuple(np.array(request.get_output_tensor(i).data, dtype=np.float32) for i in order)

    return run


def openvino_skip_reason(mode: str, device: torch.device) -> str | None:
    """Why an OpenVINO mode cannot run here (None: it can)."""
    from ghostdet.inference.openvino import cpu_supports_bf16, openvino_available

    if device.type != "cpu":
        return "CPU only"
    if not openvino_available():
        return "openvino not installed (pip install 'ghostdet[openvino]')"
    if mode == "openvino-bf16" and not cpu_supports_bf16():
        return "this CPU does not report BF16 to OpenVINO (needs AVX512-BF16 or AMX)"
    if mode == "openvino-int8":
        from ghostdet.export.quantize import nncf_available

        if not nncf_available():
            return "nncf not installed (pip install 'ghostdet[openvino]')"
    return None


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
    ``fused`` is a BN-folded, re-parameterized copy (the deploy form); ``onnxruntime`` exports that
    form with ``ghostdet.export.export_onnx`` (fixed shape per batch size) and runs it on the CPU
    provider with ``threads`` intra-op threads; ``openvino`` / ``openvino-bf16`` export it with
    ``export_openvino`` and run it on OpenVINO's CPU plugin (latency hint, fp32 / bf16 precision hint, ``threads``
    threads); they are skipped, with the reason in ``skipped``, without openvino or (bf16) without CPU BF16 support.
    ``onnxruntime-int8`` / ``openvino-int8`` quantize those exports (static QDQ / NNCF, decode tail float) calibrated
    on ``calibration`` (1 x 3 x imgsz x imgsz float 0-1 batches, preprocessed as at inference; described by
    ``calibration_source``), else on ``SYNTHETIC_CALIBRATION`` synthetic scenes; skipped without onnxruntime / nncf.
    ``evaluate``: a callable ``model -> {"mAP50-95", "mAP50"}`` (e.g. ``ghostdet.export.quantize.evaluate_runtime`` on
    a val split); each mode's runtime at the first batch size is evaluated with it into ``mode_metrics``.
    Returns also ``calibration`` (what the int8 modes calibrated on, or None). ``model`` itself is not changed.
    """
    from ghostdet.export.onnx import export_onnx, prepare_for_export
    from ghostdet.utils.flops import count_params, gflops

    unknown = set(modes) - set(MODES)
    if unknown:
        from ghostdet.utils.errors import ConfigError

        raise ConfigError(f"unknown benchmark mode(s) {sorted(unknown)}; choose from {', '.join(MODES)}")
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
            from ghostdet.export.quantize import synthetic_calibration

            calibration = synthetic_calibration((imgsz, imgsz), SYNTHETIC_CALIBRATION)
            calibration_source = f"{len(calibration)} synthetic scenes (no data given: latency only)"
        out["calibration"] = calibration_source or f"{len(calibration)} images"
    num_classes = int(getattr(model, "num_classes", 0)) or None
    eval_batch = batch_sizes[0]

    irs: dict[int, Any] = {}
    for mode in modes:
        if mode.startswith("onnxruntime") and (device.type != "cpu" or not onnxruntime_available()):
            out["skipped"][mode] = "onnxruntime not installed" if device.type == "cpu" else "CPU only"
            LOGGER.info("skipping ONNX Runtime: %s", out["skipped"][mode])
            continue
        if mode.startswith("openvino"):
            reason = openvino_skip_reason(mode, device)
            if reason:
                out["skipped"][mode] = reason
                LOGGER.info("skipping %s: %s", LABELS[mode], reason)
                continue
        out["latency"][mode] = {}
        for b in batch_sizes:
            evaluated = None  # what evaluate() scores for this mode (at the first batch size)
            if mode.startswith("onnxruntime"):
                with tempfile.TemporaryDirectory(dir=onnx_dir) as tmp:
                    if mode == "onnxruntime-int8":
                        session = ort_int8_session(model, b, imgsz, threads, calibration, tmp)
                    else:
                        path = export_onnx(model, Path(tmp) / f"model_b{b}.onnx", imgsz=imgsz, batch=b)
                        session = ort_session(path, threads)
                feed = {session.get_inputs()[0].name: inputs[b].cpu().numpy()}
                stats = measure_latency(lambda s=session, f=feed: s.run(None, f), warmup, repeats)
                evaluated = ("runtime", session_runner(session))
            elif mode.startswith("openvino"):
                if b not in irs:  # one export per batch size for every precision
                    irs[b] = openvino_ir(model, inputs[b])
                ir = openvino_int8_ir(irs[b], calibration) if mode == "openvino-int8" else irs[b]
                compiled: list = []
                run = openvino_runner(ir, inputs[b], threads, "bf16" if mode == "openvino-bf16" else "fp32", compiled)
                stats = measure_latency(run, warmup, repeats)
                evaluated = ("runtime", compiled_runner(compiled[0]))
            else:
                run = _decoded(model if mode == "eager" else deploy)
                stats = measure_latency(lambda r=run, x=inputs[b]: r(x), warmup, repeats, device)
                evaluated = ("torch", model if mode == "eager" else deploy)
            if evaluate is not None and b == eval_batch and num_classes:
                from ghostdet.export.quantize import RuntimeModel

                kind, target = evaluated
                target = RuntimeModel(target, num_classes, b) if kind == "runtime" else target
                out["mode_metrics"][mode] = evaluate(target)
                LOGGER.info("%-16s mAP50-95 %.4f mAP50 %.4f", mode, out["mode_metrics"][mode]["mAP50-95"],
                            out["mode_metrics"][mode]["mAP50"])
            stats["per_image"] = stats["median"] / b
            out["latency"][mode][b] = stats
            LOGGER.info("%-11s batch %-3d median %.2f ms (%.2f ms/image)", mode, b, stats["median"], stats["per_image"])
    return out


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
