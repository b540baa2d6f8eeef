"""Detect objects in images, folders, glob patterns and videos with a trained Ghost-YOLO (.pt), its ONNX export or
its OpenVINO export (folder): `ghostdet detect photo.jpg` or `python tools/detect.py photo.jpg`, same arguments.

    python tools/detect.py photo.jpg                                  # newest runs/train/*/*/weights/best.pt
    python tools/detect.py "my photos/" "shots/*.png" clip.mp4 --weights best.onnx --conf 0.3
    python tools/detect.py photos/ --weights best_openvino/ --precision auto --threads 2
    python tools/detect.py images/ --classes person,car --no-save     # predictions.json only

Writes annotated images (videos as .mp4) and predictions.json to runs/detect/<n> (or --out).
"""
from __future__ import annotations

import argparse
import sys

from ghostdet.cli.common import add_plugins_argument, run_tool, start_tool
from ghostdet.inference.predictor import parse_imgsz



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Run a ghostdet detector on images, folders, glob patterns or videos.")
    p.add_argument("source", nargs="+", help="image/video files, folders, or glob patterns (quote patterns)")
    p.add_argument("--weights", help="a .pt checkpoint, an exported .onnx, or an OpenVINO export folder (best_openvino/) "
                   "or its .xml; default: the newest runs/train/*/*/weights/best.pt")
    p.add_argument("--conf", type=float, help="score threshold (default 0.25; an export with --nms: its own)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.45; an export with --nms: its own)")
    p.add_argument("--imgsz", type=parse_imgsz, help="inference size: 640, or height,width (e.g. 480,640); "
                   "default: the training size (.pt) or the exported size (.onnx)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or N (default cpu)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto",
                   help="OpenVINO inference precision: auto = bf16 where the CPU reports BF16 support, else fp32 "
                   "(default auto)")
    p.add_argument("--threads", type=int, help="inference threads (default: the runtime's choice)")
    p.add_argument("--classes", action="append", help="keep only these classes: indices or names, comma-separated "
                   "(--classes 0,2 or --classes person,car; may be repeated)")
    p.add_argument("--max-det", type=int, help="most detections per image (default 300; an export with --nms: its own)")
    p.add_argument("--out", help="output folder (default: runs/detect/<n>, a new one per run)")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images/videos")
    p.add_argument("--save-json", action=argparse.BooleanOptionalAction, default=True, help="write predictions.json (default on)")
    p.add_argument("--hide-labels", action="store_true", help="draw boxes without class names")
    p.add_argument("--hide-conf", action="store_true", help="draw class names without scores")
    p.add_argument("--line-width", type=int, help="box line width in pixels (default: from the image size)")
    p.add_argument("--verbose", action="store_true")
    add_plugins_argument(p)
    return p.parse_args(argv)


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    start_tool(args.plugins, args.verbose)
    from pathlib import Path

    from ghostdet.inference import Detector
    from ghostdet.inference.sources import collect_sources
    from ghostdet.inference.writer import DetectionWriter, find_latest_weights, increment_dir
    from ghostdet.utils.errors import ConfigError

    if not 0 <= (args.conf or 0) <= 1 or not 0 <= (args.iou or 0) <= 1:
        raise ConfigError(f"--conf {args.conf} / --iou {args.iou}: both must be between 0 and 1")
    if args.max_det is not None and args.max_det < 1:
        raise ConfigError(f"--max-det {args.max_det}: must be >= 1")
    # only what was given: a model with NMS in its graph defaults to its own thresholds
    thresholds = {k: v for k, v in dict(conf=args.conf, iou=args.iou, max_det=args.max_det).items() if v is not None}
    classes = [c.strip() for item in args.classes or [] for c in item.split(",") if c.strip()] or None
    files = collect_sources(args.source)  # fail on a missing path before the model is loaded
    weights = Path(args.weights) if args.weights else find_latest_weights()
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be >= 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # PyTorch's threads are process-wide; ONNX/OpenVINO get them per model
    detector = Detector.from_file(weights, device=args.device, imgsz=args.imgsz, classes=classes,
                                  precision=args.precision, threads=args.threads, **thresholds)
    if not args.imgsz:
        print(f"using {weights} at {detector.imgsz[0]}x{detector.imgsz[1]}")
    if detector.backend.kind == "openvino":
        print(f"OpenVINO precision {detector.backend.precision} ({detector.backend.precision_reason})")
    if detector.nms_settings:
        print(f"NMS in the graph (conf {detector.nms_settings['conf']}, iou {detector.nms_settings['iou']}, "
              f"max_det {detector.nms_settings['max_det']})")
    detector.warmup()  # lazy initialisation would otherwise be billed to the first image's time
    out = Path(args.out) if args.out else increment_dir("runs/detect")
    images = sum(not f.is_video for f in files)
    videos = len(files) - images
    n_done, totals = 0, {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    with DetectionWriter(out, save_images=not args.no_save, save_json=args.save_json, hide_labels=args.hide_labels,
                         hide_conf=args.hide_conf, line_width=args.line_width) as writer:
        for frame, result in detector.stream(files):
            writer.add(frame, result)
            n_done += 1
            for key in totals:
                totals[key] += result.speed_ms.get(key, 0.0)
            h, w = result.orig_shape
            where = f"{frame.path} frame {frame.index + 1}/{frame.frame_count or '?'}" if frame.is_video else f"{frame.path}"
            ms = sum(result.speed_ms.values())
            print(f"{where} {w}x{h}: {result.summary()}, {ms:.1f} ms", flush=True)
    if n_done == 0:
        raise ConfigError("no image could be read from the given sources (see the warnings above)")
    per = {k: v / n_done for k, v in totals.items()}
    what = f"{n_done} images and video frames" if videos else f"{n_done} image(s)"
    print(f"{what}: {per['preprocess']:.1f} ms preprocess, "
          f"{per['inference']:.1f} ms inference, {per['postprocess']:.1f} ms postprocess per image at "
          f"{detector.imgsz[0]}x{detector.imgsz[1]} ({detector.backend.kind}"
          f"{' ' + detector.backend.precision if detector.backend.kind == 'openvino' else ''})")
    saved = [] if args.no_save else ["annotated images" + (" and videos" if videos else "")]
    if args.save_json:
        saved.append("predictions.json")
    print(f"results saved to {out}" + (f" ({', '.join(saved)})" if saved else ""))


if __name__ == "__main__":
    sys.exit(main())
