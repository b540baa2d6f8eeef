"""Torch CPU threads on a machine that is not idle: latency of one Ghost-YOLO forward (deploy form, batch 1) with
1 and 2 intra-op threads and OpenMP's default (spinning) or passive wait policy, on an idle machine, beside a
process that keeps one core busy, and beside two (what a loaded 2-core machine, or a phone running other apps,
looks like).

    python benchmarks/bench_threads_under_load.py --imgsz 320 --runs 60
    python benchmarks/bench_threads_under_load.py --settings 2 2:GOMP_SPINCOUNT=10000 --loads 0 2

Each setting runs in its own interpreter (OMP_WAIT_POLICY is read when OpenMP starts); the settings are interleaved
over ``--rounds`` rounds and the median per setting is printed with the CPU named.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time, torch
from ghostdet.models import build_model, deploy_form
torch.set_num_threads(int(sys.argv[1]))
model = deploy_form(build_model({"name": "ghost_yolo", "backbone": {"name": "ghostnet"}}, num_classes=1))
x = torch.rand(1, 3, int(sys.argv[2]), int(sys.argv[2]))
times = []
with torch.inference_mode():
    for i in range(int(sys.argv[3]) + 5):
        t = time.perf_counter(); model.decode(model(x)); times.append(time.perf_counter() - t)
print(json.dumps(times[5:]))
"""


def spin(stop) -> None:
    while not stop.is_set():
        sum(range(10000))


OMP_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def parse_setting(text: str) -> tuple[int, dict]:
    """``THREADS`` or ``THREADS:VAR=VALUE,VAR=VALUE`` (e.g. ``2:GOMP_SPINCOUNT=10000``)."""
    threads, _, env = text.partition(":")
    return int(threads), dict(kv.split("=", 1) for kv in env.split(",") if kv)


def measure(threads: int, extra_env: dict, imgsz: int, runs: int) -> tuple[float, float]:
    """(median, 90th percentile) ms of one setting in a fresh interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARS}
    env.update(extra_env, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(imgsz), str(runs)], env=env, check=True,
                         capture_output=True, text=True).stdout
    times = sorted(json.loads(out.strip().splitlines()[-1]))
    return statistics.median(times) * 1000, times[int(0.9 * (len(times) - 1))] * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--settings", nargs="+", default=["1", "1:OMP_WAIT_POLICY=PASSIVE", "2", "2:OMP_WAIT_POLICY=PASSIVE"],
                   help="THREADS or THREADS:VAR=VALUE,... (OpenMP environment of that setting)")
    p.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="busy cores beside the measurement")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from ghostdet.utils.device import cpu_name

    settings = [(text, *parse_setting(text)) for text in args.settings]
    results: dict = {}
    for _ in range(args.rounds):
        for busy in args.loads:
            load = "idle" if busy == 0 else f"{busy} core{'s' * (busy > 1)} busy"
            stop = mp.Event()
            spinners = [mp.Process(target=spin, args=(stop,)) for _ in range(busy)]
            for s in spinners:
                s.start()
            time.sleep(0.5 if spinners else 0)
            try:
                for text, threads, extra_env in settings:
                    ms = measure(threads, extra_env, args.imgsz, args.runs)
                    results.setdefault((load, text), []).append(ms)
            finally:
                stop.set()
                for s in spinners:
                    s.join()
    print(f"ghost_yolo deploy form, batch 1, {args.imgsz}x{args.imgsz}, forward + decode, median of {args.runs} runs, "
          f"median over {args.rounds} interleaved rounds; CPU: {cpu_name()} ({os.cpu_count()} logical)")
    print("| machine | threads[:OpenMP environment] | median ms | p90 ms |\n|---|---|---|---|")
    for (load, text), values in results.items():
        print(f"| {load} | {text} | {statistics.median(v[0] for v in values):.1f} | "
              f"{statistics.median(v[1] for v in values):.1f} |")


if __name__ == "__main__":
    main()
