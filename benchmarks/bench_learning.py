"""Does ghostdet's trainer learn real data at least as well as ultralytics' nano models? Same data, same budget,
one scoring, several seeds.

    pip install --no-deps --target /tmp/ul ultralytics                    # once (never a ghostdet dependency)
    python benchmarks/bench_learning.py                                   # raccoon, 320, 100 epochs, batch 16, 3 peers
    python benchmarks/bench_learning.py --epochs 30 --only ghostdet       # one side
    python benchmarks/bench_learning.py --peers yolo26n yolo11n yolov8n-ghost --seeds 0 1 2
    python benchmarks/bench_learning.py --raccoon-person                  # two classes: raccoon + coco128 person
    python benchmarks/bench_learning.py --models ghost_yolo repghost_yolo # several ghostdet configs
    python benchmarks/bench_learning.py --peer-imgsz 256 320 416          # the peers at several input sizes
    python benchmarks/bench_learning.py --models gghost_yolo@256 "ghost_yolo@320 model.reg_max=8"  # points
    python benchmarks/bench_learning.py --reuse ...                       # keep runs already trained in --out

A ghostdet point is ``CONFIG[@IMGSZ] [key=value ...]`` (one shell word): a model config, its training/eval size
(default ``--imgsz``) and Hydra overrides of that run only. A peer point is a peer (``--peers``: ``yolo26n``,
``yolo11n``, ``yolov8n-ghost``, ``yolo26n-nms``; see benchmarks/peers.py) at each ``--peer-imgsz``. Every point is
trained once per ``--seeds`` seed; accuracy is reported per run and as the mean over seeds with its spread (sample
standard deviation, min-max). ``--reuse`` skips a run whose folder in ``--out`` already holds a finished training
with the same command (its ``run.json``), so an interrupted sweep resumes.

Data (both sides see exactly the same boxes):
- default: the raccoon photos (../shared/data/raccoon, VOC xml, 160 train / 40 val, one class; or ``--data-root``).
- ``--multi``: a multi-class set made from coco128 (../shared/data/coco128, 128 images, 80 classes): its YOLO labels
  restricted to the ``--multi-classes`` (10) most frequent classes (boxes of other classes dropped; images left
  without boxes stay as background), split deterministically into ``--multi-train`` (100) train / the rest (28) val,
  stratified so that every class has about its share of boxes in val. Not learnable from scratch in a CPU budget
  (docs/detector.md), so not in the race.
- ``--raccoon-person``: two classes of real photos, ``raccoon`` (the raccoon set with its own split) and ``person``
  (coco128's 61 photos that hold a person, all their person boxes; 45 train / 16 val, stratified): 205 train / 56
  val photos, large single animals beside people of every size.
  Both are written once as YOLO folders (``benchmarks/race_data.py``, images copied) under ``--out`` and trained by
  ghostdet as ``data=yolo``.
ultralytics trains on a YOLO-txt copy written from ghostdet's own scan of the split (``<out>/yolo_data_<data>``).

Both sides train from scratch with the same epochs, imgsz, batch and CPU threads; everything else is each tool's own
default (ultralytics: its ``optimizer=auto``, nbs 64, workers 0 on CPU, its augmentation; ghostdet:
configs/train.yaml). The peers run in their own interpreter: ``--ul-python``, else this one with ``--ul-path``
(default /tmp/ul) on PYTHONPATH.

Scoring: each tool predicts the val images with its own pre-processing and post-processing at conf 0.001, IoU 0.7,
max_det 300 (YOLO26n: its NMS-free one-to-one head, ``nms=False``, top-k; ``yolo26n-nms``: its one-to-many head +
NMS); one pycocotools COCOeval on one ground-truth json (built from the scanned val records) scores every run. Time
per epoch, two ways: the wall time of the whole training process divided by epochs (data loading, forward, backward,
the optimizer, EMA and the per-epoch validation each tool runs by default, start-up amortised), and the median of the
per-epoch times each tool logs in its results.csv (training + validation; robust to a burst of load).

Training runs one after the other (they cannot be interleaved); a busy machine skews the time ratio, so the
load average before and after each run is printed with it. Results also go to ``<out>/results.json``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import peers as peer_models  # noqa: E402
from race_data import make_multi, make_raccoon_person, yolo_lines  # noqa: E402
from ghostdet.utils.device import cpu_name  # noqa: E402

SHARED = peer_models.SHARED

UL_TRAIN = r"""
import csv, json, sys
from ultralytics import YOLO
try:
    import polars  # noqa: F401  (ultralytics reads its results.csv with polars when saving a checkpoint)
except ImportError:  # a --no-deps install: the same dict from the csv module, nothing else changes
    from ultralytics.engine.trainer import BaseTrainer

    def read_results_csv(self):
        try:
            with open(self.csv, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError:
            return {}
        return {k.strip(): [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}

    BaseTrainer.read_results_csv = read_results_csv
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
extra = {"nms": False} if a["nms_free"] else {}  # nms=False: the one-to-one head, top-k, no NMS
out = []
for image_id, file in a["images"]:
    r = model.predict(file, imgsz=a["imgsz"], conf=a["conf"], iou=a["iou"], max_det=a["max_det"], device="cpu",
                      verbose=False, **extra)[0]
    for (x1, y1, x2, y2), s, c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist(), r.boxes.cls.tolist()):
        out.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
json.dump(out, open(a["out"], "w"))
"""

CONF, IOU, MAX_DET = 0.001, 0.7, 300
METRICS = ("AP", "AP50", "AP75")


def load_avg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def dataset(args) -> tuple[list[str], str]:
    """(ghostdet data overrides, a one-line description) of the data set of this benchmark."""
    if args.multi:
        root = make_multi(args.out, SHARED, args.multi_classes, args.multi_train)
        args.data_root = root
        return ["data=yolo", f"data.root={root}"], f"coco128 top-{args.multi_classes} classes"
    if args.raccoon_person:
        root = make_raccoon_person(args.out, SHARED)
        args.data_root = root
        return ["data=yolo", f"data.root={root}"], "raccoon + person"
    return ["data=voc", f"data.root={args.data_root}"], Path(args.data_root).name


def data_config(overrides: list[str]) -> dict:
    """The resolved ``data`` node of ``configs/train.yaml`` with ``overrides`` (what tools/train.py will use)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    return OmegaConf.to_container(cfg.data, resolve=True)


def scan_splits(data_cfg: dict) -> dict:
    """ghostdet's scan of the data: both sides train and are scored on exactly these records."""
    from ghostdet.data import build_dataset

    cfg = {**data_cfg, "cache": False}
    return {split: build_dataset(cfg, split, imgsz=320, augment=False, cache=False, read_only=True)
            for split in ("train", "val")}


def write_yolo_copy(splits: dict, out: Path, name: str) -> Path:
    """The same split as YOLO txt for ultralytics (``<out>/yolo_data_<name>``): images linked, one line per box,
    normalised xywh. Written once: a folder with the same content is reused (runs of the peers in parallel processes
    on one ``--out`` share it); written to a temporary folder and renamed."""
    content = {}
    for split, ds in splits.items():
        for rec in ds.records:
            src = Path(rec.file).resolve()
            content[f"{split}/{src.name}"] = [str(src), yolo_lines(rec)]
    names = list(splits["train"].names)
    manifest = {"names": names, "files": content}
    root = out / f"yolo_data_{name.replace(' ', '_')}"
    yaml_path = root / "data.yaml"
    if (root / "manifest.json").is_file() and json.loads((root / "manifest.json").read_text()) == manifest:
        return yaml_path
    tmp = Path(tempfile.mkdtemp(prefix=".yolo_data_", dir=out))
    for key, (src, lines) in content.items():
        split, file = key.split("/", 1)
        (tmp / "images" / split).mkdir(parents=True, exist_ok=True)
        (tmp / "labels" / split).mkdir(parents=True, exist_ok=True)
        (tmp / "images" / split / file).symlink_to(src)
        (tmp / "labels" / split / (Path(file).stem + ".txt")).write_text("\n".join(lines) + ("\n" if lines else ""))
    (tmp / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n"
                                   + "".join(f"  {i}: {n}\n" for i, n in enumerate(names)))
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    if root.exists():  # another data set under the same name: replace it (no run of this --out may be using it)
        shutil.rmtree(root)
    try:
        os.rename(tmp, root)
    except OSError:  # a parallel run wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return yaml_path


# ------------------------------------------------------------------------------------------------------ training
def timed_run(cmd: list[str], env: dict, log_file: Path) -> tuple[float, float, float]:
    before = load_avg()
    t0 = time.perf_counter()
    with open(log_file, "w") as f:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"error: {Path(cmd[1]).name if cmd[1] != '-c' else 'ultralytics'} failed "
                         f"(exit {proc.returncode}); see {log_file}")
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


def _seed_suffix(seed: int) -> str:
    return "" if seed == 0 else f"_s{seed}"


def train_ghostdet(spec: str, seed: int, args, env: dict) -> dict:
    model, imgsz, overrides = parse_point(spec, args.imgsz)
    slug = "_".join([model, str(imgsz), *(o.replace("model.", "").replace("=", "") for o in overrides)])
    run_dir = args.out / f"ghostdet_{slug}{_seed_suffix(seed)}"
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), f"model={model}", *args.data_overrides,
           f"imgsz={imgsz}", f"epochs={args.epochs}", f"batch={args.batch}", "device=cpu", f"seed={seed}",
           "progress=false", "tensorboard=false", f"hydra.run.dir={run_dir}", *args.overrides, *overrides]
    if args.reuse and (record := _reused(run_dir, cmd)):
        return record
    if args.finished_only:
        return None
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"training ghostdet {spec} seed {seed} ...", file=sys.stderr, flush=True)
    dt, before, after = timed_run(cmd, env, args.out / f"ghostdet_{slug}{_seed_suffix(seed)}.log")
    return _finish(run_dir, cmd, {
        "side": "ghostdet", "model": " ".join([model, *overrides]), "label": " ".join([model, *overrides]),
        "config": model, "overrides": overrides, "imgsz": imgsz, "seed": seed, "wall_s": dt, "load": (before, after),
        "epoch_s_median": median_epoch_s(run_dir / "results.csv", "ghostdet"),
        "weights": {w: str(run_dir / "weights" / f"{w}.pt") for w in ("best", "last")}})


def train_peer(name: str, imgsz: int, seed: int, args, env: dict, data_yaml: Path, trained: dict) -> dict:
    """One ultralytics training of peer ``name`` (peers sharing a yaml share the training: ``trained`` memo)."""
    spec_peer = peer_models.peer(name)
    key = (spec_peer.train_key, imgsz, seed)
    if key not in trained:
        project = args.out / f"ultralytics_{spec_peer.train_key}_{imgsz}{_seed_suffix(seed)}"
        spec = {"cfg": spec_peer.cfg, "data": str(data_yaml), "epochs": args.epochs, "imgsz": imgsz,
                "batch": args.batch, "project": str(project), "seed": seed}
        cmd = [args.ul_python_exe, "-c", UL_TRAIN, json.dumps(spec)]
        record = _reused(project, cmd) if args.reuse else None
        if record is None and args.finished_only:
            return None
        if record is None:
            shutil.rmtree(project, ignore_errors=True)
            print(f"training ultralytics {spec_peer.cfg} at {imgsz} seed {seed} ...", file=sys.stderr, flush=True)
            dt, before, after = timed_run(cmd, env, args.out / f"{project.name}.log")
            record = _finish(project, cmd, {
                "side": "ultralytics", "cfg": spec_peer.cfg, "imgsz": imgsz, "seed": seed, "wall_s": dt,
                "load": (before, after),
                "epoch_s_median": median_epoch_s(project / "train" / "results.csv", "ultralytics"),
                "weights": {w: str(project / "train" / "weights" / f"{w}.pt") for w in ("best", "last")}})
        trained[key] = record
    return {**trained[key], "model": name, "label": spec_peer.label, "peer": name}


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


# ------------------------------------------------------------------------------------------------------- scoring
def predict_ghostdet(weights: str, imgsz: int, images: list) -> list:
    from ghostdet.inference import Detector

    detector = Detector.from_checkpoint(weights, imgsz=imgsz)
    out = []
    for image_id, file in images:
        det = detector.predict(file, conf=CONF, iou=IOU, max_det=MAX_DET)[0]
        for (x1, y1, x2, y2), s, c in zip(det.boxes.tolist(), det.scores.tolist(), det.labels.tolist()):
            out.append({"image_id": image_id, "category_id": int(c), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
    return out


def predict_peer(run: dict, weights: str, images: list, args, env: dict) -> list:
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        path = Path(tmp) / "predictions.json"
        spec = {"weights": weights, "imgsz": run["imgsz"], "images": images, "conf": CONF, "iou": IOU,
                "max_det": MAX_DET, "nms_free": peer_models.peer(run["peer"]).nms_free, "out": str(path)}
        subprocess.run([args.ul_python_exe, "-c", UL_PREDICT, json.dumps(spec)], env=env, check=True, cwd=ROOT)
        return json.loads(path.read_text())


def score(evaluator, detections: list) -> dict:
    """AP (0.5:0.95), AP50, AP75 and each class's AP from ghostdet's COCO evaluator on its pycocotools backend (the
    official numbers)."""
    metrics = evaluator.evaluate(detections)
    return {**{k: metrics[k] for k in METRICS}, "per_class": metrics["per_class"]}


def spread(values: list[float]) -> dict:
    """mean, sample std (0 for one value), min, max, n."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def point_key(run: dict) -> tuple:
    return run["side"], run["model"], run["imgsz"]


def aggregate(runs: list[dict]) -> list[dict]:
    """One entry per point (side, model, imgsz): its runs over seeds, and per weights (``last``/``best``) and metric
    the ``spread`` over seeds; epoch times averaged. Points in the order of ``runs``."""
    points: dict[tuple, dict] = {}
    for run in runs:
        p = points.setdefault(point_key(run), {"side": run["side"], "model": run["model"], "label": run["label"],
                                               "imgsz": run["imgsz"], "runs": []})
        p["runs"].append(run)
    for p in points.values():
        p["seeds"] = [r["seed"] for r in p["runs"]]
        p["scores"] = {which: {m: spread([r["scores"][which][m] for r in p["runs"]]) for m in METRICS}
                       for which in p["runs"][0]["scores"]}
        p["per_class"] = {name: spread([r["scores"]["last"]["per_class"][name] for r in p["runs"]])
                          for name in p["runs"][0]["scores"]["last"].get("per_class", {})}
        p["wall_s"] = statistics.fmean(r["wall_s"] for r in p["runs"])
        p["epoch_s_median"] = statistics.fmean(r["epoch_s_median"] for r in p["runs"])
    return list(points.values())


def fmt_spread(s: dict) -> str:
    return f"{s['mean']:.3f}" if s["n"] == 1 else f"{s['mean']:.3f} ± {s['std']:.3f} ({s['min']:.3f}-{s['max']:.3f})"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=SHARED / "raccoon", help="VOC data (default: raccoon)")
    sets = p.add_mutually_exclusive_group()
    sets.add_argument("--multi", action="store_true", help="the coco128 class-subset set instead (see above)")
    sets.add_argument("--raccoon-person", action="store_true", help="the two-class raccoon + person set (see above)")
    p.add_argument("--multi-classes", type=int, default=10, help="--multi: the most frequent classes kept")
    p.add_argument("--multi-train", type=int, default=100, help="--multi: train images (the rest of 128 are val)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--imgsz", type=int, default=320, help="ghostdet training/eval size (of points without @IMGSZ)")
    p.add_argument("--peer-imgsz", type=int, nargs="+", default=None, help="peer sizes (default: --imgsz)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads for both (OMP_NUM_THREADS)")
    p.add_argument("--seed", type=int, default=0, help="the seed when --seeds is not given")
    p.add_argument("--seeds", type=int, nargs="+", help="train every point once per seed (e.g. 0 1 2)")
    p.add_argument("--models", nargs="+", default=["ghost_yolo"], help="ghostdet points: CONFIG[@IMGSZ] [key=value ...]")
    p.add_argument("--peers", nargs="*", default=list(peer_models.DEFAULT_PEERS),
                   help=f"ultralytics peers ({', '.join(peer_models.PEERS)}); none: ghostdet only")
    p.add_argument("--only", choices=["ghostdet", "ultralytics"])
    p.add_argument("--reuse", action="store_true", help="keep finished runs of the same command in --out")
    p.add_argument("--finished-only", action="store_true",
                   help="train nothing: use the finished runs in --out and leave out the seeds not trained (a point "
                        "then reports the seeds it has)")
    peer_models.add_ultralytics_args(p)
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_learning")
    p.add_argument("overrides", nargs="*", help="extra key=value overrides for every ghostdet run")
    return p


def train_and_score(args) -> tuple[list[dict], dict]:
    """Train every point of ``args`` (ghostdet points, then the peers at each size) once per seed and score each
    run's best and last weights on the val split; returns ``(runs, info)`` (info: split sizes, data name)."""
    args.out = args.out.resolve()  # ultralytics puts a relative project under its own runs/detect/
    args.out.mkdir(parents=True, exist_ok=True)
    args.seeds = args.seeds or [args.seed]
    args.reuse = args.reuse or args.finished_only  # --finished-only reuses what is there and trains nothing else
    for name in args.peers:
        peer_models.peer(name)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "YOLO_OFFLINE": "1"}
    peers_needed = args.only != "ghostdet" and bool(args.peers)
    if peers_needed:
        args.ul_python_exe, ul_env = peer_models.ul_interpreter(args.ul_path, args.ul_python)
        env_ul = {**ul_env, **{k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}

    args.data_overrides, data_name = dataset(args)
    splits = scan_splits(data_config(args.data_overrides))
    gt = splits["val"].coco_gt(from_json=False)
    (args.out / "val_gt.json").write_text(json.dumps(gt.dataset))
    images = [(img["id"], str(Path(rec.file).resolve())) for img, rec in zip(gt.dataset["images"], splits["val"].records)]

    from ghostdet.eval import COCOEvaluator

    evaluator = COCOEvaluator(gt, backend="pycocotools")  # every run scored by one evaluator
    runs = []
    if args.only != "ultralytics":
        for spec in args.models:
            for seed in args.seeds:
                runs.append(train_ghostdet(spec, seed, args, env))
    if peers_needed:
        data_yaml = write_yolo_copy(splits, args.out, data_name)
        trained: dict = {}
        for name in args.peers:
            for imgsz in args.peer_imgsz or [args.imgsz]:
                for seed in args.seeds:
                    runs.append(train_peer(name, imgsz, seed, args, env_ul, data_yaml, trained))
    if args.finished_only:
        print(f"--finished-only: {runs.count(None)} of {len(runs)} runs not trained, left out", file=sys.stderr)
        runs = [run for run in runs if run is not None]

    gt_digest = hashlib.sha1(json.dumps(gt.dataset, sort_keys=True).encode()).hexdigest()
    for run in runs:
        run["scores"] = {}
        for which, weights in run["weights"].items():
            # a score is kept beside the weights (same weights file, ground truth and settings: the same number), so
            # the final --reuse run of a parallel sweep does not predict everything again
            key = {"weights": weights, "mtime": os.path.getmtime(weights), "gt": gt_digest, "model": run["model"],
                   "imgsz": run["imgsz"], "conf": CONF, "iou": IOU, "max_det": MAX_DET, "per_class": True}
            cache = Path(weights).parent / f"score_{which}_{hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]}.json"
            if cache.is_file():
                run["scores"][which] = json.loads(cache.read_text())
                continue
            dets = (predict_ghostdet(weights, run["imgsz"], images) if run["side"] == "ghostdet"
                    else predict_peer(run, weights, images, args, env_ul))
            run["scores"][which] = score(evaluator, dets)
            cache.write_text(json.dumps(run["scores"][which]))
    info = {"train": len(splits["train"]), "val": len(splits["val"]), "data": data_name,
            "classes": len(splits["train"].names), "val_files": [f for _, f in images]}
    return runs, info


def main() -> None:
    args = parser().parse_args()
    runs, info = train_and_score(args)
    print(f"\n{info['data']}: {info['train']} train / {info['val']} val images, {info['classes']} classes, "
          f"{args.epochs} epochs, batch {args.batch}, {args.threads} threads, from scratch, seeds {args.seeds}; "
          f"{cpu_name()}, {os.cpu_count()} CPUs")
    print("| model | imgsz | seed | weights | AP | AP50 | AP75 | s/epoch: wall / epochs | s/epoch: median | load before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        for which, s in run["scores"].items():
            print(f"| {run['side']} {run['label']} | {run['imgsz']} | {run['seed']} | {which} | {s['AP']:.3f} | "
                  f"{s['AP50']:.3f} | {s['AP75']:.3f} | {run['wall_s'] / args.epochs:.2f} | "
                  f"{run['epoch_s_median']:.2f} | {run['load'][0]:.1f}/{run['load'][1]:.1f} |")
    points = aggregate(runs)
    print(f"\nMean over seeds {args.seeds} (± sample std, min-max):")
    print("| model | imgsz | AP (last) | AP50 (last) | AP75 (last) | AP (best.pt) | s/epoch median |")
    print("|---|---|---|---|---|---|---|")
    for p in points:
        last, best = p["scores"]["last"], p["scores"]["best"]
        print(f"| {p['side']} {p['label']} | {p['imgsz']} | {fmt_spread(last['AP'])} | {fmt_spread(last['AP50'])} | "
              f"{fmt_spread(last['AP75'])} | {fmt_spread(best['AP'])} | {p['epoch_s_median']:.2f} |")
    for p in points:
        if p["side"] != "ghostdet":
            continue
        for q in (q for q in points if q["side"] == "ultralytics" and q["imgsz"] == p["imgsz"]):
            print(f"{p['label']} epoch time / {q['label']}'s at {p['imgsz']}: {p['wall_s'] / q['wall_s']:.2f}x (wall), "
                  f"{p['epoch_s_median'] / q['epoch_s_median']:.2f}x (median epoch)")
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "cpu": cpu_name(), "data": info, "runs": runs,
                                                       "points": [{k: v for k, v in p.items() if k != "runs"}
                                                                  for p in points]}, indent=1))
    print(f"data: {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
