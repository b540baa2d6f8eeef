"""The peers' side of benchmarks/bench_edge.py: YOLO26n / YOLO11n converted with ghostdet's own converter steps
(ONNX -> pnnx for ncnn, ONNX -> MNNConvert and MNN's quantizer, torch.export -> litert-torch and ai-edge-quantizer,
flag for flag as ghostdet's exporters) and thin runners with the runtime options of ghostdet's backends (see
bench_edge.py's docstring for why ultralytics' own exporters are not used)."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import peers as peer_models

SEED = 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet():
    """Exporters' chatter (warnings, progress lines on stdout) kept off the table."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield



def peer_onnx(module: torch.nn.Module, size: int, path: Path) -> str:
    """The peer's deploy form as ONNX the way ghostdet's ``export_onnx`` writes its own (dynamo exporter, opset 18,
    optimised, fixed 1 x 3 x size x size, input ``images``); the TorchScript exporter (ultralytics' own) when the
    dynamo exporter fails. Returns which exporter wrote it."""
    from ghostdet.export.onnx import DEFAULT_OPSET

    x = torch.zeros(1, 3, size, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_log = logging.getLogger("torch.onnx")  # "Tensor 'model.23.stride' is not one of the initializers" (harmless)
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)
    with quiet(), torch.no_grad(), contextlib.ExitStack() as stack:
        stack.callback(onnx_log.setLevel, level)
        try:
            torch.onnx.export(module, (x,), str(path), input_names=["images"], opset_version=DEFAULT_OPSET,
                              dynamo=True, external_data=False, optimize=True, verbose=False)
            return "dynamo"
        except Exception as e:  # noqa: BLE001
            log(f"  dynamo ONNX export failed ({type(e).__name__}); TorchScript exporter instead")
            torch.onnx.export(module, (x,), str(path), input_names=["images"], opset_version=DEFAULT_OPSET,
                              dynamo=False)
            return "torchscript"


def cached_peer_onnx(name: str, module: torch.nn.Module, size: int, folder: Path, dest: Path) -> None:
    """``peer_onnx`` once per peer and size (ncnn and MNN, fp32 and fp16 all start from the same file), copied to
    ``dest``."""
    import shutil

    cache = folder / f".{name}_{size}.onnx"
    if not cache.exists():
        peer_onnx(module, size, cache.with_suffix(".tmp.onnx"))
        os.replace(cache.with_suffix(".tmp.onnx"), cache)
    shutil.copyfile(cache, dest)


def peer_export(name: str, fmt: str, precision: str, size: int, folder: Path, num_classes: int,
                calib: Callable[[], list], ul_site: str | None) -> Path:
    """Peer ``name`` converted with ghostdet's converter steps (see the module docstring); reused when present."""
    from ghostdet.export.formats import get_format

    row = get_format(fmt)
    stem = f"{name}_{size}"
    out = folder / f"{stem}_{precision}{row.suffix}"
    if out.exists():
        return out
    if precision == "int8":
        fp32 = peer_export(name, fmt, "fp32", size, folder, num_classes, calib, ul_site)
        module = __import__(f"ghostdet.export.{fmt}", fromlist=["quantize"])
        with quiet():
            module.quantize(fp32, out, calib())
        return out
    half = precision == "fp16"
    torch.manual_seed(SEED)
    model = peer_models.deploy_peer(name, size, num_classes)
    work = folder / f".{out.name}.work"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        if fmt == "ncnn":
            from ghostdet.export.ncnn import BIN_FILE, PARAM_FILE, convert_onnx

            cached_peer_onnx(name, model, size, folder, work / "model.onnx")
            convert_onnx(work, "model.onnx", (size, size), half)
            staged = work / "out"
            staged.mkdir()
            for f in (PARAM_FILE, BIN_FILE):
                os.replace(work / f, staged / f)
            os.replace(staged, out)
        elif fmt == "mnn":
            from ghostdet.export.mnn import convert, round_to_fp16

            cached_peer_onnx(name, model, size, folder, work / "model.onnx")
            if half:
                round_to_fp16(work / "model.onnx")
            convert(work / "model.onnx", work / "model.mnn", "ONNX", {"peer": name, "precision": precision},
                    fp16=half, what=f"MNNConvert (ONNX -> MNN{', fp16' if half else ''})")
            os.replace(work / "model.mnn", out)
        elif fmt == "litert":
            from ghostdet.export.litert import convert_program

            with quiet():
                program = torch.export.export(model, (torch.zeros(1, 3, size, size),), strict=False)
                torch.export.save(program, str(work / "model.pt2"))
            env = {}
            if ul_site:  # in case the saved program refers to ultralytics' classes
                env["PYTHONPATH"] = os.pathsep.join(p for p in (ul_site, os.environ.get("PYTHONPATH")) if p)
            convert_program(work, half, env)
            os.replace(work / "model.tflite", out)
        else:
            raise ValueError(fmt)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def peer_runner(path: Path, fmt: str, precision: str, threads: int) -> Callable:
    """``run(batch) -> [output]`` (one array with its batch axis, as ultralytics' AutoBackend returns it) with the
    runtime options of ghostdet's backend for ``fmt`` / ``precision``."""
    if fmt == "ncnn":
        from ghostdet.inference.backends.ncnn import BIN_FILE, PARAM_FILE, import_ncnn

        ncnn = import_ncnn()
        net = ncnn.Net()
        fp16 = precision == "fp16"  # as NcnnBackend: fp16 options follow the file
        net.opt.use_vulkan_compute = False
        net.opt.num_threads = threads
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = fp16
        net.opt.use_bf16_storage = False
        if net.load_param(str(path / PARAM_FILE)) != 0 or net.load_model(str(path / BIN_FILE)) != 0:
            raise RuntimeError(f"{path}: ncnn could not load it")
        inp, outs = net.input_names()[0], sorted(net.output_names())

        def run(batch):
            with net.create_extractor() as ex:
                ex.input(inp, ncnn.Mat(np.ascontiguousarray(batch[0], dtype=np.float32)))
                found = []
                for name in outs:
                    ret, mat = ex.extract(name)
                    if ret != 0:
                        raise RuntimeError(f"{path}: ncnn could not compute {name} (error {ret})")
                    found.append(np.array(mat)[None])
            return found

        run.net = net  # keep it alive
        return run
    if fmt == "mnn":
        from ghostdet.inference.backends.mnn import MNN_PRECISION, import_mnn, quiet_native_stdout

        MNN = import_mnn()
        with quiet_native_stdout():
            runtime = MNN.nn.create_runtime_manager(({"backend": "CPU", "precision": MNN_PRECISION[precision],
                                                      "numThread": threads},))
            info = MNN.nn.load_module_from_file(str(path), [], []).get_info() or {}
            inputs, outputs = list(info.get("inputNames") or []), list(info.get("outputNames") or [])
            fp32 = path.with_name(path.name.replace(f"_{precision}.mnn", "_fp32.mnn"))
            if len(outputs) > 1 and fp32 != path and fp32.exists():  # MNN's quantization tool lists inner tensors
                own = MNN.nn.load_module_from_file(str(fp32), [], []).get_info() or {}  # (YOLO26n's top-k
                outputs = [o for o in outputs if o in (own.get("outputNames") or [])] or outputs  # indices) as outputs
            module = MNN.nn.load_module_from_file(str(path), inputs, outputs, runtime_manager=runtime)
        expr = MNN.expr

        def run(batch):
            x = expr.const(np.ascontiguousarray(batch, dtype=np.float32), list(batch.shape), expr.NCHW)
            return [np.array(y.read(), dtype=np.float32).reshape(y.shape) for y in module.forward([x])]

        run.module = module
        return run
    if fmt == "litert":
        from ghostdet.inference.backends.litert import SIGNATURE, import_litert
        from ghostdet.inference.backends.mnn import quiet_native_output

        interpreter = import_litert()
        with quiet_native_output(1, 2):
            interp = interpreter.Interpreter(model_path=str(path), num_threads=threads)
            runner = interp.get_signature_runner(SIGNATURE)
        sig = interp.get_signature_list()[SIGNATURE]
        key, out_keys = sig["inputs"][0], sorted(sig["outputs"])
        detail = runner.get_input_details()[key]
        dtype = np.dtype(detail["dtype"])
        scale, zero = float(detail["quantization"][0]), int(detail["quantization"][1])

        def run(batch):
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if dtype.kind in "iu":  # an int8 input: quantized with the file's scale / zero point (as LiteRtBackend)
                info = np.iinfo(dtype)
                batch = np.clip(np.rint(batch / scale) + zero, info.min, info.max).astype(dtype)
            out = runner(**{key: batch})
            return [np.array(out[k], dtype=np.float32) for k in out_keys]

        with quiet_native_output(1, 2):  # XNNPACK's first-run notice
            run(np.zeros(tuple(int(s) for s in detail["shape"]), np.float32))
        run.interp = interp
        return run
    raise ValueError(fmt)
