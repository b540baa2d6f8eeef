"""Torch CPU threads on a machine that is not idle: latency of one Ghost-YOLO forward (deploy form, batch 1) with
1 and 2 intra-op threads and OpenMP's default (spinning) or passive wait policy, on an idle machine and beside a
process that keeps one core busy (what a loaded 2-core machine, or a phone running other apps, looks like).

    python benchmarks/bench_threads_under_load.py --imgsz 320 --runs 60

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


def measure(threads: int, policy: str | None, imgsz: int, runs: int) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(imgsz), str(runs)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return statistics.median(json.loads(out.strip().splitlines()[-1])) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--runs", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from ghostdet.utils.device import cpu_name

    settings = [(t, pol) for t in (1, 2) for pol in (None, "PASSIVE")]
    results: dict = {}
    for _ in range(args.rounds):
        for load in ("idle", "one core busy"):
            stop = mp.Event()
            spinner = mp.Process(target=spin, args=(stop,)) if load != "idle" else None
            if spinner:
                spinner.start()
                time.sleep(0.5)
            try:
                for threads, policy in settings:
                    ms = measure(threads, policy, args.imgsz, args.runs)
                    results.setdefault((load, threads, policy or "default"), []).append(ms)
            finally:
                if spinner:
                    stop.set()
                    spinner.join()
    print(f"ghost_yolo deploy form, batch 1, {args.imgsz}x{args.imgsz}, forward + decode, median of {args.runs} runs, "
          f"median over {args.rounds} interleaved rounds; CPU: {cpu_name()} ({os.cpu_count()} logical)")
    print("| machine | threads | OMP_WAIT_POLICY | ms |\n|---|---|---|---|")
    for (load, threads, policy), values in results.items():
        print(f"| {load} | {threads} | {policy} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    main()
