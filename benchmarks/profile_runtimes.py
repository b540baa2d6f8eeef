"""Where inference time goes, per runtime: OpenVINO per-layer performance counters and the ONNX Runtime profiler,
summed by detector part (backbone / neck / head / decode) and by operation type, for ghostdet configs and the peer.

    python benchmarks/profile_runtimes.py                                  # ghost_yolo, gghost_yolo, repghost_yolo at 320
    python benchmarks/profile_runtimes.py --models ghost_yolo "gghost_yolo model.reg_max=8" --sizes 320 640
    PYTHONPATH=/tmp/ul python benchmarks/profile_runtimes.py --peer        # + ultralytics' YOLOv8n-ghost

A model is a config name followed by Hydra overrides (one shell word). Each model is exported as
bench_vs_yolov8n_ghost.py does (deploy form, forward + decode, batch 1, random weights); OpenVINO runs it with the
latency hint at ``--precision`` (fp32, bf16, int8 = NNCF on the same IR, calibrated on coco128 photos), ONNX
Runtime in fp32. Layer names come from the torch module paths, so ``/model/backbone/...`` is the backbone; the peer's
layers are split at its Detect module (``model.22``: head; up to ``model.9``: backbone; between: neck).
Percentages are of the summed per-layer time (the runtimes' own counters; no wall-clock claims).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_vs_yolov8n_ghost import calibration, ghostdet_model, onnx_file, yolov8n_ghost  # noqa: E402
from ghostdet.utils.timing import set_threads  # noqa: E402


def part_of(name: str, peer: bool) -> str:
    """Detector part of one runtime layer, from the torch module path in its name."""
    if peer:  # ultralytics: /model.N/... ; 0-9 backbone, 10-21 neck, 22 Detect
        for piece in name.replace("/", " ").replace("_", " ").split():
            if piece.startswith("model.") and piece[6:].split(".")[0].isdigit():
                n = int(piece[6:].split(".")[0])
                return "backbone" if n <= 9 else "neck" if n < 22 else "head"
        return "decode"
    for part in ("backbone", "neck", "head"):
        if f"/{part}/" in name or name.startswith(f"{part}.") or f"model.{part}" in name:
            return part
    return "decode"


def openvino_profile(path: Path, x: torch.Tensor, threads: int, precision: str, images, runs: int) -> list[tuple]:
    import openvino as ov

    from ghostdet.eval.benchmark import openvino_int8_ir
    from ghostdet.inference.openvino import compile_config

    model = ov.convert_model(str(path))
    if precision == "int8":
        model, precision = openvino_int8_ir(model, images), "fp32"
    compiled = ov.Core().compile_model(model, "CPU", {**compile_config(precision, threads), "PERF_COUNT": True})
    request = compiled.create_infer_request()
    totals = collections.Counter()
    kinds = {}
    for i in range(runs + 3):
        request.infer({0: x.numpy()})
        if i < 3:  # warm-up
            continue
        for info in request.profiling_info:
            if info.status == info.Status.EXECUTED:
                totals[info.node_name] += info.real_time.total_seconds() * 1e3 / runs
                kinds[info.node_name] = f"{info.node_type}:{info.exec_type}"
    return [(name, kinds[name], ms) for name, ms in totals.items()]


def onnxruntime_profile(path: Path, x: torch.Tensor, threads: int, runs: int, tmp: Path) -> list[tuple]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / "ort")
    sess = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    for _ in range(runs + 3):
        sess.run(None, feed)
    times, kinds = collections.defaultdict(list), {}
    for e in json.loads(Path(sess.end_profiling()).read_text()):
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            name = e["name"][: -len("_kernel_time")]
            times[name].append(e["dur"] / 1e3)
            kinds[name] = e.get("args", {}).get("op_name", "?")
    return [(name, kinds[name], sum(t[3:]) / max(1, len(t) - 3)) for name, t in times.items()]  # drop warm-up


def report(title: str, layers: list[tuple], peer: bool, top: int) -> None:
    total = sum(ms for _, _, ms in layers) or float("nan")
    by_part, by_kind = collections.Counter(), collections.Counter()
    for name, kind, ms in layers:
        by_part[part_of(name, peer)] += ms
        by_kind[kind] += ms
    parts = ", ".join(f"{p} {100 * ms / total:.0f}%" for p, ms in by_part.most_common())
    kinds = ", ".join(f"{k} {100 * ms / total:.0f}%" for k, ms in by_kind.most_common(8))
    print(f"\n### {title}: {total:.2f} ms summed over layers\n- by part: {parts}\n- by op: {kinds}")
    for name, kind, ms in sorted(layers, key=lambda t: -t[2])[:top]:
        print(f"  {ms:7.3f} ms {100 * ms / total:4.1f}%  {kind:28s} {name}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["ghost_yolo", "gghost_yolo", "repghost_yolo"])
    p.add_argument("--peer", action="store_true", help="also profile ultralytics' YOLOv8n-ghost (must be importable)")
    p.add_argument("--sizes", type=int, nargs="+", default=[320])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", nargs="+", default=["fp32", "int8"], help="OpenVINO precisions: fp32 bf16 int8")
    p.add_argument("--no-ort", action="store_true", help="skip the ONNX Runtime profile")
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--num-classes", type=int, default=80, help="classes of every model (1: the raccoon models)")
    p.add_argument("--top", type=int, default=8, help="slowest layers listed per profile")
    args = p.parse_args()
    threads = set_threads(args.threads)
    from ghostdet.utils.device import cpu_name

    nc = args.num_classes
    print(f"{cpu_name()}, {threads} threads, batch 1, {nc} classes, mean of {args.runs} runs after 3 warm-up")
    models = {spec: (lambda s=spec: ghostdet_model(*s.split()[:1], overrides=s.split()[1:], num_classes=nc), False)
              for spec in args.models}
    if args.peer:
        models["YOLOv8n-ghost (ultralytics)"] = (lambda: yolov8n_ghost(nc), True)
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            x = torch.rand(1, 3, size, size)
            images = calibration(None, 32, size)[0] if "int8" in args.precision else None
            for name, (make, peer) in models.items():
                with torch.no_grad():
                    path = onnx_file(make(), x, Path(tmp))
                for precision in args.precision:
                    report(f"{name} @ {size}, OpenVINO {precision}",
                           openvino_profile(path, x, threads, precision, images, args.runs), peer, args.top)
                if not args.no_ort:
                    report(f"{name} @ {size}, ONNX Runtime fp32",
                           onnxruntime_profile(path, x, threads, args.runs, Path(tmp)), peer, args.top)


if __name__ == "__main__":
    main()
