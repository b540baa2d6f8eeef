"""CPU latency of the ghostdet model configs against ultralytics' YOLOv8n-ghost, measured in the same run.

The baseline is built from ultralytics' own ``yolov8n-ghost.yaml`` (random weights; latency does not depend on
them), so ultralytics must be importable — it is not a ghostdet dependency:

    pip install --no-deps --target /tmp/ul ultralytics && PYTHONPATH=/tmp/ul python benchmarks/bench_vs_yolov8n_ghost.py

Every model is timed in its deploy form (ghostdet: re-parameterized + BN folded; ultralytics: ``fuse()``), batch 1,
forward + box decoding for both (ghostdet: ``decode``, ultralytics: its ``export`` head; no NMS), in PyTorch eager
(NCHW and channels_last), ONNX Runtime and OpenVINO (fp32 and bf16 precision hints, latency hint, the same ONNX file;
bf16 only where the CPU reports BF16, ``-`` otherwise), and both runtimes in post-training int8: that same ONNX file
quantized for both sides by ``ghostdet.export.quantize`` (ONNX Runtime static QDQ, per-channel weights; NNCF on the
IR converted from it, run with the fp32 hint; the nodes after each model's last convolutions stay float), calibrated
on the same ``--calib-images`` photos (``--calib-dir``, default coco128's train images in ../shared/data,
letterboxed as at inference; synthetic scenes when the folder is missing). Random weights: latency only. Timings are interleaved (``ghostdet.utils.benchmark.compare_latency``):
each of ``--rounds`` rounds times every model in turn (median of ``--repeats`` after ``--warmup``), so drift in the
machine's speed hits all models alike; the table gives the median over rounds and the median per-round ratio
to YOLOv8n-ghost. ``--threads 1,2`` repeats the whole table per thread count; ``--backbones`` adds rows for each
config's backbone alone (deploy form), the floor any detector built on it starts from.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ghostdet.utils.timing import compare_latency, set_threads  # noqa: E402
from ghostdet.utils.flops import count_params_macs  # noqa: E402


BASELINE = "YOLOv8n-ghost (ultralytics)"


def ghostdet_model(name: str, overrides: Sequence[str] = (), num_classes: int = 80) -> torch.nn.Module:
    """The deploy form of config ``name`` (plus Hydra ``overrides``, e.g. ``model.reg_max=8``), forward + decode."""
    from hydra import compose, initialize_config_dir
    from ghostdet.models import build_model

    from ghostdet.export.onnx import DecodedOutputs, prepare_for_export

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", *overrides])
    return DecodedOutputs(prepare_for_export(build_model(cfg.model, num_classes=num_classes).eval()))


def yolov8n_ghost(num_classes: int = 80) -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n-ghost.yaml", nc=num_classes, verbose=False).eval().fuse(verbose=False)
    for m in model.modules():  # deployed form: decoded boxes + scores only, as ultralytics' own export does
        if hasattr(m, "export"):
            m.export = True
    return model


def onnx_file(model: torch.nn.Module, x: torch.Tensor, tmp: Path) -> Path:
    """``model`` exported to ONNX at ``x``'s shape (the same file feeds ONNX Runtime and OpenVINO)."""
    path = tmp / f"m{len(list(tmp.iterdir()))}.onnx"
    torch.onnx.export(model, (x,), str(path), opset_version=18, dynamo=False, input_names=["images"])
    return path


def ort_runner(path: Path, x: torch.Tensor, threads: int):
    """A callable running the ONNX file in an ONNX Runtime CPU session, or None without onnxruntime."""
    from ghostdet.eval.benchmark import onnxruntime_available, ort_session

    if not onnxruntime_available():
        return None
    sess = ort_session(path, threads)
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)


def ov_runner(path: Path, x: torch.Tensor, threads: int, precision: str):
    """A callable running the ONNX file in OpenVINO's CPU plugin (latency hint), or None when it cannot run here."""
    from ghostdet.eval.benchmark import openvino_runner, openvino_skip_reason

    if openvino_skip_reason("openvino-bf16" if precision == "bf16" else "openvino", torch.device("cpu")):
        return None
    return openvino_runner(path, x, threads, precision)


def calibration(folder: str | None, count: int, size: int) -> tuple[list, str]:
    """``count`` letterboxed 0-1 batches from the images in ``folder`` (sorted), else synthetic scenes."""
    from ghostdet.export.quantize import images_to_batches, synthetic_calibration

    path = Path(folder) if folder else ROOT.parent / "shared" / "data" / "coco128" / "images" / "train2017"
    files = sorted(p for p in path.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")) if path.is_dir() else []
    if files:
        return images_to_batches(files[:count], (size, size)), f"{min(count, len(files))} images of {path}"
    return synthetic_calibration((size, size), count), f"{count} synthetic scenes ({path} not found)"


def ort_int8_runner(path: Path, x: torch.Tensor, threads: int, images: list):
    """The ONNX file quantized to static QDQ int8 (ghostdet.export.quantize.quantize_onnx) in ONNX Runtime."""
    from ghostdet.eval.benchmark import onnxruntime_available
    from ghostdet.export.quantize import quantize_onnx

    if not onnxruntime_available():
        return None
    int8 = path.with_name(f"{path.stem}_int8.onnx")
    quantize_onnx(path, int8, images)
    return ort_runner(int8, x, threads)


def ov_int8_runner(path: Path, x: torch.Tensor, threads: int, images: list):
    """The ONNX file converted by OpenVINO and quantized with NNCF (fp32 hint for what stays float), or None."""
    from ghostdet.eval.benchmark import openvino_int8_ir, openvino_runner, openvino_skip_reason

    if openvino_skip_reason("openvino-int8", torch.device("cpu")):
        return None
    import openvino as ov

    return openvino_runner(openvino_int8_ir(ov.convert_model(str(path)), images), x, threads, "fp32")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ghost_yolo,repghost_yolo,ghostv2_yolo,gghost_yolo")
    p.add_argument("--sizes", default="640,320")
    p.add_argument("--threads", default="2", help="comma-separated thread counts; 0 = every CPU this process may use")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--no-onnx", action="store_true", help="no ONNX Runtime / OpenVINO columns")
    p.add_argument("--no-int8", action="store_true", help="no int8 columns")
    p.add_argument("--calib-dir", help="images to calibrate int8 on (default: ../shared/data/coco128/images/train2017)")
    p.add_argument("--calib-images", type=int, default=64, help="how many (default 64: the columns are latency only)")
    p.add_argument("--backbones", action="store_true", help="also time each config's backbone alone")
    args = p.parse_args()

    models = {}
    try:
        models[BASELINE] = yolov8n_ghost()
    except ImportError:
        print("ultralytics is not importable: no baseline (see the docstring)", file=sys.stderr)
    for name in args.models.split(","):
        models[name] = ghostdet_model(name)
    if args.backbones:  # the floor any detector on these backbones starts from
        for name in args.models.split(","):
            models[f"{name} backbone only"] = models[name].model.backbone
    baseline = BASELINE if BASELINE in models else None

    print(f"torch {torch.__version__}, batch 1, {args.rounds} interleaved rounds x median of {args.repeats} after "
          f"{args.warmup} warm-up; NCHW = eager, NHWC = channels_last model and input; ratio = median per-round "
          "latency / YOLOv8n-ghost's")
    print("| model | size | threads | params (M) | GFLOPs | PyTorch NCHW (ms) | PyTorch NHWC (ms) | ONNX Runtime (ms) "
          "| OpenVINO fp32 (ms) | OpenVINO bf16 (ms) | ORT int8 (ms) | OpenVINO int8 (ms) | NCHW ratio | NHWC ratio "
          "| ORT ratio | OV fp32 ratio | OV bf16 ratio | ORT int8 ratio | OV int8 ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for threads in (set_threads(int(t) or None) for t in args.threads.split(",")):
        for size in (int(s) for s in args.sizes.split(",")):
            x = torch.rand(1, 3, size, size)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            tmp = tempfile.TemporaryDirectory()
            runners, ov32, ov16, ort8, ov8 = {}, {}, {}, {}, {}
            if not args.no_onnx:  # exported before any timing: ultralytics caches inference-mode anchors
                with torch.no_grad():
                    files = {name: onnx_file(model, x, Path(tmp.name)) for name, model in models.items()}
                runners = {name: ort_runner(f, x, threads) for name, f in files.items()}
                ov32 = {name: ov_runner(f, x, threads, "fp32") for name, f in files.items()}
                ov16 = {name: ov_runner(f, x, threads, "bf16") for name, f in files.items()}
                if not args.no_int8:  # both sides quantized the same way, on the same images
                    images, source = calibration(args.calib_dir, args.calib_images, size)
                    print(f"int8 at {size}: calibrated on {source}", file=sys.stderr, flush=True)
                    files = {n: f for n, f in files.items() if not n.endswith("backbone only")}
                    ort8 = {name: ort_int8_runner(f, x, threads, images) for name, f in files.items()}
                    ov8 = {name: ov_int8_runner(f, x, threads, images) for name, f in files.items()}
            eager, nhwc = {}, {}
            for name, model in models.items():
                model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
                eager[name] = lambda m=model: m(x)
                nhwc[name] = lambda m=model_cl: m(x_cl)
            # each runtime in its own interleaved phase: no ONNX Runtime threads spin while PyTorch is timed
            with torch.inference_mode():
                timings = [compare_latency(fns, args.rounds, args.warmup, args.repeats, baseline)
                           for fns in (eager, nhwc)]
            for fns in (runners, ov32, ov16, ort8, ov8):  # one interleaved phase per runtime (no idle threads of another spin)
                ok = bool(fns) and all(r is not None for r in fns.values())
                timings.append(compare_latency(fns, args.rounds, args.warmup, args.repeats, baseline) if ok else {})
            tmp.cleanup()
            for name, model in models.items():
                params, macs = count_params_macs(model, (1, 3, size, size))
                cells = [f"{t[name]['median']:.1f}" if name in t else "-" for t in timings]
                ratios = [f"{t[name]['ratio']:.2f}" if name in t and "ratio" in t[name] else "-" for t in timings]
                print(f"| {name} | {size} | {threads} | {params / 1e6:.2f} | {2 * macs / 1e9:.2f} | "
                      f"{' | '.join(cells)} | {' | '.join(ratios)} |", flush=True)


if __name__ == "__main__":
    main()
