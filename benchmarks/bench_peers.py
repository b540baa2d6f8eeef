"""End-to-end CPU latency of ghostdet configs against ultralytics' nano models (YOLO26n, YOLO11n, YOLOv8n-ghost),
measured in the same run.

    pip install --no-deps --target /tmp/ul ultralytics        # once; ultralytics is never a ghostdet dependency
    python benchmarks/bench_peers.py --sizes 320 --num-classes 1
    python benchmarks/bench_peers.py --peers yolo26n yolo26n-nms --models gghost_yolo --sizes 256 320 416
    python benchmarks/bench_peers.py --forward-only              # forward + decode only, the figures before end-to-end

The peers are built from ultralytics' own yaml files (random weights; ``benchmarks/peers.py`` finds ultralytics:
``--ul-path`` default /tmp/ul, or ``--ul-python``) and put in the form ultralytics exports for ONNX Runtime and
OpenVINO (``peers.deploy_peer``: YOLO26n with its NMS-free one-to-one head, top-k inside the graph). ghostdet configs
are in their deploy form (re-parameterized, BatchNorm folded), forward + decode (``DecodedOutputs``).

**End to end** (the default): each timed call takes the next real photo (``dog.jpg`` and raccoon val photos,
letterboxed once beforehand: the same input for every model of a size), runs the model and the post-processing each
tool runs after its runtime, at conf 0.25: ghostdet's ``models.postprocess`` (class-aware NMS, the ``Detector``'s
IoU/max_det) + boxes back to the photo; ultralytics' ``non_max_suppression`` (YOLO11n / YOLOv8n-ghost: NMS at IoU
0.7; YOLO26n: confidence filter of its top-k) + ``scale_boxes``. Random weights make few boxes pass conf 0.25, so
the NMS share here is a floor; ``bench_front.py`` times the trained weights.

Runtimes: PyTorch eager (NCHW and channels_last), ONNX Runtime and OpenVINO (fp32 and bf16 precision hints, latency
hint, the same ONNX file; bf16 only where the CPU reports BF16 — avx512_bf16 or AMX —, ``-`` otherwise), and both
runtimes in post-training int8: that same ONNX file quantized for every model by ``ghostdet.export.quantize`` (ONNX
Runtime static QDQ, per-channel weights; NNCF on the IR converted from it, run with the fp32 hint; the nodes after
each model's last convolutions stay float), calibrated on the same ``--calib-images`` photos (``--calib-dir``,
default coco128's train images in ../shared/data, letterboxed as at inference; synthetic scenes when missing).
Timings are interleaved (``ghostdet.utils.timing.compare_latency``): each of ``--rounds`` rounds times every model in
turn (median of ``--repeats`` after ``--warmup``), one phase per runtime; the table gives the median over rounds and
the median per-round ratio to ``--baseline`` (default: the first peer). ``--threads 1 2`` repeats the table per
thread count; ``--backbones`` adds each config's backbone alone (forward only), the floor any detector on it starts
from.

(Formerly ``bench_vs_yolov8n_ghost.py``, which still runs this script and keeps its imports working.)
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import peers as peer_models  # noqa: E402
from ghostdet.utils.flops import count_params_macs  # noqa: E402
from ghostdet.utils.timing import compare_latency, set_threads  # noqa: E402

BASELINE = "YOLOv8n-ghost (ultralytics)"  # the old script's row name (profile_runtimes.py)
RUNTIMES = ("PyTorch NCHW", "PyTorch NHWC", "ONNX Runtime fp32", "OpenVINO fp32", "OpenVINO bf16", "ONNX Runtime int8",
            "OpenVINO int8")


# ------------------------------------------------------------------------------------------------------- models
def ghostdet_model(name: str, overrides: Sequence[str] = (), num_classes: int = 80) -> torch.nn.Module:
    """The deploy form of config ``name`` (plus Hydra ``overrides``, e.g. ``model.reg_max=8``), forward + decode."""
    from hydra import compose, initialize_config_dir

    from ghostdet.export.onnx import DecodedOutputs, prepare_for_export
    from ghostdet.models import build_model

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}", *overrides])
    return DecodedOutputs(prepare_for_export(build_model(cfg.model, num_classes=num_classes).eval()))


def ghostdet_checkpoint_model(weights: str | Path) -> torch.nn.Module:
    """A trained ghostdet checkpoint in the same deploy form (forward + decode)."""
    from ghostdet.export.onnx import DecodedOutputs, prepare_for_export
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    model, _ = build_model_from_checkpoint(weights)
    return DecodedOutputs(prepare_for_export(model.eval()))


def yolov8n_ghost(num_classes: int = 80, imgsz: int = 640) -> torch.nn.Module:
    """ultralytics' YOLOv8n-ghost in its export form (kept for profile_runtimes.py)."""
    peer_models.ensure_ultralytics()
    return peer_models.deploy_peer("yolov8n-ghost", imgsz, num_classes)


def onnx_file(model: torch.nn.Module, x: torch.Tensor, tmp: Path) -> Path:
    """``model`` exported to ONNX at ``x``'s shape (the same file feeds ONNX Runtime and OpenVINO)."""
    path = tmp / f"m{len(list(tmp.iterdir()))}.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice, once per model
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (x,), str(path), opset_version=18, dynamo=False, input_names=["images"])
    return path


# ----------------------------------------------------------------------------- runtimes: batch (numpy) -> outputs
def torch_run(model: torch.nn.Module, channels_last: bool = False) -> Callable:
    """PyTorch eager on a numpy batch (call under ``torch.inference_mode``)."""
    if channels_last:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        return lambda batch: model(torch.from_numpy(batch).contiguous(memory_format=torch.channels_last))
    return lambda batch: model(torch.from_numpy(batch))


def ort_run(path: Path, threads: int) -> Callable | None:
    """The ONNX file in an ONNX Runtime CPU session (the Detector's set-up, ``threads`` intra-op threads), or None
    without onnxruntime."""
    from ghostdet.eval.benchmark import onnxruntime_available, ort_session

    if not onnxruntime_available():
        return None
    sess = ort_session(path, threads)
    name = sess.get_inputs()[0].name
    return lambda batch: sess.run(None, {name: batch})


def _ov_compiled_run(ir, shape, threads: int, precision: str) -> Callable:
    from ghostdet.eval.benchmark import openvino_runner

    compiled: list = []
    openvino_runner(ir, torch.zeros(shape), threads, precision, compiled_out=compiled)
    request = compiled[0].create_infer_request()
    count = len(compiled[0].outputs)

    def run(batch):
        request.infer({0: batch})
        return [request.get_output_tensor(i).data for i in range(count)]  # numpy views, like ORT's outputs

    return run


def ov_run(path: Path, shape, threads: int, precision: str) -> Callable | None:
    """The ONNX file in OpenVINO's CPU plugin (latency hint, ``precision`` fp32/bf16), or None when it cannot run."""
    from ghostdet.eval.benchmark import openvino_skip_reason

    if openvino_skip_reason("openvino-bf16" if precision == "bf16" else "openvino", torch.device("cpu")):
        return None
    return _ov_compiled_run(path, shape, threads, precision)


def calibration(folder: str | None, count: int, size: int) -> tuple[list, str]:
    """``count`` letterboxed 0-1 batches from the images in ``folder`` (sorted), else synthetic scenes."""
    from ghostdet.export.quantize import images_to_batches, synthetic_calibration

    path = Path(folder) if folder else peer_models.SHARED / "coco128" / "images" / "train2017"
    files = sorted(p for p in path.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")) if path.is_dir() else []
    if files:
        return images_to_batches(files[:count], (size, size)), f"{min(count, len(files))} images of {path}"
    return synthetic_calibration((size, size), count), f"{count} synthetic scenes ({path} not found)"


def ort_int8_run(path: Path, threads: int, images: list) -> Callable | None:
    """The ONNX file quantized to static QDQ int8 (ghostdet.export.quantize.quantize_onnx) in ONNX Runtime."""
    from ghostdet.eval.benchmark import onnxruntime_available
    from ghostdet.export.quantize import quantize_onnx

    if not onnxruntime_available():
        return None
    int8 = path.with_name(f"{path.stem}_int8.onnx")
    quantize_onnx(path, int8, images)
    return ort_run(int8, threads)


def ov_int8_run(path: Path, shape, threads: int, images: list) -> Callable | None:
    """The ONNX file converted by OpenVINO and quantized with NNCF (fp32 hint for what stays float), or None."""
    from ghostdet.eval.benchmark import openvino_int8_ir, openvino_skip_reason

    if openvino_skip_reason("openvino-int8", torch.device("cpu")):
        return None
    import openvino as ov

    return _ov_compiled_run(openvino_int8_ir(ov.convert_model(str(path)), images), shape, threads, "fp32")


# the fixed-input runners of the earlier script (profile_runtimes.py and older notes use them)
def _bound(run: Callable | None, x: torch.Tensor) -> Callable | None:
    batch = x.numpy()
    return None if run is None else (lambda: run(batch))


def ort_runner(path: Path, x: torch.Tensor, threads: int):
    return _bound(ort_run(path, threads), x)


def ov_runner(path: Path, x: torch.Tensor, threads: int, precision: str):
    return _bound(ov_run(path, tuple(x.shape), threads, precision), x)


def ort_int8_runner(path: Path, x: torch.Tensor, threads: int, images: list):
    return _bound(ort_int8_run(path, threads, images), x)


def ov_int8_runner(path: Path, x: torch.Tensor, threads: int, images: list):
    return _bound(ov_int8_run(path, tuple(x.shape), threads, images), x)


# --------------------------------------------------------------------------------------------- one interleaved run
def runtime_makers(files: dict, shape, threads: int, calib: list | None, models: dict | None = None) -> dict:
    """``{runtime: make(name) -> run or None}`` for every runtime column (PyTorch ones only with ``models``)."""
    makers = {}
    if models is not None:
        makers["PyTorch NCHW"] = lambda n: torch_run(models[n])
        makers["PyTorch NHWC"] = lambda n: torch_run(models[n], channels_last=True)
    if files:
        makers["ONNX Runtime fp32"] = lambda n: ort_run(files[n], threads)
        makers["OpenVINO fp32"] = lambda n: ov_run(files[n], shape, threads, "fp32")
        makers["OpenVINO bf16"] = lambda n: ov_run(files[n], shape, threads, "bf16")
        if calib is not None:
            makers["ONNX Runtime int8"] = lambda n: ort_int8_run(files[n], threads, calib)
            makers["OpenVINO int8"] = lambda n: ov_int8_run(files[n], shape, threads, calib)
    return makers


def time_runtimes(makers: dict, names: Sequence[str], posts: dict, photos: dict, rounds: int, warmup: int,
                  repeats: int, baseline: str | None = None, log=print) -> dict:
    """One interleaved phase per runtime (no idle threads of another runtime spin meanwhile); a runtime missing for
    any model is skipped for all. ``posts[name]``: its post-processing (None: forward only); ``photos[name]``: its
    inputs. Returns ``{runtime: compare_latency result}``."""
    timings = {}
    for runtime, make in makers.items():
        runs = {n: make(n) for n in names}
        if any(r is None for r in runs.values()):
            log(f"{runtime}: not available here, skipped")
            continue
        fns = {n: peer_models.end_to_end(runs[n], posts.get(n), photos[n]) for n in names}
        log(f"timing {runtime} ...")
        with torch.inference_mode():
            timings[runtime] = compare_latency(fns, rounds, warmup, repeats, baseline)
    return timings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["ghost_yolo", "gghost_yolo", "gghost_yolo_lite", "repghost_yolo"],
                   help="ghostdet configs (CONFIG or 'CONFIG key=value ...'); commas also split")
    p.add_argument("--peers", nargs="*", default=list(peer_models.DEFAULT_PEERS),
                   help=f"ultralytics peers: {', '.join(peer_models.PEERS)} (none: ghostdet only)")
    p.add_argument("--baseline", help="the peer the ratio columns divide by (default: the first peer)")
    p.add_argument("--sizes", nargs="+", default=["640", "320"])
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument("--threads", nargs="+", default=["2"], help="thread counts; 0 = every CPU this process may use")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--photos", type=int, default=8, help="real photos cycled through (dog.jpg + raccoon val)")
    p.add_argument("--forward-only", action="store_true", help="forward + decode only (no post-processing)")
    p.add_argument("--no-onnx", action="store_true", help="no ONNX Runtime / OpenVINO columns")
    p.add_argument("--no-int8", action="store_true", help="no int8 columns")
    p.add_argument("--calib-dir", help="images to calibrate int8 on (default: ../shared/data/coco128/images/train2017)")
    p.add_argument("--calib-images", type=int, default=64, help="how many (default 64: the columns are latency only)")
    p.add_argument("--backbones", action="store_true", help="also time each config's backbone alone (forward only)")
    peer_models.add_ultralytics_args(p)
    args = p.parse_args()
    split = lambda items: [s for item in items for s in str(item).split(",") if s]  # noqa: E731
    sizes, threads_list = [int(s) for s in split(args.sizes)], [int(t) for t in split(args.threads)]
    configs = [m for item in args.models for m in (item.split(",") if " " not in item else [item])]
    peer_names = split(args.peers)
    for name in peer_names:
        peer_models.peer(name)
    ul_version = peer_models.ensure_ultralytics(args.ul_path, args.ul_python) if peer_names else None
    label = {n: peer_models.PEERS[n].label for n in peer_names}
    baseline = label[args.baseline or peer_names[0]] if peer_names else None
    if args.baseline and args.baseline not in label:
        raise SystemExit(f"error: --baseline {args.baseline} is not one of --peers")
    post_g = None if args.forward_only else peer_models.ghostdet_postprocess()
    files_photos = peer_models.photo_files(count=args.photos)

    from ghostdet.utils.device import cpu_name

    print(f"{cpu_name()}; torch {torch.__version__}, ultralytics {ul_version}; batch 1, "
          f"{'forward + decode only' if args.forward_only else 'end to end: forward + post-processing'} on "
          f"{len(files_photos)} real photos; {args.rounds} interleaved rounds x median of {args.repeats} after "
          f"{args.warmup} warm-up; NCHW = eager, NHWC = channels_last model and input; ratio = median per-round "
          f"latency / {baseline}'s")
    if post_g is not None:
        print(f"post-processing: {post_g.settings}; "
              + "; ".join(f"{label[n]}: {peer_models.peer_postprocess(n).settings}" for n in peer_names))
    head = " | ".join(f"{rt} (ms)" for rt in RUNTIMES) + " | " + " | ".join(f"{rt} ratio" for rt in RUNTIMES)
    print(f"| model | size | threads | params (M) | GFLOPs | {head} |")
    print("|---|---|---|---|---|" + "---|" * 2 * len(RUNTIMES))
    for threads in (set_threads(t or None) for t in threads_list):
        for size in sizes:
            x = torch.rand(1, 3, size, size)
            models, posts = {}, {}
            for name in peer_names:  # peers first; ultralytics caches inference-mode anchors: export before timing
                models[label[name]] = peer_models.deploy_peer(name, size, args.num_classes)
                posts[label[name]] = None if args.forward_only else peer_models.peer_postprocess(name)
            for spec in configs:
                config, *overrides = spec.split()
                models[spec] = ghostdet_model(config, overrides, args.num_classes)
                posts[spec] = post_g
            if args.backbones:
                for spec in configs:
                    models[f"{spec} backbone only"] = models[spec].model.backbone
                    posts[f"{spec} backbone only"] = None
            photos = peer_models.load_photos(files_photos, size)
            tmp = tempfile.TemporaryDirectory()
            files, calib = {}, None
            if not args.no_onnx:
                with torch.no_grad():
                    files = {name: onnx_file(model, x, Path(tmp.name)) for name, model in models.items()}
                if not args.no_int8:  # every model quantized the same way, on the same images
                    calib, source = calibration(args.calib_dir, args.calib_images, size)
                    print(f"int8 at {size}: calibrated on {source}", file=sys.stderr, flush=True)
            makers = runtime_makers(files, tuple(x.shape), threads, calib, models)
            names = list(models)
            timings = {}
            for runtime, make in makers.items():
                # backbones are only timed in float (their int8 graphs have no decode tail to keep)
                subset = [n for n in names if "int8" not in runtime or not n.endswith("backbone only")]
                result = time_runtimes({runtime: make}, subset, posts, {n: photos for n in names}, args.rounds,
                                       args.warmup, args.repeats, baseline if baseline in subset else None,
                                       log=lambda m: print(m, file=sys.stderr, flush=True))
                timings.update(result)
            tmp.cleanup()
            for name, model in models.items():
                params, macs = count_params_macs(model, (1, 3, size, size))
                cells = [f"{timings[rt][name]['median']:.2f}" if name in timings.get(rt, {}) else "-" for rt in RUNTIMES]
                ratios = [f"{timings[rt][name]['ratio']:.2f}" if "ratio" in timings.get(rt, {}).get(name, {}) else "-"
                          for rt in RUNTIMES]
                print(f"| {name} | {size} | {threads} | {params / 1e6:.2f} | {2 * macs / 1e9:.2f} | "
                      f"{' | '.join(cells)} | {' | '.join(ratios)} |", flush=True)


if __name__ == "__main__":
    main()
