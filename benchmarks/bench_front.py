"""The speed-accuracy front on this CPU: ghostdet points against ultralytics' YOLO26n, YOLO11n and YOLOv8n-ghost at
several input sizes, end to end.

    pip install --no-deps --target /tmp/ul ultralytics   # once (never a ghostdet dependency; or --ul-python PY)
    python benchmarks/bench_front.py                     # default points, 30 epochs, 3 seeds, peers at 256/320/416
    python benchmarks/bench_front.py --raccoon-person    # the same on two classes: raccoon + coco128 person
    python benchmarks/bench_front.py --models gghost_yolo@256 "gghost_yolo_lite@224 model.neck_channels=48" --reuse
    # the trainings of the two sides in parallel, one thread each; then the scoring + latency half, 2 threads:
    python benchmarks/bench_front.py --threads 1 --only ghostdet --no-latency & \
    python benchmarks/bench_front.py --threads 1 --only ultralytics --no-latency; wait
    python benchmarks/bench_front.py --threads 1 --latency-threads 2 --reuse
    python benchmarks/bench_front.py --from-json runs/bench_front/front.json   # report + plot again
    python benchmarks/bench_front.py --from-json docs/front_yolo26n.json --plot /tmp/f.png --markdown /tmp/f.md

One run does both halves:
1. **Accuracy.** Every point is trained and scored by ``bench_learning.py`` (its options apply: same data, epochs,
   batch, threads for all, ``--seeds``; one pycocotools scoring of the ``last`` weights on the val split;
   ``--reuse`` keeps finished trainings; ``--finished-only`` trains nothing and reports each point with the seeds it
   has, for a sweep cut short). A point's AP is the mean over seeds of its last-epoch mAP50-95 (``±`` the
   sample standard deviation). ``best`` weights were chosen on that same val split by each tool, so the front uses
   ``last``.
2. **Latency, end to end.** Every point is timed in its deploy form at its input size, batch 1, with the trained
   ``last`` weights of its first seed (the number of boxes the post-processing handles depends on them): each timed
   call takes the next real photo (``dog.jpg`` + the data set's val photos, ``--photos``, letterboxed beforehand),
   runs the exported model and the post-processing each tool runs after its runtime at conf 0.25 — ghostdet: decode
   in the graph, then ``ghostdet.models.postprocess`` (class-aware NMS, the ``Detector``'s IoU and max_det) and boxes
   back to the photo; YOLO11n / YOLOv8n-ghost: ultralytics' NMS (IoU 0.7); YOLO26n: its NMS-free one-to-one head,
   top-k inside the graph and a confidence filter (``benchmarks/peers.py``). Exported as ``bench_peers.py`` does, in
   ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16 (where the CPU has avx512_bf16 or AMX) and int8 in both
   (post-training, the same quantizer for every model, calibrated on coco128 photos). One interleaved phase per
   runtime: every round times every point in turn, so machine drift hits all alike; ratios are per-round medians.

A point's latency is its fastest runtime. Two fronts are reported: the *float* front (fp32/bf16: the accuracy is
exactly the one measured) and the *any-precision* front (int8 allowed; the accuracy column is still the float
model's: int8 accuracy is checked per model by ``tools/export.py --int8``, not here). The goal check, per peer
point: a ghostdet point at least as accurate (mean AP) at <= ``--target`` x its latency. Writes ``<out>/front.json``,
a Markdown table on stdout, and the plot (``--plot``, default ``<out>/front.png``; every side on one chart);
``--markdown FILE`` also writes the tables as docs/detector.md (every runtime) and the README (compact) print them.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_learning  # noqa: E402
import peers as peer_models  # noqa: E402
from bench_peers import (calibration, ghostdet_checkpoint_model, onnx_file, ort_int8_run, ort_run,  # noqa: E402
                         ov_int8_run, ov_run, time_runtimes)
from ghostdet.utils.device import cpu_name  # noqa: E402
from ghostdet.utils.timing import set_threads  # noqa: E402

FLOAT_RUNTIMES = ("ONNX Runtime fp32", "OpenVINO fp32", "OpenVINO bf16")
INT8_RUNTIMES = ("ONNX Runtime int8", "OpenVINO int8")
STYLE = {"YOLO26n": ("tab:red", "s"), "YOLO26n-nms": ("tab:pink", "v"), "YOLO11n": ("tab:orange", "^"),
         "YOLOv8n-ghost": ("tab:purple", "D"), "ghostdet": ("tab:blue", "o")}


def label(point: dict) -> str:
    return f"{point['label']} @{point['imgsz']}"


def versions(ul_version: str | None) -> str:
    parts = [f"torch {torch.__version__.split('+')[0]}"]
    for name in ("onnxruntime", "openvino"):
        try:
            module = __import__(name)
            parts.append(f"{name} {module.__version__.split('-')[0]}")
        except ImportError:
            pass
    if ul_version:
        parts.append(f"ultralytics {ul_version}")
    return ", ".join(parts)


def time_points(points: list[dict], info: dict, args) -> tuple[dict, dict]:
    """End-to-end round medians (ms) per runtime per point, ``{runtime: {label: [ms per round]}}``, and the mean
    detections per photo of each point (ONNX Runtime fp32 outputs; a sanity figure)."""
    threads = set_threads(args.latency_threads or args.threads)
    tmp = tempfile.TemporaryDirectory()
    files_photos = peer_models.photo_files(info.get("val_files", ()), args.photos)
    print(f"end-to-end photos: {', '.join(Path(f).name for f in files_photos)}", file=sys.stderr)
    photos = {size: peer_models.load_photos(files_photos, size) for size in {p["imgsz"] for p in points}}
    post_g = peer_models.ghostdet_postprocess()
    files, posts, shapes, by_label = {}, {}, {}, {}
    for p in points:  # every export before any timing
        name, size, run = label(p), p["imgsz"], p["runs"][0]
        if p["side"] == "ghostdet":
            model, posts[name] = ghostdet_checkpoint_model(run["weights"]["last"]), post_g
        else:
            model = peer_models.deploy_peer(run["peer"], size, weights=run["weights"]["last"])
            posts[name] = peer_models.peer_postprocess(run["peer"])
        shapes[name], by_label[name] = (1, 3, size, size), p
        with torch.no_grad():
            files[name] = onnx_file(model, torch.rand(shapes[name]), Path(tmp.name))
    calib = ({size: calibration(None, args.calib_images, size)[0] for size in photos} if not args.no_int8 else {})
    makers = {
        "ONNX Runtime fp32": lambda n: ort_run(files[n], threads),
        "OpenVINO fp32": lambda n: ov_run(files[n], shapes[n], threads, "fp32"),
        "OpenVINO bf16": lambda n: ov_run(files[n], shapes[n], threads, "bf16"),
    }
    if not args.no_int8:
        makers["ONNX Runtime int8"] = lambda n: ort_int8_run(files[n], threads, calib[shapes[n][-1]])
        makers["OpenVINO int8"] = lambda n: ov_int8_run(files[n], shapes[n], threads, calib[shapes[n][-1]])
    names = [label(p) for p in points]
    point_photos = {n: photos[shapes[n][-1]] for n in names}
    dets = {}
    with torch.inference_mode():
        for n in names:
            run = ort_run(files[n], threads)
            dets[n] = peer_models.detections_per_photo(run, posts[n], point_photos[n]) if run else float("nan")
    result = time_runtimes(makers, names, posts, point_photos, args.rounds, args.warmup, args.repeats,
                           log=lambda m: print(m, file=sys.stderr, flush=True))
    tmp.cleanup()
    return {rt: {n: r["rounds"] for n, r in res.items()} for rt, res in result.items()}, dets


def best(timings: dict, name: str, runtimes) -> tuple[str, float]:
    options = [(statistics.median(timings[rt][name]), rt) for rt in runtimes if rt in timings]
    ms, rt = min(options)
    return rt, ms


def ratio(timings: dict, name: str, runtime: str, ref: str, ref_runtime: str) -> float:
    """This point's latency / the reference point's: the median of per-round ratios when both ran in one interleaved
    phase (same runtime), else the ratio of their medians."""
    mine, theirs = timings[runtime][name], timings[ref_runtime][ref]
    if runtime == ref_runtime:
        return statistics.median(a / b for a, b in zip(mine, theirs))
    return statistics.median(mine) / statistics.median(theirs)


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(latency, AP) points not beaten on both: sorted by latency, AP strictly rising."""
    front, top = [], -1.0
    for ms, ap in sorted(points):
        if ap > top:
            front.append((ms, ap))
            top = ap
    return front


def goal(rows: list[dict], key: str, target: float) -> list[str]:
    """One line per peer point: MET when a ghostdet point is at least as accurate (mean AP) at <= ``target`` x its
    latency (the fastest such point named), else NOT MET with by how much the best candidates miss; a last line
    counts the points met."""
    lines, met = [], 0
    ours = [r for r in rows if r["side"] == "ghostdet"]
    peers = [r for r in rows if r["side"] == "ultralytics"]
    for peer in peers:
        p_ms, p_ap = peer[key]["ms"], peer["AP"]
        head = f"- {peer['label']} (AP {p_ap:.3f}, {p_ms:.2f} ms {peer[key]['runtime']})"
        as_good = [r for r in ours if r["AP"] >= p_ap]
        winners = [r for r in as_good if r[key]["ms"] <= target * p_ms]
        if winners:
            met += 1
            w = min(winners, key=lambda r: r[key]["ms"])
            lines.append(f"{head}: MET by {w['label']} (AP {w['AP']:.3f}, {w[key]['ms'] / p_ms:.2f}x latency)")
            continue
        miss = []
        if as_good:
            w = min(as_good, key=lambda r: r[key]["ms"])
            miss.append(f"fastest as accurate: {w['label']} (AP {w['AP']:.3f}) at {w[key]['ms'] / p_ms:.2f}x "
                        f"(goal {target}x: {w[key]['ms'] / p_ms - target:+.2f}x to go)")
        else:
            miss.append("no ghostdet point is as accurate")
        fast = [r for r in ours if r[key]["ms"] <= target * p_ms]
        if fast:
            w = max(fast, key=lambda r: r["AP"])
            miss.append(f"most accurate within {target}x: {w['label']} AP {w['AP']:.3f} ({w['AP'] - p_ap:+.3f})")
        else:
            miss.append(f"no ghostdet point within {target}x")
        better = [r for r in ours if r["AP"] > p_ap and r[key]["ms"] <= p_ms]
        if better:
            w = max(better, key=lambda r: r["AP"])
            miss.append(f"more accurate at <= its latency: {w['label']} ({w[key]['ms'] / p_ms:.2f}x)")
        lines.append(f"{head}: NOT MET; " + "; ".join(miss))
    lines.append(f"goal met at {met} of {len(peers)} peer points")
    return lines


def plot(rows: list[dict], path: Path, title: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), sharey=True)
    groups = list(dict.fromkeys(r["label"].split(" @")[0] if r["side"] == "ultralytics" else "ghostdet" for r in rows))
    for ax, key, name in ((axes[0], "float", "best float runtime (fp32/bf16)"), (axes[1], "any", "best runtime incl. int8")):
        for group in groups:
            pts = [r for r in rows if (r["side"] == "ghostdet") == (group == "ghostdet")
                   and (group == "ghostdet" or r["label"].split(" @")[0] == group)]
            color, marker = STYLE.get(group, ("tab:gray", "x"))
            ax.errorbar([r[key]["ms"] for r in pts], [r["AP"] for r in pts], yerr=[r.get("AP_std", 0.0) for r in pts],
                        fmt=marker, color=color, capsize=2, label=group if group == "ghostdet" else f"{group} (ultralytics)")
            front = pareto([(r[key]["ms"], r["AP"]) for r in pts])
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", c=color, alpha=0.5)
            for r in pts:
                text = r["label"] if group == "ghostdet" else f"@{r['imgsz']}"
                ax.annotate(text, (r[key]["ms"], r["AP"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(f"end-to-end latency, ms ({name})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(title, 150)), fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


SHORT = {"ONNX Runtime fp32": "ORT fp32", "OpenVINO fp32": "OpenVINO fp32", "OpenVINO bf16": "OpenVINO bf16",
         "ONNX Runtime int8": "ORT int8", "OpenVINO int8": "OpenVINO int8"}


def markdown_table(rows: list[dict], runtimes: list[str], ref: str = "YOLO26n", compact: bool = False) -> str:
    """The table as docs/detector.md prints it: one row per point, AP mean ± std (min–max), AP50, each class's AP
    (mean over seeds; multi-class sets), each runtime (the best float one in bold), the best float latency and its
    ratio to ``ref`` at the same size. ``compact``: the README's columns (AP mean ± std, AP50, best float latency,
    the ratio)."""
    classes = [] if compact else list(rows[0].get("AP_per_class") or {})
    classes = classes if len(classes) > 1 else []  # per-class AP columns for a multi-class set
    columns = [f"AP {c}" for c in classes]
    columns += [] if compact else [f"{SHORT.get(rt, rt)}{' (ms)' * (i == 0)}" for i, rt in enumerate(runtimes)]
    columns += ["end to end (ms)"] if compact else ["best (ms)"]
    lines = [f"| point | AP (mean ± std{'' if compact else ', min–max'}) | AP50 | " + " | ".join(columns)
             + f" | vs {ref} same size |", "|---|---|---|" + "---|" * (len(columns) + 1)]
    for r in rows:
        if r["side"] == "ghostdet":
            name, size = r["label"].rsplit(" @", 1)
            name = " ".join(f"`{w}`" for w in name.split()) + f" @{size}"
        else:
            name = r["label"]
        ap = f"{r['AP']:.3f}"
        if len(r.get("seeds", [])) > 1:
            ap += f" ± {r['AP_std']:.3f}" + ("" if compact else f" ({r['AP_min']:.3f}–{r['AP_max']:.3f})")
        best_rt = r["float"]["runtime"]
        cells = [f"{r['AP_per_class'][c]:.3f}" for c in classes]
        if compact:
            cells += [f"{r['float']['ms']:.2f}"]
        else:
            cells += [(f"**{r['ms'][rt]:.2f}**" if rt == best_rt else f"{r['ms'][rt]:.2f}") if rt in r["ms"] else "–"
                     for rt in runtimes]
            cells.append(f"{r['float']['ms']:.2f} ({'bf16' if best_rt == 'OpenVINO bf16' else SHORT.get(best_rt, best_rt)})")
        vs = (r.get("vs_peer_same_size") or {}).get(ref)
        lines.append(f"| {name} | {ap} | {r['AP50']:.3f} | " + " | ".join(cells) + " | "
                     + (f"{vs['float']:.2f}×" if vs else "–") + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = bench_learning.parser()
    p.description = __doc__
    p.set_defaults(epochs=30, peer_imgsz=[256, 320, 416], seeds=[0, 1, 2], out=ROOT / "runs" / "bench_front",
                   threads=2, models=["ghost_yolo@320", "gghost_yolo@320", "gghost_yolo@256", "gghost_yolo_lite@256",
                                      "gghost_yolo_lite@224", "gghost_yolo_lite@192"])
    p.add_argument("--latency-threads", type=int, default=None,
                   help="threads for the latency half (default: --threads, the training threads)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--photos", type=int, default=8, help="real photos cycled through in the end-to-end timing")
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--no-latency", action="store_true", help="train and score only (with --only, for parallel runs)")
    p.add_argument("--target", type=float, default=0.75, help="latency ratio a dominating point must reach")
    p.add_argument("--plot", type=Path, help="the plot (PNG; default <out>/front.png)")
    p.add_argument("--markdown", type=Path, help="also write the tables of docs/detector.md and the README here")
    p.add_argument("--from-json", type=Path, help="report and plot a saved front.json again (no training, no timing)")
    args = p.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        args.plot = args.plot or args.from_json.with_suffix(".png")
        report(saved["rows"], list(saved["timings"]), saved["title"], saved.get("ylabel", "AP (mAP50-95)"), args)
        return

    ul_version = None
    if args.only != "ghostdet" and args.peers and not args.no_latency:  # fail early, not after hours of training
        ul_version = peer_models.ensure_ultralytics(args.ul_path, args.ul_python)
    runs, info = bench_learning.train_and_score(args)
    if args.no_latency:
        return
    points = bench_learning.aggregate(runs)
    order = {name: i for i, name in enumerate(args.peers)}  # peers in --peers order, then ghostdet points by size
    points = sorted(points, key=lambda q: (q["side"] != "ultralytics", order.get(q["model"], 0), q["imgsz"]))
    timings, dets = time_points(points, info, args)

    rows = []
    for q in points:
        name = label(q)
        last = q["scores"]["last"]
        row = {"label": name, "side": q["side"], "imgsz": q["imgsz"], "seeds": q["seeds"],
               **{m: last[m]["mean"] for m in bench_learning.METRICS}, "AP_std": last["AP"]["std"],
               "AP_min": last["AP"]["min"], "AP_max": last["AP"]["max"],
               "AP_best_weights": q["scores"]["best"]["AP"]["mean"], "dets_per_photo": dets[name],
               "AP_per_class": {c: s["mean"] for c, s in q["per_class"].items()},
               "ms": {rt: statistics.median(t[name]) for rt, t in timings.items()}}
        for key, runtimes in (("float", FLOAT_RUNTIMES), ("any", FLOAT_RUNTIMES + INT8_RUNTIMES)):
            rt, ms = best(timings, name, runtimes)
            row[key] = {"runtime": rt, "ms": ms}
        rows.append(row)
    peer_groups = list(dict.fromkeys(r["label"].split(" @")[0] for r in rows if r["side"] == "ultralytics"))
    for row in rows:  # ratio to each peer at the same size, each in its own best runtime, per round
        row["vs_peer_same_size"] = {}
        for group in peer_groups:
            ref = next((r for r in rows if r["label"] == f"{group} @{row['imgsz']}"), None)
            row["vs_peer_same_size"][group] = ({key: ratio(timings, row["label"], row[key]["runtime"], ref["label"],
                                                           ref[key]["runtime"]) for key in ("float", "any")}
                                               if ref else None)

    machine = f"{cpu_name()}, {os.cpu_count()} CPUs"
    title = (f"{info['data']} ({info['train']} train / {info['val']} val, {info['classes']} classes), {args.epochs} "
             f"epochs, batch {args.batch}, {args.threads} training threads, from scratch, AP = mean of last-epoch "
             f"mAP50-95 over seeds {args.seeds}; latency end to end (forward + post-processing, conf 0.25, real "
             f"photos), batch 1, {args.latency_threads or args.threads} threads; {machine}; {versions(ul_version)}")
    ylabel = f"AP (mAP50-95), {info['data']} val, mean of {len(args.seeds)} seeds"
    args.plot = args.plot or args.out / "front.png"
    report(rows, list(timings), title, ylabel, args)
    (args.out / "front.json").write_text(json.dumps(
        {"cpu": machine, "versions": versions(ul_version), "title": title, "ylabel": ylabel, "epochs": args.epochs,
         "seeds": args.seeds, "data": {k: v for k, v in info.items() if k != "val_files"}, "rows": rows,
         "timings": timings}, indent=1))
    print(f"data: {args.out / 'front.json'}")


def report(rows: list[dict], runtimes: list[str], title: str, ylabel: str, args) -> None:
    """The Markdown table, the goal check per peer point and the plot."""
    print(f"\n{title}\n")
    groups = list(dict.fromkeys(g for r in rows for g in r.get("vs_peer_same_size", {})))
    print("| point | AP (mean ± std) | AP50 | AP75 | AP of best.pt | dets/photo | "
          + " | ".join(f"{rt} (ms)" for rt in runtimes) + " | best float | best any | "
          + " | ".join(f"vs {g} same size (float / any)" for g in groups) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(runtimes) + "---|---|" + "---|" * len(groups))
    most_seeds = max(len(r.get("seeds", [])) for r in rows)
    for r in rows:
        vs = []
        for g in groups:
            v = r["vs_peer_same_size"].get(g)
            vs.append(f"{v['float']:.2f}x / {v['any']:.2f}x" if v else "-")
        seeds = len(r.get("seeds", []))
        ap = f"{r['AP']:.3f}" + (f" ± {r['AP_std']:.3f}" if seeds > 1 else "")
        ap += f" ({seeds} seed{'s' * (seeds > 1)})" if seeds < most_seeds else ""  # --finished-only: a partial point
        print(f"| {r['label']} | {ap} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['AP_best_weights']:.3f} | "
              f"{r.get('dets_per_photo', float('nan')):.1f} | "
              + " | ".join(f"{r['ms'][rt]:.2f}" if rt in r["ms"] else "-" for rt in runtimes)
              + f" | {r['float']['ms']:.2f} ({r['float']['runtime']}) | {r['any']['ms']:.2f} ({r['any']['runtime']}) | "
              + " | ".join(vs) + " |")
    for key, what in (("float", "float front"), ("any", "any-precision front")):
        print(f"\nGoal ({what}): a ghostdet point with >= mean AP at <= {args.target}x the peer point's latency")
        print("\n".join(goal(rows, key, args.target)))
    plot(rows, args.plot, title, ylabel)
    print(f"\nplot: {args.plot}")
    if getattr(args, "markdown", None):
        args.markdown.write_text(markdown_table(rows, runtimes) + "\n" + markdown_table(rows, runtimes, compact=True))
        print(f"docs table: {args.markdown}")


if __name__ == "__main__":
    main()
