"""Backbone figures: ImageNet-classifier params/MACs at 224 (the papers' tables) and, as detection feature
extractors (features_only), params, GFLOPs and CPU latency at a detector input size.

    python benchmarks/bench_backbones.py                 # 640x640, batch 1, median of 20 runs
    python benchmarks/bench_backbones.py --imgsz 320 --runs 50 --threads 2

Latency is eager PyTorch in eval mode (RepGhost measured after re-parameterization), median over
``--runs`` after 3 warm-up runs. Timings depend on the machine and its load: compare rows of one run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from ghostdet.models import GGhostRegNet, GhostNet, GhostNetV2, RepGhostNet, reparameterize
from ghostdet.utils.flops import count_params_macs

BACKBONES = {
    "GhostNet 1.0x": lambda **kw: GhostNet(width=1.0, **kw),
    "GhostNetV2 1.0x": lambda **kw: GhostNetV2(width=1.0, **kw),
    "RepGhostNet 1.0x": lambda **kw: RepGhostNet(width=1.0, **kw),
    "RepGhostNet 0.5x": lambda **kw: RepGhostNet(width=0.5, **kw),
    "G-Ghost RegNetX-002": lambda **kw: GGhostRegNet("002", **kw),
    "G-Ghost RegNetX-004": lambda **kw: GGhostRegNet("004", **kw),
    "G-Ghost RegNetX-008": lambda **kw: GGhostRegNet("008", **kw),
    "G-Ghost RegNetX-032": lambda **kw: GGhostRegNet("032", **kw),
}


@torch.no_grad()
def median_latency_ms(model: torch.nn.Module, x: torch.Tensor, runs: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=640, help="square detector input size")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per backbone (0: no timing)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, input 1x3x{args.imgsz}x{args.imgsz}")
    print(f"| backbone | classifier params | classifier MACs@224 | features params | features GFLOPs@{args.imgsz} "
          f"| out_channels | CPU ms@{args.imgsz} |")
    print("|---|---:|---:|---:|---:|---|---:|")
    x = torch.rand(1, 3, args.imgsz, args.imgsz)
    for name, build in BACKBONES.items():
        with torch.device("meta"):
            cls_params, cls_macs = count_params_macs(build(), (1, 3, 224, 224))
        features = reparameterize(build(features_only=True).eval())
        feat_params, feat_macs = count_params_macs(features, tuple(x.shape))
        latency = f"{median_latency_ms(features, x, args.runs):.1f}" if args.runs else "-"
        print(f"| {name} | {cls_params / 1e6:.2f}M | {cls_macs / 1e6:.0f}M | {feat_params / 1e6:.2f}M | "
              f"{2 * feat_macs / 1e9:.2f} | {features.out_channels} | {latency} |")


if __name__ == "__main__":
    main()
