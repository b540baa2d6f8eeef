"""What the two CPU training fixes buy: the NHWC BatchNorm backward and malloc keeping freed memory.

    python benchmarks/bench_batchnorm.py                  # BN shapes of ghost_yolo @320, then the train step
    python benchmarks/bench_batchnorm.py --model repghost_yolo --imgsz 256 --rounds 6

(1) BatchNorm forward + backward at the NHWC shapes ghost_yolo trains on (batch 16, 320): torch's
``nn.BatchNorm2d`` against ``ghostdet.models.layers.ChannelsLastBatchNorm2d``, interleaved, median ms.
(2) One model forward + backward (a sum-of-squares loss on the raw head outputs) with each BatchNorm, in
processes with and without ``ghostdet.utils.cpu_memory.keep_freed_memory()`` (a process-wide malloc setting,
so each setting gets its own process; the processes alternate, ``--rounds`` each). Prints median seconds per
step and the ratios. Timing varies with load: compare the ratios, measured side by side.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPES = [(16, 8, 160, 160), (16, 24, 160, 160), (16, 12, 80, 80), (16, 36, 80, 80), (16, 20, 40, 40),
          (16, 60, 40, 40), (16, 48, 40, 40), (16, 96, 40, 40), (16, 40, 20, 20)]


def bn_shapes(threads: int, reps: int = 10) -> None:
    import torch
    import torch.nn as nn

    from ghostdet.models.layers import ChannelsLastBatchNorm2d

    torch.set_num_threads(threads)
    print(f"(1) BatchNorm2d forward+backward, NHWC fp32, {threads} threads: median ms of {reps}")
    print(f"{'shape (N, C, H, W)':>22} {'torch':>8} {'ghostdet':>9} {'ratio':>6}")
    for shape in SHAPES:
        x = torch.randn(shape).contiguous(memory_format=torch.channels_last).requires_grad_()
        g = torch.randn(shape).contiguous(memory_format=torch.channels_last)
        mods = {"torch": nn.BatchNorm2d(shape[1]), "ghostdet": ChannelsLastBatchNorm2d(shape[1])}
        times = {k: [] for k in mods}
        for r in range(reps + 2):
            for k, bn in mods.items():
                t0 = time.perf_counter()
                bn(x).backward(g)
                if r >= 2:
                    times[k].append((time.perf_counter() - t0) * 1e3)
        t, o = statistics.median(times["torch"]), statistics.median(times["ghostdet"])
        print(f"{str(shape):>22} {t:8.2f} {o:9.2f} {o / t:6.2f}")


def child_step(model_name: str, imgsz: int, batch: int, threads: int, reuse: bool, reps: int) -> dict:
    """Runs in its own process: median forward+backward seconds with torch's BN and with ghostdet's."""
    if reuse:
        from ghostdet.utils.cpu_memory import keep_freed_memory
        keep_freed_memory()
    import torch
    from omegaconf import OmegaConf

    from ghostdet.models import build_model
    from ghostdet.models.layers import use_channels_last_batchnorm

    torch.set_num_threads(threads)
    spec = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "model" / f"{model_name}.yaml"))
    models = {}
    for name in ("torch", "ghostdet"):
        torch.manual_seed(0)
        m = build_model(spec, num_classes=1).train().use_channels_last()
        models[name] = use_channels_last_batchnorm(m, name == "ghostdet")
    x = torch.randn(batch, 3, imgsz, imgsz)
    times = {k: [] for k in models}
    for r in range(reps + 1):
        for k, m in models.items():
            t0 = time.perf_counter()
            sum(o.square().mean() for o in m(x)).backward()
            if r:
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ghost_yolo")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3, help="processes per malloc setting (they alternate)")
    p.add_argument("--reps", type=int, default=4, help="timed steps per process")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--reuse", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(child_step(a.model, a.imgsz, a.batch, a.threads, bool(a.reuse), a.reps)))
        return
    from ghostdet.utils.device import cpu_name

    print(f"CPU: {cpu_name()}")
    bn_shapes(a.threads)
    print(f"\n(2) {a.model} forward+backward, batch {a.batch} at {a.imgsz}, NHWC, {a.threads} threads: median s/step")
    results = {(reuse, bn): [] for reuse in (0, 1) for bn in ("torch", "ghostdet")}
    for _ in range(a.rounds):
        for reuse in (0, 1):
            out = subprocess.run([sys.executable, __file__, "--child", "--reuse", str(reuse), "--model", a.model,
                                  "--imgsz", str(a.imgsz), "--batch", str(a.batch), "--threads", str(a.threads),
                                  "--reps", str(a.reps)], capture_output=True, text=True, check=True).stdout
            for bn, s in json.loads(out.strip().splitlines()[-1]).items():
                results[(reuse, bn)].append(s)
    base = statistics.median(results[(0, "torch")])
    print(f"{'malloc keeps freed memory':>26} {'BatchNorm':>10} {'s/step':>7} {'vs torch defaults':>18}")
    for (reuse, bn), v in results.items():
        s = statistics.median(v)
        print(f"{('yes' if reuse else 'no'):>26} {bn:>10} {s:7.3f} {s / base:18.2f}")


if __name__ == "__main__":
    main()
