"""Does ghostdet's trainer learn real data at least as well as ultralytics? Same data, same budget, one scoring.

    python benchmarks/bench_learning.py                                   # raccoon, 320, 100 epochs, batch 16
    python benchmarks/bench_learning.py --epochs 30 --only ghostdet       # one side
    python benchmarks/bench_learning.py --models ghost_yolo repghost_yolo # several ghostdet configs
    python benchmarks/bench_learning.py --peer-imgsz 256 320 416          # the peer at several input sizes
    python benchmarks/bench_learning.py --models gghost_yolo@256 "ghost_yolo@320 model.reg_max=8"  # points
    python benchmarks/bench_learning.py --reuse ...                       # keep runs already trained in --out

A ghostdet point is ``CONFIG[@IMGSZ] [key=value ...]`` (one shell word): a model config, its training/eval size
(default ``--imgsz``) and Hydra overrides of that run only. ``--reuse`` skips a run whose folder in ``--out``
already holds a finished training with the same command (its ``run.json``), so an interrupted sweep resumes.

Both sides train from scratch on the raccoon photos (../shared/data/raccoon, VOC xml, 160 train / 40 val; or
``--data-root``) with the same epochs, imgsz, batch and CPU threads; everything else is each tool's own default
(ultralytics: SGD/auto optimizer, nbs 64, workers 0 on CPU, its augmentation; ghostdet: configs/train.yaml).
The peer is ultralytics' YOLOv8n-ghost (``yolov8n-ghost.yaml``), run in its own interpreter (``--ul-python``,
a venv with ultralytics installed; ultralytics is never a ghostdet dependency), on a YOLO-txt copy of the same
split written from ghostdet's own scan of the xml files, so both see the same boxes.

Scoring: each tool predicts the val images with its own pre-processing and NMS at conf 0.001, IoU 0.7, max_det 300;
one pycocotools COCOeval on one ground-truth json (built from the scanned val records) scores both. Time per
epoch, two ways: the wall time of the whole training process divided by epochs (data loading, forward, backward,
the optimizer, EMA and the per-epoch validation each tool runs by default, start-up amortised), and the median of
the per-epoch times each tool logs in its results.csv (training + validation; robust to a burst of load).

Training runs one after the other (they cannot be interleaved); a busy machine skews the time ratio, so the
load average before and after each run is printed with it. Results also go to ``<out>/results.json``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ghostdet.utils.device import cpu_name  # noqa: E402

SHARED = Path(os.environ.get("GHOSTDET_SHARED_DATA", ROOT.parent / "shared" / "data"))

UL_TRAIN = r"""
import json, sys
from ultralytics import YOLO
a = json.loads(sys.argv[1])
YOLO(a["cfg"]).train(data=a["data"], epochs=a["epochs"], imgsz=a["imgsz"], batch=a["batch"], device="cpu",
                     project=a["project"], name="train", exist_ok=True, pretrained=False, amp=False, plots=False,
                     seed=a["seed"], verbose=False)
"""

UL_PREDICT = r"""
import json, sys
from ultralytics import YOLO
a = json.loads(sys.argv[1])
model = YOLO(a["weights"])
out = []
for image_id, file in a["images"]:
    r = model.predict(file, imgsz=a["imgsz"], conf=a["conf"], iou=a["iou"], max_det=a["max_det"], device="cpu",
                      verbose=False)[0]
    for (x1, y1, x2, y2), s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
        out.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
json.dump(out, open(a["out"], "w"))
"""

CONF, IOU, MAX_DET = 0.001, 0.7, 300


def load_avg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def scan_splits(data_root: Path) -> dict:
    """ghostdet's scan of the VOC xml: both sides train and are scored on exactly these records."""
    from ghostdet.data import build_dataset

    cfg = {"format": "voc", "root": str(data_root), "train": "train", "val": "val", "names": None, "cache": False}
    return {split: build_dataset(cfg, split, imgsz=320, augment=False, cache=False, read_only=True)
            for split in ("train", "val")}


def write_yolo_copy(splits: dict, out: Path) -> Path:
    """The same split as YOLO txt for ultralytics: images linked, one line per box, normalised xywh."""
    root = out / "yolo_data"
    shutil.rmtree(root, ignore_errors=True)
    for split, ds in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for rec in ds.records:
            src = Path(rec.file).resolve()
            (root / "images" / split / src.name).symlink_to(src)
            lines = [f"{int(c)} {(x1 + x2) / 2 / rec.width:.6f} {(y1 + y2) / 2 / rec.height:.6f} "
                     f"{(x2 - x1) / rec.width:.6f} {(y2 - y1) / rec.height:.6f}"
                     for (x1, y1, x2, y2), c in zip(rec.boxes.tolist(), rec.labels.tolist())]
            (root / "labels" / split / (src.stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
    names = splits["train"].names
    yaml_path = root / "data.yaml"
    yaml_path.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n"
                         + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    return yaml_path


def timed_run(cmd: list[str], env: dict, log_file: Path) -> tuple[float, float, float]:
    before = load_avg()
    t0 = time.perf_counter()
    with open(log_file, "w") as f:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[1]} failed (exit {proc.returncode}); see {log_file}")
    return dt, before, load_avg()


def parse_point(spec: str, default_imgsz: int) -> tuple[str, int, list[str]]:
    """``"CONFIG[@IMGSZ] [key=value ...]"`` -> (config, imgsz, overrides)."""
    head, *overrides = spec.split()
    model, _, size = head.partition("@")
    return model, int(size) if size else default_imgsz, overrides


def _reused(run_dir: Path, cmd: list) -> dict | None:
    """The record of a finished run of exactly ``cmd`` in ``run_dir`` (``--reuse``), else None."""
    try:
        record = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return None
    done = all(Path(w).is_file() for w in record.get("weights", {}).values())
    return record if done and record.get("cmd") == [str(c) for c in cmd[1:]] else None


def _finish(run_dir: Path, cmd: list, record: dict) -> dict:
    record["cmd"] = [str(c) for c in cmd[1:]]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "run.json").write_text(json.dumps(record, indent=1))
    return record


def train_ghostdet(spec: str, args, out: Path, env: dict) -> dict:
    model, imgsz, overrides = parse_point(spec, args.imgsz)
    slug = "_".join([model, str(imgsz), *(o.replace("model.", "").replace("=", "") for o in overrides)])
    run_dir = out / f"ghostdet_{slug}"
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), f"model={model}", "data=voc",
           f"data.root={args.data_root}", f"imgsz={imgsz}", f"epochs={args.epochs}", f"batch={args.batch}",
           "device=cpu", f"seed={args.seed}", "progress=false", "tensorboard=false", f"hydra.run.dir={run_dir}",
           *args.overrides, *overrides]
    if args.reuse and (record := _reused(run_dir, cmd)):
        return record
    shutil.rmtree(run_dir, ignore_errors=True)
    dt, before, after = timed_run(cmd, env, out / f"ghostdet_{slug}.log")
    return _finish(run_dir, cmd, {
        "side": "ghostdet", "model": " ".join([model, *overrides]), "config": model, "overrides": overrides,
        "imgsz": imgsz, "wall_s": dt, "load": (before, after),
        "epoch_s_median": median_epoch_s(run_dir / "results.csv", "ghostdet"),
        "weights": {w: str(run_dir / "weights" / f"{w}.pt") for w in ("best", "last")}})


def train_peer(imgsz: int, args, out: Path, env: dict, data_yaml: Path) -> dict:
    project = out / f"ultralytics_{imgsz}"
    spec = {"cfg": "yolov8n-ghost.yaml", "data": str(data_yaml), "epochs": args.epochs, "imgsz": imgsz,
            "batch": args.batch, "project": str(project), "seed": args.seed}
    cmd = [args.ul_python, "-c", UL_TRAIN, json.dumps(spec)]
    if args.reuse and (record := _reused(project, cmd)):
        return record
    shutil.rmtree(project, ignore_errors=True)
    dt, before, after = timed_run(cmd, env, out / f"ultralytics_{imgsz}.log")
    return _finish(project, cmd, {
        "side": "ultralytics", "model": "yolov8n-ghost", "imgsz": imgsz, "wall_s": dt, "load": (before, after),
        "epoch_s_median": median_epoch_s(project / "train" / "results.csv", "ultralytics"),
        "weights": {w: str(project / "train" / "weights" / f"{w}.pt") for w in ("best", "last")}})


def median_epoch_s(results_csv: Path, side: str) -> float:
    """Median epoch time (training + that epoch's validation) from the tool's own results.csv: robust to a
    burst of load on a shared machine, which the wall time / epochs is not."""
    with open(results_csv, newline="") as f:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)]
    if side == "ghostdet":
        times = [float(r["epoch_time_s"]) for r in rows]
    else:  # ultralytics' "time" column is cumulative seconds
        cumulative = [float(r["time"]) for r in rows]
        times = [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]
    times.sort()
    return times[len(times) // 2] if times else float("nan")


def predict_ghostdet(weights: str, imgsz: int, images: list) -> list:
    from ghostdet.inference import Detector

    detector = Detector.from_checkpoint(weights, imgsz=imgsz)
    out = []
    for image_id, file in images:
        det = detector.predict(file, conf=CONF, iou=IOU, max_det=MAX_DET)[0]
        for (x1, y1, x2, y2), s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            out.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    return out


def predict_peer(weights: str, imgsz: int, images: list, args, out: Path, env: dict) -> list:
    path = out / "peer_predictions.json"
    spec = {"weights": weights, "imgsz": imgsz, "images": images, "conf": CONF, "iou": IOU, "max_det": MAX_DET,
            "out": str(path)}
    subprocess.run([args.ul_python, "-c", UL_PREDICT, json.dumps(spec)], env=env, check=True, cwd=ROOT)
    return json.loads(path.read_text())


def score(evaluator, detections: list) -> dict:
    """AP (0.5:0.95), AP50, AP75 from ghostdet's COCO evaluator on its pycocotools backend (the official numbers)."""
    metrics = evaluator.evaluate(detections)
    return {k: metrics[k] for k in ("AP", "AP50", "AP75")}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=SHARED / "raccoon")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=320, help="ghostdet training/eval size (of points without @IMGSZ)")
    p.add_argument("--peer-imgsz", type=int, nargs="+", default=None, help="peer sizes (default: --imgsz)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both (OMP_NUM_THREADS)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", nargs="+", default=["ghost_yolo"], help="ghostdet points: CONFIG[@IMGSZ] [key=value ...]")
    p.add_argument("--only", choices=["ghostdet", "ultralytics"])
    p.add_argument("--reuse", action="store_true", help="keep finished runs of the same command in --out")
    p.add_argument("--ul-python", default=os.environ.get("UL_PYTHON", "/tmp/ulvenv/bin/python"),
                   help="python of a venv with ultralytics installed")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_learning")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every ghostdet run")
    return p


def train_and_score(args) -> tuple[list[dict], dict]:
    """Train every point of ``args`` (ghostdet points, then the peer sizes) and score each one's best and last
    weights on the val split; returns ``(runs, split sizes)``."""
    args.out = args.out.resolve()  # ultralytics puts a relative project under its own runs/detect/
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "YOLO_OFFLINE": "1"}

    splits = scan_splits(args.data_root)
    gt = splits["val"].coco_gt(from_json=False)
    (args.out / "val_gt.json").write_text(json.dumps(gt.dataset))
    images = [(img["id"], str(Path(rec.file).resolve())) for img, rec in zip(gt.dataset["images"], splits["val"].records)]

    from ghostdet.eval import COCOEvaluator

    evaluator = COCOEvaluator(gt, backend="pycocotools")  # both sides scored by one evaluator
    runs = []
    if args.only != "ultralytics":
        for spec in args.models:
            runs.append(train_ghostdet(spec, args, args.out, env))
    if args.only != "ghostdet":
        data_yaml = write_yolo_copy(splits, args.out)
        for imgsz in args.peer_imgsz or [args.imgsz]:
            runs.append(train_peer(imgsz, args, args.out, env, data_yaml))

    for run in runs:
        run["scores"] = {}
        for which, weights in run["weights"].items():
            dets = (predict_ghostdet(weights, run["imgsz"], images) if run["side"] == "ghostdet"
                    else predict_peer(weights, run["imgsz"], images, args, args.out, env))
            run["scores"][which] = score(evaluator, dets)
    return runs, {split: len(ds) for split, ds in splits.items()}


def main() -> None:
    args = parser().parse_args()
    runs, sizes = train_and_score(args)
    print(f"\n{args.data_root.name}: {sizes['train']} train / {sizes['val']} val images, {args.epochs} epochs, "
          f"batch {args.batch}, {args.threads} threads, from scratch; {cpu_name()}, {os.cpu_count()} CPUs")
    print("| model | imgsz | weights | AP | AP50 | AP75 | s/epoch: wall / epochs | s/epoch: median | load before/after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        for which, s in run["scores"].items():
            print(f"| {run['side']} {run['model']} | {run['imgsz']} | {which} | {s['AP']:.3f} | {s['AP50']:.3f} | "
                  f"{s['AP75']:.3f} | {run['wall_s'] / args.epochs:.2f} | {run['epoch_s_median']:.2f} | "
                  f"{run['load'][0]:.1f}/{run['load'][1]:.1f} |")
    for run in runs:
        peers = [r for r in runs if r["side"] == "ultralytics" and r["imgsz"] == run["imgsz"]]
        if run["side"] == "ghostdet" and peers:
            print(f"{run['model']} epoch time / YOLOv8n-ghost's at {run['imgsz']}: "
                  f"{run['wall_s'] / peers[0]['wall_s']:.2f}x (wall), "
                  f"{run['epoch_s_median'] / peers[0]['epoch_s_median']:.2f}x (median epoch)")
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "cpu": cpu_name(), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
