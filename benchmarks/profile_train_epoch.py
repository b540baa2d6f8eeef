"""Where a CPU training epoch goes: loader alone, then one real epoch under torch.profiler, then the evaluation.

    python benchmarks/profile_train_epoch.py                               # ghost_yolo, raccoon, 320, batch 16
    python benchmarks/profile_train_epoch.py model=repghost_yolo imgsz=256  # any train.yaml override

Prints (1) the wall time of iterating the train loader with nothing else (data loading + augmentation, as the
workers deliver it), (2) one ``Trainer.train_one_epoch`` under ``torch.profiler`` with the ops that cost the most
self CPU time, and (3) one ``Trainer.evaluate`` (val forward + NMS + pycocotools). Run it before optimising: the
issue's rule is profile first, then cut where the time goes.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("GHOSTDET_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULTS = ["model=ghost_yolo", "data=voc", f"data.root={SHARED / 'raccoon'}", "imgsz=320", "batch=16", "device=cpu",
            "epochs=10", "tensorboard=false", "progress=false"]


def main(overrides: list[str]) -> None:
    import torch
    from hydra import compose, initialize_config_dir

    from ghostdet.engine import Trainer

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=DEFAULTS + overrides)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, run_dir)
        trainer._set_epoch_data(0)
        t0 = time.perf_counter()
        n = sum(images.shape[0] for images, *_ in trainer.train_loader)
        loader_s = time.perf_counter() - t0
        print(f"[loader] {loader_s:.2f} s for {n} images ({loader_s / n * 1000:.1f} ms/img), workers {cfg.workers}")

        trainer.train_one_epoch(0)  # warm-up epoch: allocator, oneDNN primitive caches, worker start
        t0 = time.perf_counter()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            trainer.train_one_epoch(1)
        epoch_s = time.perf_counter() - t0
        print(f"[epoch] {epoch_s:.2f} s under the profiler (profiler overhead included)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=50))

        t0 = time.perf_counter()
        trainer.train_one_epoch(2)
        print(f"[epoch] {time.perf_counter() - t0:.2f} s without the profiler")
        t0 = time.perf_counter()
        metrics = trainer.evaluate()
        print(f"[eval] {time.perf_counter() - t0:.2f} s for {len(trainer.val_set)} images, mAP50 {metrics['mAP50']:.3f}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
