"""Export a trained Ghost-YOLO to ONNX or TorchScript, check it against PyTorch, print size and latency.

    python tools/export.py --weights runs/train/.../weights/best.pt --format onnx --imgsz 640
    python tools/export.py --weights best.pt --format onnx --dynamic --source photo.jpg
    python tools/export.py --weights best.pt --format torchscript
"""
from __future__ import annotations

import argparse
import logging
import sys

from _common import add_plugins_argument, run_tool, setup_logging  # noqa: I001 (puts the project on sys.path)
from ghostdet.inference.predictor import parse_imgsz

from ghostdet.utils.errors import CheckpointError, ConfigError

log = logging.getLogger("export")

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Export a ghostdet checkpoint to ONNX or TorchScript and verify the file.")
    p.add_argument("--weights", help="checkpoint (.pt) to export; default: the newest runs/train/*/*/weights/best.pt")
    p.add_argument("--format", choices=sorted(SUFFIXES), default="onnx")
    p.add_argument("--imgsz", type=parse_imgsz, help="input size: 640, or height,width (e.g. 480,640); "
                   "default: the training size stored in the checkpoint")
    p.add_argument("--out", help="output file (default: next to the weights, e.g. best.onnx)")
    p.add_argument("--dynamic", action="store_true", help="ONNX: free batch, height and width axes")
    p.add_argument("--half", action="store_true", help="FP16 weights and input (for GPU runtimes)")
    p.add_argument("--batch", type=int, default=1, help="ONNX: fixed batch size (ignored with --dynamic)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--device", default="cpu", help="device to trace on: cpu, cuda, cuda:N (--half needs cuda to verify fast)")
    p.add_argument("--source", help="image used to check the export against PyTorch (default: a synthetic scene)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime / TorchScript check")
    p.add_argument("--verbose", action="store_true")
    add_plugins_argument(p)
    return p.parse_args(argv)


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    from ghostdet.models import import_plugins

    import_plugins(args.plugins)
    setup_logging(args.verbose)
    from pathlib import Path

    from ghostdet.export import check_image, export_onnx, export_torchscript, prepare_for_export, verify_export
    from ghostdet.export.onnx import DEFAULT_OPSET
    from ghostdet.export.verify import file_size_mb
    from ghostdet.inference.predictor import normalize_imgsz
    from ghostdet.inference.writer import find_latest_weights
    from ghostdet.utils.checkpoint import build_model_from_checkpoint
    from ghostdet.utils.device import select_device

    weights = Path(args.weights) if args.weights else find_latest_weights()
    if weights.suffix.lower() in (".onnx", ".torchscript"):
        raise CheckpointError(f"{weights}: already an exported model; pass the .pt checkpoint it came from")
    device = select_device(args.device)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: must be >= 1")
    model, meta = build_model_from_checkpoint(weights, map_location=device)
    imgsz = normalize_imgsz(args.imgsz or meta.get("imgsz") or 640)
    out = Path(args.out) if args.out else weights.with_suffix(SUFFIXES[args.format])
    if args.format == "onnx":
        export_onnx(model, out, imgsz, dynamic=args.dynamic, half=args.half, opset=args.opset or DEFAULT_OPSET,
                    batch=args.batch, names=meta["names"], category_ids=meta.get("category_ids"), device=device)
    else:
        if args.dynamic or args.batch != 1:
            log.info("TorchScript traces run at any batch and multiple-of-32 size; --dynamic/--batch are not needed")
        export_torchscript(model, out, imgsz, half=args.half, names=meta["names"], category_ids=meta.get("category_ids"),
                           device=device)
    size = f"{file_size_mb(out):.1f} MB"
    if args.no_check:
        print(f"exported {out} ({size}); not checked (--no-check)")
        return
    batch, what = check_image(args.source, imgsz)
    if args.format == "onnx" and not args.dynamic and args.batch > 1:
        import numpy as np

        batch = np.repeat(batch, args.batch, axis=0)
    check = verify_export(prepare_for_export(model, half=args.half, device=device), out, args.format, batch, description=what)
    runtime = "ONNX Runtime" if args.format == "onnx" else "TorchScript"
    print(f"checked against PyTorch on {what}: max |box diff| {check.max_box_diff:.2g} px, max |score diff| {check.max_score_diff:.2g}, "
          f"detections {check.detections_export} vs {check.detections_torch} (conf 0.25)")
    if not check.ok:
        raise ConfigError(f"{out}: the exported model disagrees with PyTorch ({'; '.join(check.problems)}); "
                          "the file was kept for inspection, do not deploy it")
    print(f"exported {out} ({size}, input {batch.shape[0]}x3x{imgsz[0]}x{imgsz[1]}{' dynamic' if args.dynamic else ''}); "
          f"{runtime} latency {check.latency_ms:.1f} ms (median of 10, batch {batch.shape[0]}, this machine)")


if __name__ == "__main__":
    sys.exit(main())
