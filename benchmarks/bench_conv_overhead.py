"""Fixed cost of one convolution call in PyTorch eager on this CPU: a 1x1 and a 3x3 depthwise conv on maps from
8x8 (where the cost is nearly all call overhead) up to the sizes GhostNet sees at 640 input.

    python benchmarks/bench_conv_overhead.py --threads 2

Ghost models are made of many small 1x1 and depthwise convs; when a call costs tens of microseconds whatever its
size, the number of calls, not the FLOPs, sets the latency of small inputs (see the README's model table).
Prints a Markdown table of the median microseconds per call (channels_last, BN folded, eval mode).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ghostdet.utils.timing import measure_latency, set_threads  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=0, help="0 = every CPU this process may use")
    p.add_argument("--calls", type=int, default=200, help="calls per timed repeat")
    args = p.parse_args()
    threads = set_threads(args.threads or None)
    print(f"threads {threads}, torch {torch.__version__}, median of 10 repeats of {args.calls} calls, channels_last")
    print("| channels | map | 1x1 conv (µs/call) | 3x3 depthwise conv (µs/call) |")
    print("|---|---|---|---|")
    for channels, side in [(16, 8), (96, 8), (16, 40), (96, 40), (96, 80), (24, 160), (24, 320)]:
        x = torch.rand(1, channels, side, side).contiguous(memory_format=torch.channels_last)
        pointwise = nn.Conv2d(channels, channels, 1).eval().to(memory_format=torch.channels_last)
        depthwise = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels).eval().to(memory_format=torch.channels_last)
        cells = []
        with torch.inference_mode():
            for conv in (pointwise, depthwise):
                def run(conv=conv):
                    for _ in range(args.calls):
                        conv(x)
                cells.append(measure_latency(run, warmup=2, repeats=10)["median"] * 1000 / args.calls)
        print(f"| {channels} | {side}x{side} | {cells[0]:.1f} | {cells[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
