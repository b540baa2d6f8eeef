"""Export a trained Ghost-YOLO to ONNX, OpenVINO IR or TorchScript, check it against PyTorch, print size and latency:
`ghostdet export --weights best.pt` or `python tools/export.py --weights best.pt`, same arguments.

    python tools/export.py --weights runs/train/.../weights/best.pt --format onnx --imgsz 640
    python tools/export.py --weights best.pt --format onnx --dynamic --source photo.jpg
    python tools/export.py --weights best.pt --format openvino --precision auto   # -> best_openvino/
    python tools/export.py --weights best.pt --nms --conf 0.25 --max-det 100      # -> best_nms.onnx (NMS in the graph)
    python tools/export.py --weights best.pt --format torchscript
    python tools/export.py --weights best.pt --format onnx --int8 --data voc --data-root data/raccoon  # + best_int8.onnx
"""
from __future__ import annotations

import argparse
import logging
import sys

from ghostdet.cli.common import add_plugins_argument, config_dir, run_tool, start_tool
from ghostdet.inference.predictor import parse_imgsz

from ghostdet.utils.errors import CheckpointError, ConfigError, ExportMismatchError

log = logging.getLogger("export")

SUFFIXES = {"onnx": ".onnx", "openvino": "_openvino", "torchscript": ".torchscript"}
RUNTIMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "torchscript": "TorchScript"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Export a ghostdet checkpoint to ONNX, OpenVINO or TorchScript and verify the file.")
    p.add_argument("--weights", help="checkpoint (.pt) to export; default: the newest runs/train/*/*/weights/best.pt")
    p.add_argument("--format", choices=sorted(SUFFIXES), default="onnx")
    p.add_argument("--imgsz", type=parse_imgsz, help="input size: 640, or height,width (e.g. 480,640); "
                   "default: the training size stored in the checkpoint")
    p.add_argument("--out", help="output file, or folder for openvino (default: next to the weights, e.g. best.onnx, "
                   "best_openvino/)")
    p.add_argument("--dynamic", action="store_true", help="ONNX/OpenVINO: free batch, height and width axes")
    p.add_argument("--half", action="store_true", help="FP16 weights and input (for GPU runtimes)")
    p.add_argument("--batch", type=int, default=1, help="ONNX/OpenVINO: fixed batch size (ignored with --dynamic)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="fp32",
                   help="OpenVINO: also check the export in this inference precision (auto: bf16 where the CPU "
                   "reports BF16); the FP32 check always runs (default fp32)")
    p.add_argument("--nms", action="store_true", help="ONNX/OpenVINO: class-aware NMS inside the graph; outputs num_dets, "
                   "det_boxes, det_scores, det_classes (at most --max-det per image); default file best_nms.onnx / "
                   "best_nms_openvino/")
    p.add_argument("--conf", type=float, help="--nms: score threshold fixed in the graph (default 0.25, as detect.py)")
    p.add_argument("--iou", type=float, help="--nms: NMS IoU threshold fixed in the graph (default 0.45)")
    p.add_argument("--max-det", type=int, help="--nms: most detections per image (default 300)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--device", default="cpu", help="device to trace on: cpu, cuda, cuda:N (--half needs cuda to verify fast)")
    p.add_argument("--source", help="image used to check the export against PyTorch (default: a synthetic scene)")
    p.add_argument("--no-check", action="store_true", help="skip the ONNX Runtime / OpenVINO / TorchScript check")
    p.add_argument("--int8", action="store_true", help="ONNX/OpenVINO: also write a post-training int8 export "
                   "(best_int8.onnx / best_int8_openvino/) calibrated on the train split of --data and kept only if "
                   "its val mAP50-95 is within --max-map-drop of the fp32 export's (ghostdet.export.quantize)")
    p.add_argument("--data", help="--int8: data config, a name in configs/data/ (voc, coco128, yolo, ...) or a yaml "
                   "file; default: the data the checkpoint was trained on")
    p.add_argument("--data-root", help="--int8: the data config's root folder (overrides its root)")
    p.add_argument("--calib-images", type=int, default=300, help="--int8: train images to calibrate on (default 300)")
    p.add_argument("--max-map-drop", type=float, default=1.0, help="--int8: largest mAP50-95 loss in points "
                   "(x100) accepted against the fp32 export (default 1.0); a larger loss is an error")
    p.add_argument("--verbose", action="store_true")
    add_plugins_argument(p)
    return p.parse_args(argv)


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    start_tool(args.plugins, args.verbose)
    from pathlib import Path

    from ghostdet.export import check_image, export_onnx, export_torchscript, prepare_for_export, verify_export
    from ghostdet.export.onnx import DEFAULT_OPSET
    from ghostdet.export.verify import file_size_mb
    from ghostdet.utils.imgsz import input_hw, max_stride
    from ghostdet.inference.writer import find_latest_weights
    from ghostdet.utils.checkpoint import build_model_from_checkpoint
    from ghostdet.utils.device import select_device

    weights = Path(args.weights) if args.weights else find_latest_weights()
    if weights.suffix.lower() in (".onnx", ".torchscript"):
        raise CheckpointError(f"{weights}: already an exported model; pass the .pt checkpoint it came from")
    device = select_device(args.device)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: must be >= 1")
    given = {k: v for k, v in dict(conf=args.conf, iou=args.iou, max_det=args.max_det).items() if v is not None}
    nms = dict(dict(nms=True, conf=0.25, iou=0.45, max_det=300), **given) if args.nms else {}
    if given and not args.nms:
        log.warning("--%s apply to --nms exports only; ignored", "/--".join(k.replace("_", "-") for k in given))
    if args.nms:
        from ghostdet.export.nms import check_nms_settings

        if args.format == "torchscript":
            raise ConfigError("--nms is for --format onnx or openvino (TorchScript exports stay NMS-free)")
        check_nms_settings(nms["conf"], nms["iou"], nms["max_det"])
        weights_stem = weights.with_name(f"{weights.stem}_nms{weights.suffix}")  # best.pt -> best_nms.onnx, best_nms_openvino/
    else:
        weights_stem = weights
    if args.int8:
        check_int8_args(args)
    model, meta = build_model_from_checkpoint(weights, map_location=device)
    imgsz = input_hw(args.imgsz or meta.get("imgsz") or 640, max_stride(model))
    data_cfg = load_data_config(args.data, args.data_root, meta, weights) if args.int8 else None
    if args.format == "openvino":
        from ghostdet.export.openvino import openvino_dir_for
        from ghostdet.inference.openvino import import_openvino

        import_openvino()  # fail before the slow ONNX export when openvino is missing
        if args.half:
            raise ConfigError("--half is for GPU runtimes; OpenVINO IRs are written with FP32 weights: "
                              "drop --half and run them with --precision bf16 (or auto) instead")
        out = Path(args.out) if args.out else openvino_dir_for(weights_stem)
    else:
        out = Path(args.out) if args.out else weights_stem.with_suffix(SUFFIXES[args.format])
    if args.format == "onnx":
        export_onnx(model, out, imgsz, dynamic=args.dynamic, half=args.half, opset=args.opset or DEFAULT_OPSET,
                    batch=args.batch, names=meta["names"], category_ids=meta.get("category_ids"), device=device, **nms)
    elif args.format == "openvino":
        from ghostdet.export.openvino import export_openvino

        export_openvino(model, out, imgsz, dynamic=args.dynamic, batch=args.batch, names=meta["names"],
                        category_ids=meta.get("category_ids"), opset=args.opset or DEFAULT_OPSET, **nms)
    else:
        if args.dynamic or args.batch != 1:
            log.info("TorchScript traces run at any batch and multiple-of-32 size; --dynamic/--batch are not needed")
        export_torchscript(model, out, imgsz, half=args.half, names=meta["names"], category_ids=meta.get("category_ids"),
                           device=device)
    if args.format == "openvino":
        from ghostdet.export.openvino import ir_size_mb

        size = f"{ir_size_mb(out):.1f} MB"
    else:
        size = f"{file_size_mb(out):.1f} MB"
    if args.no_check:
        print(f"exported {out} ({size}); not checked (--no-check)")
        return
    batch, what = check_image(args.source, imgsz)
    if args.format in ("onnx", "openvino") and not args.dynamic and args.batch > 1:
        import numpy as np

        batch = np.repeat(batch, args.batch, axis=0)
    precisions = ["fp32"]
    if args.format == "openvino":
        from ghostdet.inference.openvino import resolve_precision

        chosen, why = resolve_precision(args.precision)
        if args.precision != "fp32":
            print(f"OpenVINO precision {chosen} ({why})")
        if chosen != "fp32":
            precisions.append(chosen)
    elif args.precision != "fp32":
        log.warning("--precision applies to --format openvino only; ignored")
    prepared = prepare_for_export(model, half=args.half, device=device)
    checks = []
    for precision in precisions:
        check = verify_export(prepared, out, args.format, batch, description=what, precision=precision,
                              **({k: v for k, v in nms.items() if k != "nms"}))
        in_precision = f" in {check.precision}" if args.format == "openvino" else ""
        against = (f"PyTorch + postprocess (conf {check.conf:g}, iou {nms['iou']:g}, max_det {nms['max_det']})" if check.nms
                   else "PyTorch")
        print(f"checked{in_precision} against {against} on {what}: max |box diff| {check.max_box_diff:.2g} px, "
              f"max |score diff| {check.max_score_diff:.2g}, detections {check.detections_export} vs {check.detections_torch} (conf {check.conf:g})")
        if not check.ok:
            raise ExportMismatchError(f"{out}: the exported model{in_precision} disagrees with PyTorch ({'; '.join(check.problems)}); "
                                      "the file was kept for inspection, do not deploy it")
        checks.append(check)
    latency = ", ".join(f"{c.latency_ms:.1f} ms" + (f" {c.precision}" if args.format == "openvino" else "") for c in checks)
    in_graph = f", NMS in the graph (max_det {nms['max_det']})" if args.nms else ""
    print(f"exported {out} ({size}, input {batch.shape[0]}x3x{imgsz[0]}x{imgsz[1]}{' dynamic' if args.dynamic else ''}{in_graph}); "
          f"{RUNTIMES[args.format]} latency {latency} (median of 10, batch {batch.shape[0]}, this machine)")
    if args.int8:
        export_int8(args, out, imgsz, data_cfg, precision=precisions[-1], read_only=args.data is None)


def check_int8_args(args) -> None:
    """--int8 conflicts, refused before the slow export."""
    if args.format not in ("onnx", "openvino"):
        raise ConfigError(f"--int8 is for --format onnx or openvino, not {args.format}")
    conflicts = [flag for flag, on in (("--half", args.half), ("--nms", getattr(args, "nms", False)),
                                       ("--no-check", args.no_check)) if on]
    if conflicts:
        raise ConfigError(f"--int8 with {' and '.join(conflicts)}: int8 starts from the NMS-free fp32 export and its "
                          "accuracy check is not optional; drop " + " and ".join(conflicts))
    if args.format == "openvino":
        from ghostdet.export.quantize import import_nncf

        import_nncf()


def load_data_config(spec: str | None, root: str | None, meta: dict, weights):
    """--data (a configs/data/ name or a yaml file; default: the checkpoint's training data) with --data-root."""
    from pathlib import Path

    from omegaconf import OmegaConf

    if spec is None:
        stored = (meta.get("config") or {}).get("data")
        if not stored:
            raise ConfigError(f"{weights}: the checkpoint stores no data config; pass --data <name or yaml> "
                              "(see configs/data/) for --int8")
        cfg = OmegaConf.create(stored)
        log.info("int8 data: the checkpoint's training data (%s, root %s)", cfg.get("format"), cfg.get("root"))
    else:
        path = Path(spec)
        if path.suffix not in (".yaml", ".yml"):
            path = config_dir() / "data" / f"{spec}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in (config_dir() / "data").glob("*.yaml"))
            raise ConfigError(f"--data {spec}: not a data yaml or a configs/data/ name ({', '.join(known)})")
        cfg = OmegaConf.load(path)
        cfg.pop("defaults", None)
    if root is not None:
        cfg.root = str(root)
    return cfg


def export_int8(args, fp32_out, imgsz, data_cfg, precision: str = "fp32", read_only: bool = False) -> None:
    """Quantize the fp32 export just written and checked; print both val mAPs (ghostdet.export.quantize)."""
    from ghostdet.export.quantize import quantize_export

    try:
        result = quantize_export(fp32_out, args.format, data_cfg, imgsz, calib_images=args.calib_images,
                                 max_map_drop=args.max_map_drop, precision=precision, read_only=read_only)
    except ExportMismatchError as e:
        if getattr(e, "result", None) is not None:
            print(e.result.table())
        raise
    hint = f", OpenVINO {precision} hint" if args.format == "openvino" else ""
    print(f"int8 calibrated on {result.calibration}; COCO mAP on {result.val} (conf 0.001{hint}):")
    print(result.table())
    size = _size_mb(result.path)
    print(f"exported {result.path} ({size:.1f} MB, int8): mAP50-95 {result.int8['mAP50-95']:.4f} vs fp32 "
          f"{result.fp32['mAP50-95']:.4f} ({abs(result.drop):.2f} points {'lost' if result.drop >= 0 else 'gained'}, "
          f"limit {result.max_drop:g} lost)")


def _size_mb(path) -> float:
    from pathlib import Path

    path = Path(path)
    files = [p for p in path.iterdir() if p.suffix in (".xml", ".bin")] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 1e6


if __name__ == "__main__":
    sys.exit(main())
