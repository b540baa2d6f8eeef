"""End-to-end detect throughput on a folder of images: PyTorch (fused eager), ONNX Runtime and OpenVINO (fp32, bf16, int8).

    python benchmarks/bench_detect.py --weights runs/train/.../weights/best.pt        # coco128, 640
    python benchmarks/bench_detect.py --imgsz 320 --limit 64 --threads 2
    python benchmarks/bench_detect.py                   # no weights: configs/model/ghost_yolo.yaml, random init

Two figures per backend, images per second over the whole folder (one pass after a warm-up image):
  predict: read + decode + letterbox + model + threshold/NMS + boxes to original pixels (``Detector.predict``);
  detect:  the same plus drawing and writing the annotated JPEG and predictions.json (``tools/detect.py``).
Also the median model-only latency per image. The ONNX file and the OpenVINO IR are exported (fused, fixed
size, batch 1) into a temporary folder; OpenVINO runs the IR with the fp32 and (where the CPU reports BF16) bf16
precision hints, and its NNCF int8 form (``ghostdet.export.quantize.quantize_openvino_model``, the decode tail
float, calibrated on the first ``--calib-images`` images of the folder; ``tools/export.py --int8`` is the same
quantizer with the accuracy gate). ``--no-openvino`` skips those rows. A random-init model finds few boxes, so NMS costs less than with trained weights; pass
``--weights`` for figures of a real model. Timings depend on the machine and its load (printed).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from ghostdet import Detector  # noqa: E402
from ghostdet.inference.sources import collect_sources  # noqa: E402
from ghostdet.inference.writer import DetectionWriter  # noqa: E402

DEFAULT_SOURCE = Path(os.environ.get("GHOSTDET_SHARED_DATA", ROOT.parent / "shared" / "data")) / "coco128" / "images" / "train2017"


def random_init_checkpoint(folder: Path, imgsz: int) -> Path:
    """A checkpoint of configs/model/ghost_yolo.yaml with random weights (timing only)."""
    from ghostdet.models import build_model
    from omegaconf import OmegaConf

    from ghostdet.utils.checkpoint import save_checkpoint

    cfg = OmegaConf.load(ROOT / "configs" / "model" / "ghost_yolo.yaml")
    model = build_model(cfg, num_classes=80).eval()
    config = {"model": OmegaConf.to_container(cfg, resolve=True), "imgsz": imgsz}
    return save_checkpoint({"model": model.state_dict(), "ema": None, "names": [f"class{i}" for i in range(80)],
                            "config": config}, folder / "random_init.pt")


def openvino_detectors(model, meta: dict, files, args, tmp: Path) -> dict:
    """OpenVINO fp32 / bf16 (where the CPU has it) / NNCF int8 Detectors of ``model`` at ``args.imgsz``."""
    from ghostdet.export import export_openvino
    from ghostdet.export.openvino import write_openvino_folder
    from ghostdet.export.quantize import images_to_batches, quantize_openvino_model
    from ghostdet.inference.openvino import cpu_supports_bf16, read_ir, read_metadata

    fp32_dir = export_openvino(model, tmp / "model_openvino", args.imgsz, names=meta["names"],
                               category_ids=meta.get("category_ids"))
    ir, xml = read_ir(fp32_dir)
    calibration = images_to_batches([f.path for f in files[: args.calib_images]], (args.imgsz, args.imgsz))
    int8_dir = write_openvino_folder(quantize_openvino_model(ir, calibration)[0], read_metadata(ir, xml),
                                     tmp / "model_int8_openvino")
    kwargs = {"conf": args.conf, "threads": args.threads or None}
    out = {"OpenVINO fp32": Detector.from_openvino(fp32_dir, precision="fp32", **kwargs)}
    if cpu_supports_bf16():
        out["OpenVINO bf16"] = Detector.from_openvino(fp32_dir, precision="bf16", **kwargs)
    out["OpenVINO int8 (NNCF)"] = Detector.from_openvino(int8_dir, precision="fp32", **kwargs)
    return out


def time_backend(detector: Detector, files, out_dir: Path) -> dict:
    detector.warmup(2)
    started = time.perf_counter()
    inference = [r.speed_ms["inference"] for r in detector.predict(files)]
    predict_s = time.perf_counter() - started
    started = time.perf_counter()
    with DetectionWriter(out_dir) as writer:
        for frame, result in detector.stream(files):
            writer.add(frame, result)
    detect_s = time.perf_counter() - started
    n = len(inference)
    return {"images": n, "predict_ips": n / predict_s, "detect_ips": n / detect_s, "model_ms": statistics.median(inference)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="a ghostdet .pt checkpoint (default: ghost_yolo with random weights)")
    p.add_argument("--source", default=str(DEFAULT_SOURCE), help="image folder (default: coco128 train2017)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for every backend (0: library default)")
    p.add_argument("--no-openvino", action="store_true", help="PyTorch and ONNX Runtime only")
    p.add_argument("--calib-images", type=int, default=64, help="int8 calibration images (from --source)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    from ghostdet.export import export_onnx
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    files = collect_sources(args.source)
    files = files[: args.limit] if args.limit else files
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = Path(args.weights) if args.weights else random_init_checkpoint(tmp, args.imgsz)
        model, meta = build_model_from_checkpoint(weights)
        onnx_path = export_onnx(model, tmp / "model.onnx", args.imgsz, names=meta["names"], category_ids=meta.get("category_ids"))
        detectors = {
            "PyTorch (fused, eager)": Detector.from_checkpoint(weights, imgsz=args.imgsz, conf=args.conf),
            "ONNX Runtime (CPU EP)": Detector.from_onnx(onnx_path, conf=args.conf, threads=args.threads or None),
        }
        if not args.no_openvino:
            detectors.update(openvino_detectors(model, meta, files, args, tmp))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"{len(files)} images from {args.source}, imgsz {args.imgsz}, conf {args.conf}, weights "
              f"{weights.name if args.weights else 'random init (configs/model/ghost_yolo.yaml)'}; torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load:.1f} at start")
        print("| backend | predict img/s | detect (draw+save) img/s | model ms/img (median) | detect vs ONNX Runtime |")
        print("|---|---:|---:|---:|---:|")
        results = {name: time_backend(detector, files, tmp / f"out{i}") for i, (name, detector) in enumerate(detectors.items())}
        base = results["ONNX Runtime (CPU EP)"]["detect_ips"]
        for name, r in results.items():
            print(f"| {name} | {r['predict_ips']:.2f} | {r['detect_ips']:.2f} | {r['model_ms']:.1f} | "
                  f"{r['detect_ips'] / base:.2f}x |", flush=True)
        if hasattr(os, "getloadavg"):
            print(f"load average {os.getloadavg()[0]:.1f} at the end (figures are only comparable on an idle machine)")


if __name__ == "__main__":
    main()
