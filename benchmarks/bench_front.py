"""The speed-accuracy front on this CPU: ghostdet points against ultralytics' YOLOv8n-ghost at several input sizes.

    python benchmarks/bench_front.py                     # the default points below, 30 epochs, peer at 256/320/416
    python benchmarks/bench_front.py --models gghost_yolo@256 "gghost_yolo_lite@224 model.neck_channels=48" --reuse
    # the trainings of the two sides in parallel, one thread each; then the scoring + latency half, 2 threads:
    python benchmarks/bench_front.py --threads 1 --only ghostdet --no-latency & \
    python benchmarks/bench_front.py --threads 1 --only ultralytics --no-latency; wait
    python benchmarks/bench_front.py --threads 1 --latency-threads 2 --reuse

One run does both halves:
1. **Accuracy.** Every point is trained and scored by ``bench_learning.py`` (its options apply: same data, epochs,
   batch, threads for all; one pycocotools scoring of the ``last`` weights on the val split; ``--reuse`` keeps
   finished trainings). ``best`` weights were chosen on that same val split by each tool, so the front uses ``last``.
2. **Latency.** Every point is timed in its deploy form at its input size, batch 1, forward + decode (no NMS),
   ``num_classes`` of the data (1 for raccoon), random weights, exported as ``bench_vs_yolov8n_ghost.py`` does, in
   ONNX Runtime fp32, OpenVINO fp32, OpenVINO bf16 (where the CPU has it) and int8 in both (post-training, the
   same quantizer for both sides, calibrated on coco128 photos). One interleaved phase per runtime: every round
   times every point in turn, so machine drift hits all alike; ratios are per-round medians against the peer point.

A point's latency is its fastest runtime. Two fronts are reported: the *float* front (fp32/bf16: the accuracy is
exactly the one measured) and the *any-precision* front (int8 allowed; the accuracy column is still the float
model's: int8 accuracy is checked per model by ``tools/export.py --int8``, not here). The goal check: for each peer
point, a ghostdet point at least as accurate at <= ``--target`` x its latency. Writes ``<out>/front.json``, a
Markdown table on stdout, and the plot (``--plot``, PNG; both sides on one chart).
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
from bench_vs_yolov8n_ghost import (calibration, ghostdet_model, onnx_file, ort_int8_runner, ort_runner,  # noqa: E402
                                    ov_int8_runner, ov_runner, yolov8n_ghost)
from ghostdet.utils.device import cpu_name  # noqa: E402
from ghostdet.utils.timing import compare_latency, set_threads  # noqa: E402

FLOAT_RUNTIMES = ("ONNX Runtime fp32", "OpenVINO fp32", "OpenVINO bf16")
INT8_RUNTIMES = ("ONNX Runtime int8", "OpenVINO int8")


def label(run: dict) -> str:
    side = "YOLOv8n-ghost" if run["side"] == "ultralytics" else run["model"]
    return f"{side} @{run['imgsz']}"


def deploy_model(run: dict, num_classes: int) -> torch.nn.Module:
    if run["side"] == "ghostdet":
        return ghostdet_model(run["config"], run.get("overrides", ()), num_classes=num_classes)
    return yolov8n_ghost(num_classes)


def time_points(runs: list[dict], num_classes: int, args) -> dict[str, dict[str, list[float]]]:
    """Round medians (ms) per runtime per point: ``{runtime: {label: [ms per round]}}``."""
    threads = set_threads(args.latency_threads or args.threads)
    tmp = tempfile.TemporaryDirectory()
    inputs, files = {}, {}
    for run in runs:  # every export before any timing
        name, size = label(run), run["imgsz"]
        inputs[name] = torch.rand(1, 3, size, size)
        with torch.no_grad():
            files[name] = onnx_file(deploy_model(run, num_classes), inputs[name], Path(tmp.name))
    calib = {size: calibration(None, args.calib_images, size)[0] for size in {r["imgsz"] for r in runs}}
    makers = {
        "ONNX Runtime fp32": lambda n, r: ort_runner(files[n], inputs[n], threads),
        "OpenVINO fp32": lambda n, r: ov_runner(files[n], inputs[n], threads, "fp32"),
        "OpenVINO bf16": lambda n, r: ov_runner(files[n], inputs[n], threads, "bf16"),
        "ONNX Runtime int8": lambda n, r: ort_int8_runner(files[n], inputs[n], threads, calib[r["imgsz"]]),
        "OpenVINO int8": lambda n, r: ov_int8_runner(files[n], inputs[n], threads, calib[r["imgsz"]]),
    }
    timings = {}
    for runtime, make in makers.items():
        if runtime in INT8_RUNTIMES and args.no_int8:
            continue
        fns = {label(r): make(label(r), r) for r in runs}
        if any(fn is None for fn in fns.values()):
            print(f"{runtime}: not available here, skipped", file=sys.stderr)
            continue
        print(f"timing {runtime} ...", file=sys.stderr, flush=True)
        result = compare_latency(fns, args.rounds, args.warmup, args.repeats)
        timings[runtime] = {name: r["rounds"] for name, r in result.items()}
    tmp.cleanup()
    return timings


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
    """One line per peer point: the ghostdet point that dominates it in the issue's sense — at least as accurate at
    <= ``target`` x its latency, or more accurate at <= its latency — or by how much the best candidates miss."""
    lines = []
    ours = [r for r in rows if r["side"] == "ghostdet"]
    for peer in (r for r in rows if r["side"] == "ultralytics"):
        p_ms, p_ap = peer[key]["ms"], peer["AP"]
        as_good = [r for r in ours if r["AP"] >= p_ap]
        fast = [r for r in ours if r[key]["ms"] <= target * p_ms]
        winners = [r for r in as_good if r[key]["ms"] <= target * p_ms]
        if winners:
            w = min(winners, key=lambda r: r[key]["ms"])
            lines.append(f"- {peer['label']} (AP {p_ap:.3f}, {p_ms:.2f} ms): dominated by {w['label']} "
                         f"(AP {w['AP']:.3f}, {w[key]['ms'] / p_ms:.2f}x latency)")
            continue
        better = [r for r in ours if r["AP"] > p_ap and r[key]["ms"] <= p_ms]
        if better:
            w = max(better, key=lambda r: r["AP"])
            lines.append(f"- {peer['label']} (AP {p_ap:.3f}, {p_ms:.2f} ms): dominated (more accurate at <= its latency, "
                         f"not at {target}x) by {w['label']} (AP {w['AP']:.3f}, {w[key]['ms'] / p_ms:.2f}x latency)")
            continue
        miss = []
        if as_good:
            w = min(as_good, key=lambda r: r[key]["ms"])
            miss.append(f"fastest as accurate: {w['label']} at {w[key]['ms'] / p_ms:.2f}x (goal {target}x)")
        else:
            miss.append("no ghostdet point is as accurate")
        if fast:
            w = max(fast, key=lambda r: r["AP"])
            miss.append(f"most accurate within {target}x: {w['label']} AP {w['AP']:.3f} ({w['AP'] - p_ap:+.3f})")
        lines.append(f"- {peer['label']} (AP {p_ap:.3f}, {p_ms:.2f} ms): NOT dominated; " + "; ".join(miss))
    return lines


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, key, name in ((axes[0], "float", "best float runtime (fp32/bf16)"), (axes[1], "any", "best runtime incl. int8")):
        for side, color, marker in (("ultralytics", "tab:red", "s"), ("ghostdet", "tab:blue", "o")):
            pts = [(r[key]["ms"], r["AP"], r["label"]) for r in rows if r["side"] == side]
            if not pts:
                continue
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=color, marker=marker,
                       label="YOLOv8n-ghost (ultralytics)" if side == "ultralytics" else "ghostdet")
            front = pareto([(p[0], p[1]) for p in pts])
            ax.step([p[0] for p in front], [p[1] for p in front], where="post", c=color, alpha=0.5)
            for ms, ap, text in pts:
                ax.annotate(text, (ms, ap), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
        ax.set_xlabel(f"latency, ms ({name})")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AP (mAP50-95), raccoon val")
    axes[0].legend(loc="best")
    fig.suptitle("\n".join(textwrap.wrap(title, 140)), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = bench_learning.parser()
    p.description = __doc__
    p.set_defaults(epochs=30, peer_imgsz=[256, 320, 416], out=ROOT / "runs" / "bench_front", threads=2,
                   models=["ghost_yolo@320", "gghost_yolo@320", "gghost_yolo@256", "gghost_yolo_lite@256",
                           "gghost_yolo_lite@224", "gghost_yolo_lite@192"])
    p.add_argument("--latency-threads", type=int, default=None,
                   help="threads for the latency half (default: --threads, the training threads)")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--calib-images", type=int, default=32)
    p.add_argument("--no-int8", action="store_true")
    p.add_argument("--no-latency", action="store_true", help="train and score only (with --only, for parallel runs)")
    p.add_argument("--target", type=float, default=0.75, help="latency ratio a dominating point must reach")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "front.png")
    p.add_argument("--from-json", type=Path, help="report and plot a saved front.json again (no training, no timing)")
    args = p.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        report(saved["rows"], list(saved["timings"]), saved["title"], args)
        return

    runs, sizes = bench_learning.train_and_score(args)
    if args.no_latency:
        return
    runs = sorted(runs, key=lambda r: (r["side"] != "ultralytics", r["imgsz"], r["model"]))
    timings = time_points(runs, num_classes=1, args=args)

    rows = []
    for run in runs:
        name = label(run)
        row = {"label": name, "side": run["side"], "imgsz": run["imgsz"], **run["scores"]["last"],
               "AP_best_weights": run["scores"]["best"]["AP"],
               "ms": {rt: statistics.median(t[name]) for rt, t in timings.items()}}
        for key, runtimes in (("float", FLOAT_RUNTIMES), ("any", FLOAT_RUNTIMES + INT8_RUNTIMES)):
            rt, ms = best(timings, name, runtimes)
            row[key] = {"runtime": rt, "ms": ms}
        rows.append(row)
    for row in rows:  # ratio to the peer at the same size, each in its own best runtime, per round
        ref = next((r for r in rows if r["side"] == "ultralytics" and r["imgsz"] == row["imgsz"]), None)
        for key in ("float", "any"):
            row[key]["vs_peer_same_size"] = (ratio(timings, row["label"], row[key]["runtime"], ref["label"],
                                                   ref[key]["runtime"]) if ref else None)

    machine = f"{cpu_name()}, {os.cpu_count()} CPUs"
    title = (f"raccoon ({sizes['train']} train / {sizes['val']} val), {args.epochs} epochs, batch {args.batch}, "
             f"{args.threads} training threads, from scratch; latency batch 1, forward + decode, "
             f"{args.latency_threads or args.threads} threads; {machine}")
    report(rows, list(timings), title, args)
    (args.out / "front.json").write_text(json.dumps(
        {"cpu": machine, "title": title, "epochs": args.epochs, "rows": rows, "timings": timings}, indent=1))
    print(f"data: {args.out / 'front.json'}")


def report(rows: list[dict], runtimes: list[str], title: str, args) -> None:
    """The Markdown table, the goal check per peer point and the plot."""
    print(f"\n{title}\n")
    print("| point | AP | AP50 | AP75 | AP of best.pt | " + " | ".join(f"{rt} (ms)" for rt in runtimes)
          + " | best float | best any | vs peer same size (float / any) |")
    print("|---|---|---|---|---|" + "---|" * len(runtimes) + "---|---|---|")
    for r in rows:
        vs = " / ".join(f"{r[k]['vs_peer_same_size']:.2f}x" if r[k]["vs_peer_same_size"] else "-"
                        for k in ("float", "any"))
        print(f"| {r['label']} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | {r['AP_best_weights']:.3f} | "
              + " | ".join(f"{r['ms'][rt]:.2f}" for rt in runtimes)
              + f" | {r['float']['ms']:.2f} ({r['float']['runtime']}) | {r['any']['ms']:.2f} ({r['any']['runtime']}) | {vs} |")
    for key, what in (("float", "float front"), ("any", "any-precision front")):
        print(f"\nGoal ({what}: >= AP at <= {args.target}x latency, or > AP at <= 1x):")
        print("\n".join(goal(rows, key, args.target)))
    plot(rows, args.plot, title)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
