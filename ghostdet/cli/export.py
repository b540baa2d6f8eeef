"""Export a trained Ghost-YOLO to any format of the format table (ghostdet.export.formats: ONNX, OpenVINO IR,
TorchScript, ncnn, MNN, LiteRT), check it against PyTorch on a real photo, print size and latency:
`ghostdet export --weights best.pt` or `python tools/export.py --weights best.pt`, same arguments.

    python tools/export.py --weights runs/train/.../weights/best.pt --format onnx --imgsz 640
    python tools/export.py --weights best.pt --format onnx --dynamic --source photo.jpg
    python tools/export.py --weights best.pt --format openvino --precision auto   # -> best_openvino/
    python tools/export.py --weights best.pt --nms --conf 0.25 --max-det 100      # -> best_nms.onnx (NMS in the graph)
    python tools/export.py --weights best.pt --format torchscript
    python tools/export.py --weights best.pt --half                                # -> best_fp16.onnx
    python tools/export.py --weights best.pt --format onnx --int8 --data voc --data-root data/raccoon  # + best_int8.onnx
"""
from __future__ import annotations

import argparse
import logging
import sys

from ghostdet.cli.common import add_plugins_argument, config_dir, run_tool, start_tool
from ghostdet.export.formats import EXPORT_FORMATS, FORMATS, get_format
from ghostdet.inference.predictor import parse_imgsz
from ghostdet.utils.errors import CheckpointError, ConfigError, ExportMismatchError

log = logging.getLogger("export")


def _either(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Export a ghostdet checkpoint to a deployable format and verify the file.")
    p.add_argument("--weights", help="checkpoint (.pt) to export; default: the newest runs/train/*/*/weights/best.pt")
    p.add_argument("--format", choices=EXPORT_FORMATS, default="onnx", help="the format table: docs/inference.md")
    p.add_argument("--imgsz", type=parse_imgsz, help="input size: 640, or height,width (e.g. 480,640); "
                   "default: the training size stored in the checkpoint")
    p.add_argument("--out", help="output file, or folder for openvino/ncnn (default: next to the weights, e.g. "
                   "best.onnx, best_fp16.onnx, best_nms.onnx, best_openvino/)")
    p.add_argument("--dynamic", action="store_true", help="ONNX/OpenVINO: free batch, height and width axes")
    p.add_argument("--half", action="store_true", help="FP16 weights (ONNX/TorchScript: and input, for GPU runtimes); "
                   "default file best_fp16.<suffix>, so the fp32 export is kept")
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
    p.add_argument("--source", help="photo used to check the export against PyTorch (default: the first val image of "
                   "the checkpoint's data, else ../shared/data/images/dog.jpg; a synthetic scene, with a warning, "
                   "only when neither is there)")
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

    from ghostdet.export import prepare_for_export, verify_export
    from ghostdet.export.formats import require, run_export
    from ghostdet.export.publish import default_output, export_size_mb
    from ghostdet.inference.writer import find_latest_weights
    from ghostdet.utils.checkpoint import build_model_from_checkpoint
    from ghostdet.utils.device import select_device
    from ghostdet.utils.imgsz import input_hw, max_stride

    row = get_format(args.format)
    weights = Path(args.weights) if args.weights else find_latest_weights()
    if weights.suffix.lower() in (".onnx", ".torchscript", ".mnn", ".tflite", ".xml"):
        raise CheckpointError(f"{weights}: already an exported model; pass the .pt checkpoint it came from")
    device = select_device(args.device)
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: must be >= 1")
    given = {k: v for k, v in dict(conf=args.conf, iou=args.iou, max_det=args.max_det).items() if v is not None}
    nms = dict(dict(nms=True, conf=0.25, iou=0.45, max_det=300), **given) if args.nms else {}
    if given and not args.nms:
        log.warning("--%s apply to --nms exports only; ignored", "/--".join(k.replace("_", "-") for k in given))
    check_format_args(args, row)
    if args.nms:
        from ghostdet.export.nms import check_nms_settings

        check_nms_settings(nms["conf"], nms["iou"], nms["max_det"])
    if args.int8:
        check_int8_args(args)
    require(row, export=True)  # fail before the slow export when a package is missing
    model, meta = build_model_from_checkpoint(weights, map_location=device)
    imgsz = input_hw(args.imgsz or meta.get("imgsz") or 640, max_stride(model))
    data_cfg = load_data_config(args.data, args.data_root, meta, weights) if args.int8 else None
    out = Path(args.out) if args.out else default_output(weights, row.name, nms=args.nms, half=args.half)
    if not row.dynamic and args.dynamic:
        raise ConfigError(f"--dynamic is not available for --format {row.name} (fixed shapes); drop it")
    if row.name == "torchscript" and (args.dynamic or args.batch != 1):
        log.info("TorchScript traces run at any batch and multiple-of-32 size; --dynamic/--batch are not needed")
    run_export(row, model, out, imgsz, dynamic=args.dynamic, half=args.half, batch=args.batch, names=meta["names"],
               category_ids=meta.get("category_ids"), device=device, opset=args.opset, **nms)
    size = f"{export_size_mb(out):.1f} MB"
    if args.no_check or row.backend is None:
        print(f"exported {out} ({size}); not checked ({'--no-check' if args.no_check else 'no backend runs it'})")
        return
    batch, what = check_image_for(args.source, meta, imgsz)
    if row.dynamic and not args.dynamic and args.batch > 1 and row.name != "torchscript":
        import numpy as np

        batch = np.repeat(batch, args.batch, axis=0)
    precisions = check_precisions(args, row)
    prepared = prepare_for_export(model, half=args.half, device=device)
    checks = []
    for precision in precisions:
        check = verify_export(prepared, out, row.name, batch, description=what, precision=precision,
                              **({k: v for k, v in nms.items() if k != "nms"}))
        in_precision = f" in {check.precision}" if row.hints else ""
        against = (f"PyTorch + postprocess (conf {check.conf:g}, iou {nms['iou']:g}, max_det {nms['max_det']})" if check.nms
                   else "PyTorch")
        print(f"checked{in_precision} against {against} on {what}: {check.summary()}")
        if not check.ok:
            raise ExportMismatchError(f"{out}: the exported model{in_precision} disagrees with PyTorch ({'; '.join(check.problems)}); "
                                      "the file was kept for inspection, do not deploy it")
        checks.append(check)
    latency = ", ".join(f"{c.latency_ms:.1f} ms" + (f" {c.precision}" if row.hints else "") for c in checks)
    in_graph = f", NMS in the graph (max_det {nms['max_det']})" if args.nms else ""
    print(f"exported {out} ({size}, input {batch.shape[0]}x3x{imgsz[0]}x{imgsz[1]}{' dynamic' if args.dynamic else ''}{in_graph}); "
          f"{row.runtime} latency {latency} (median of 10, batch {batch.shape[0]}, this machine)")
    if args.int8:
        export_int8(args, out, imgsz, data_cfg, precision=precisions[-1], read_only=args.data is None)


def check_format_args(args, row) -> None:
    """Options the format table says the format cannot do, refused in one line before anything is loaded."""
    if args.nms and not row.nms:
        raise ConfigError(f"--nms is for --format {_either(f.name for f in FORMATS if f.nms)} "
                          f"({row.runtime} exports stay NMS-free)")
    if args.half and "fp16" not in row.precisions:
        why = ("OpenVINO IRs are written with FP32 weights: drop --half and run them with --precision bf16 (or auto) "
               "instead") if row.name == "openvino" else f"{row.name} exports are {'/'.join(row.precisions)}"
        raise ConfigError(f"--half is not available for --format {row.name}: {why}")
    if args.precision != "fp32" and args.precision not in row.hints:
        log.warning("--precision applies to --format %s only; ignored", _either(f.name for f in FORMATS if f.hints))


def check_precisions(args, row) -> list[str]:
    """The run-time precisions the export is checked in: fp32, and the --precision hint where the runtime takes one."""
    precisions = ["fp32"]
    if not row.hints or args.precision == "fp32":
        return precisions
    chosen, why = args.precision, "asked for"
    if row.name == "openvino":
        from ghostdet.inference.backends.openvino import resolve_precision

        chosen, why = resolve_precision(args.precision)
    print(f"{row.runtime} precision {chosen} ({why})")
    return precisions + ([chosen] if chosen != "fp32" else [])


def check_image_for(source, meta: dict, imgsz):
    """The photo the export is checked on: --source, else one of the checkpoint's data, else the shared demo photo;
    a synthetic scene only when none is there (with a warning: it exercises the model less)."""
    from ghostdet.export.calibration import check_image, find_check_image

    if source is None:
        source = find_check_image((meta.get("config") or {}).get("data"))
        if source is None:
            log.warning("no photo to check the export on (no --source, the checkpoint's data and ../shared/data are "
                        "not here): checking on a synthetic scene; pass --source PHOTO")
    return check_image(source, imgsz)


def check_int8_args(args) -> None:
    """--int8 conflicts, refused before the slow export."""
    from ghostdet.export.accuracy import int8_formats

    if args.format not in int8_formats():
        raise ConfigError(f"--int8 is for --format {_either(int8_formats())}, not {args.format}")
    conflicts = [flag for flag, on in (("--half", args.half), ("--nms", getattr(args, "nms", False)),
                                       ("--no-check", args.no_check)) if on]
    if conflicts:
        raise ConfigError(f"--int8 with {' and '.join(conflicts)}: int8 starts from the NMS-free fp32 export and its "
                          "accuracy check is not optional; drop " + " and ".join(conflicts))
    if args.format == "openvino":
        from ghostdet.export.quantizers import import_nncf

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
    from ghostdet.export.accuracy import quantize_export

    try:
        result = quantize_export(fp32_out, args.format, data_cfg, imgsz, calib_images=args.calib_images,
                                 max_map_drop=args.max_map_drop, precision=precision, read_only=read_only)
    except ExportMismatchError as e:
        if getattr(e, "result", None) is not None:
            print(e.result.table())
        raise
    row = get_format(args.format)
    hint = f", {row.runtime} {precision} hint" if row.hints else ""
    print(f"int8 calibrated on {result.calibration}; COCO mAP on {result.val} (conf 0.001{hint}):")
    print(result.table())
    from ghostdet.export.publish import export_size_mb

    size = export_size_mb(result.path)
    print(f"exported {result.path} ({size:.1f} MB, int8): mAP50-95 {result.int8['mAP50-95']:.4f} vs fp32 "
          f"{result.fp32['mAP50-95']:.4f} ({abs(result.drop):.2f} points {'lost' if result.drop >= 0 else 'gained'}, "
          f"limit {result.max_drop:g} lost)")


if __name__ == "__main__":
    sys.exit(main())
