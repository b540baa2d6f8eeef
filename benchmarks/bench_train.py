"""Training speed and the README main command, measured on this machine.

    python benchmarks/bench_train.py                 # both parts
    python benchmarks/bench_train.py --skip-main     # only the coco128 epoch time
    python benchmarks/bench_train.py --skip-epoch    # only the main command

1. Epoch time of ghost_yolo on coco128 (../shared/data, or GHOSTDET_SHARED_DATA) at imgsz 320, batch 16, workers 2,
   CPU: the wall time of ``Trainer.train_one_epoch`` (data loading + forward + loss + backward + optimizer + EMA),
   for ``--epochs`` epochs (the first one includes starting the loader workers).
2. The README main command ``python tools/train.py model=ghost_yolo`` run as users run it (subprocess, a fresh run
   dir): its wall time and the final/best mAP50 from results.csv.

Run it on a quiet machine: the figures scale with free cores. The load average at start is printed with them.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def conditions() -> str:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), load average {load[0]:.2f}")


def bench_epoch(imgsz: int, batch: int, workers: int, epochs: int, model: str) -> None:
    from hydra import compose, initialize_config_dir

    from ghostdet.engine import Trainer

    overrides = [f"model={model}", "data=coco128", f"imgsz={imgsz}", f"batch={batch}", f"workers={workers}",
                 "device=cpu", f"epochs={epochs}", "tensorboard=false"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        n = len(trainer.train_set)
        for epoch in range(epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            losses = trainer.train_one_epoch(epoch)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            # CPU seconds of the main process (loader workers not included) say more than wall time on a busy machine
            print(f"epoch {epoch + 1}: {dt:.1f} s wall, {cpu:.1f} s CPU (main process) for {n} images "
                  f"({n / dt:.2f} img/s); "
                  + " ".join(f"{k} {v:.3f}" for k, v in losses.items()), flush=True)
    print(f"[{model} coco128 imgsz {imgsz} batch {batch} workers {workers}, CPU] {conditions()}")


def bench_main_command(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "model=ghost_yolo", f"hydra.run.dir={run_dir}", *extra]
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT)
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            print(f"main command failed (exit {proc.returncode})")
            return
        with open(run_dir / "results.csv", newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["mAP50"]]
        final, best = rows[-1], max(rows, key=lambda r: float(r["mAP50-95"]))
        print(f"[main command] {dt / 60:.1f} min wall (incl. start-up and dataset generation if first run); "
              f"final mAP50 {float(final['mAP50']):.3f} mAP50-95 {float(final['mAP50-95']):.3f}; "
              f"best epoch {best['epoch']} mAP50 {float(best['mAP50']):.3f}; {conditions()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed on coco128")
    parser.add_argument("--model", default="ghost_yolo")
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--skip-main", action="store_true")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for the main command")
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not args.skip_epoch:
        bench_epoch(args.imgsz, args.batch, args.workers, args.epochs, args.model)
    if not args.skip_main:
        bench_main_command(args.overrides)


if __name__ == "__main__":
    main()
