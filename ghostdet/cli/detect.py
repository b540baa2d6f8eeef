"""Detect objects in images, folders, glob patterns, videos, webcams and streams with a trained Ghost-YOLO (.pt), its
ONNX export or its OpenVINO export (folder): `ghostdet detect photo.jpg` (alias `ghostdet predict`) or
`python tools/detect.py photo.jpg`, same arguments.

    python tools/detect.py photo.jpg                                  # newest runs/train/*/*/weights/best.pt
    python tools/detect.py "my photos/" "shots/*.png" clip.mp4 --weights best.onnx --conf 0.3
    python tools/detect.py photos/ --weights best_openvino/ --precision auto --threads 2
    python tools/detect.py images/ --classes person car --no-save     # predictions.json only
    python tools/detect.py 0 --imgsz 480 640                          # webcam 0 (or rtsp://..., http://...)
    python tools/detect.py photos/ --save-txt --save-conf --save-crop # YOLO label files and crops too

Writes annotated images (videos and streams as .mp4) and predictions.json to a new folder runs/detect/exp, exp2, ...
(--project/--name; --exist-ok adds to an existing one under new names), or to --out DIR, which must be new or empty.
A file that existed before is never replaced, and a run that reads nothing writes nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ghostdet.cli.common import add_plugins_argument, run_tool, start_tool

DEFAULT_CONF = 0.25
HINT_CONFS = (0.1, 0.01, 0.001)  # the lower thresholds the "nothing found" hint counts at
HINT_FRAMES = 100  # images/frames re-run for the hint (a long video is not run twice)


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _looks_like_source(token: str) -> bool:
    """A token after ``--classes`` that is a source, not a class name: a path, a pattern, a URL."""
    return Path(token).exists() or any(c in token for c in "*?[/\\") or "://" in token


def _split_list_option(values: list[str] | None, keep) -> tuple[list[str], list[str]]:
    """Tokens of a space-separated option (``--classes person car``): those ``keep`` accepts after the first, and the
    rest, which are sources written after the option (``--imgsz 640 photo.jpg``)."""
    if not values:
        return [], []
    n = 1
    while n < len(values) and keep(values[n], n):
        n += 1
    return values[:n], values[n:]


def parse_args(argv=None) -> argparse.Namespace:
    from ghostdet.inference.predictor import parse_imgsz

    p = argparse.ArgumentParser(description="Run a ghostdet detector on images, folders, glob patterns, videos, "
                                "webcams or streams.")
    p.add_argument("source", nargs="*", help="image/video files, folders, glob patterns (quote patterns), a webcam "
                   "index (0) or a stream URL (rtsp://, http://, file:// ... read by OpenCV)")
    p.add_argument("--weights", help="a .pt checkpoint, an exported .onnx, or an OpenVINO export folder (best_openvino/) "
                   "or its .xml; default: the newest runs/train/*/*/weights/best.pt")
    p.add_argument("--conf", type=float, help=f"score threshold (default {DEFAULT_CONF}; an export with --nms: its own)")
    p.add_argument("--iou", type=float, help="NMS IoU threshold (default 0.45; an export with --nms: its own)")
    p.add_argument("--imgsz", nargs="+", metavar="SIZE", help="inference size: 640, or height width (480 640; also "
                   "480,640); default: the training size (.pt) or the exported size (.onnx)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or N (default cpu)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"], default="auto",
                   help="OpenVINO inference precision: auto = bf16 where the CPU reports BF16 support, else fp32 "
                   "(default auto)")
    p.add_argument("--threads", type=int, help="inference threads (default: the runtime's choice)")
    p.add_argument("--classes", nargs="+", action="append", metavar="CLASS", help="keep only these classes: indices "
                   "or names, space- or comma-separated (--classes person car, --classes 0,2)")
    p.add_argument("--max-det", type=int, help="most detections per image (default 300; an export with --nms: its own)")
    p.add_argument("--project", default="runs/detect", help="parent of the run folders (default runs/detect)")
    p.add_argument("--name", default="exp", help="run folder name: exp, then exp2, exp3, ... (default exp)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing --project/--name folder (its files "
                   "stay: new outputs take new names)")
    p.add_argument("--out", help="output folder instead of --project/--name: created, or empty (a folder that holds "
                   "files is refused)")
    p.add_argument("--no-save", action="store_true", help="do not write annotated images/videos")
    p.add_argument("--save-json", action=argparse.BooleanOptionalAction, default=True, help="write predictions.json (default on)")
    p.add_argument("--save-txt", action="store_true", help="write YOLO label files labels/<image>.txt (class cx cy w h, "
                   "0-1), e.g. to seed new labels")
    p.add_argument("--save-conf", action="store_true", help="with --save-txt: the score as a 6th column")
    p.add_argument("--save-crop", action="store_true", help="write each detection cut from the image: crops/<class>/")
    p.add_argument("--hide-labels", action="store_true", help="draw boxes without class names")
    p.add_argument("--hide-conf", action="store_true", help="draw class names without scores")
    p.add_argument("--line-width", type=int, help="box line width in pixels (default: from the image size)")
    p.add_argument("--verbose", action="store_true")
    add_plugins_argument(p)
    args = p.parse_args(argv)

    # space-separated lists end where the sources written after them begin
    sizes, extra = _split_list_option(args.imgsz, lambda token, n: n < 2 and _is_int(token))
    classes = []
    for group in args.classes or []:
        kept, more = _split_list_option(group, lambda token, n: not _looks_like_source(token))
        classes += [c.strip() for item in kept for c in item.split(",") if c.strip()]
        extra += more
    args.source = list(args.source) + extra
    args.classes = classes or None
    if not args.source:
        p.error("the following arguments are required: source")
    try:
        args.imgsz = parse_imgsz(",".join(sizes)) if sizes else None
    except argparse.ArgumentTypeError as e:
        p.error(f"argument --imgsz: {e}")
    return args


def no_detections_hint(detector, files, conf: float, classes) -> str | None:
    """When a run found nothing at the default threshold: how many detections lower thresholds would give (on the
    first images/frames, so a long video is not run twice). None when the lower thresholds find nothing either."""
    import itertools

    counts = dict.fromkeys(HINT_CONFS, 0)
    frames = 0
    stream = detector.stream([f for f in files if f.stream is None], conf=min(HINT_CONFS), classes=classes)
    try:
        for _frame, result in itertools.islice(stream, HINT_FRAMES):
            frames += 1
            for threshold in HINT_CONFS:
                counts[threshold] += int((result.scores >= threshold).sum())
    finally:
        stream.close()
    if not any(counts.values()):
        return None
    scope = f"the {frames} image(s)" if frames < HINT_FRAMES else f"the first {frames} images/frames"
    found = ", ".join(f"{n} at --conf {t}" for t, n in counts.items())
    return f"hint: nothing found at --conf {conf}; on {scope} there would be {found} (a model trained longer scores higher)"


@run_tool
def main(argv=None) -> None:
    args = parse_args(argv)
    start_tool(args.plugins, args.verbose)

    from ghostdet.inference import Detector
    from ghostdet.inference.sources import collect_sources
    from ghostdet.inference.writer import DetectionWriter, OutputDir, find_latest_weights
    from ghostdet.utils.errors import ConfigError

    if not 0 <= (args.conf or 0) <= 1 or not 0 <= (args.iou or 0) <= 1:
        raise ConfigError(f"--conf {args.conf} / --iou {args.iou}: both must be between 0 and 1")
    if args.max_det is not None and args.max_det < 1:
        raise ConfigError(f"--max-det {args.max_det}: must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads {args.threads}: must be >= 1")
    # only what was given: a model with NMS in its graph defaults to its own thresholds
    thresholds = {k: v for k, v in dict(conf=args.conf, iou=args.iou, max_det=args.max_det).items() if v is not None}
    files = collect_sources(args.source)  # fail on a missing path before the model is loaded
    out = OutputDir(args.project, args.name, args.exist_ok, exact=args.out)  # refuses a full --out up front
    weights = Path(args.weights) if args.weights else find_latest_weights()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)  # PyTorch's threads are process-wide; ONNX/OpenVINO get them per model
    detector = Detector.from_file(weights, device=args.device, imgsz=args.imgsz, classes=args.classes,
                                  precision=args.precision, threads=args.threads, **thresholds)
    if not args.imgsz:
        print(f"using {weights} at {detector.imgsz[0]}x{detector.imgsz[1]}")
    if detector.backend.kind == "openvino":
        print(f"OpenVINO precision {detector.backend.precision} ({detector.backend.precision_reason})")
    if detector.nms_settings:
        print(f"NMS in the graph (conf {detector.nms_settings['conf']}, iou {detector.nms_settings['iou']}, "
              f"max_det {detector.nms_settings['max_det']})")
    detector.warmup()  # lazy initialisation would otherwise be billed to the first image's time
    videos = sum(f.is_video for f in files)
    found, totals = 0, {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    with DetectionWriter(out, save_images=not args.no_save, save_json=args.save_json, save_txt=args.save_txt,
                         save_conf=args.save_conf, save_crop=args.save_crop, hide_labels=args.hide_labels,
                         hide_conf=args.hide_conf, line_width=args.line_width) as writer:
        for frame, result in detector.stream(files):
            writer.add(frame, result)
            found += len(result)
            for key in totals:
                totals[key] += result.speed_ms.get(key, 0.0)
            h, w = result.orig_shape
            where = f"{frame.where} frame {frame.index + 1}/{frame.frame_count or '?'}" if frame.is_video else frame.where
            ms = sum(result.speed_ms.values())
            print(f"{where} {w}x{h}: {result.summary()}, {ms:.1f} ms", flush=True)
    n_done = writer.count
    if n_done == 0:
        raise ConfigError("no image could be read from the given sources (see the warnings above); nothing was written")
    per = {k: v / n_done for k, v in totals.items()}
    what = f"{n_done} images and video frames" if videos else f"{n_done} image(s)"
    print(f"{what}: {per['preprocess']:.1f} ms preprocess, "
          f"{per['inference']:.1f} ms inference, {per['postprocess']:.1f} ms postprocess per image at "
          f"{detector.imgsz[0]}x{detector.imgsz[1]} ({detector.backend.kind}"
          f"{' ' + detector.backend.precision if detector.backend.kind == 'openvino' else ''})")
    if found == 0 and args.conf is None and not detector.nms_settings:
        hint = no_detections_hint(detector, files, detector.conf, args.classes)
        if hint:
            print(hint)
    saved = [] if args.no_save else ["annotated images" + (" and videos" if videos else "")]
    saved += ["predictions.json"] * args.save_json + ["labels/"] * args.save_txt + ["crops/"] * args.save_crop
    if writer.out_dir is not None:
        print(f"results saved to {writer.out_dir}" + (f" ({', '.join(saved)})" if saved else ""))


if __name__ == "__main__":
    sys.exit(main())
