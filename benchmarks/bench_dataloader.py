"""Training data-loading throughput (images/s) with the full augmentation pipeline.

    python benchmarks/bench_dataloader.py                         # coco128, 640, mosaic on, 2 workers
    python benchmarks/bench_dataloader.py --data shapes --imgsz 320 --workers 0

Prints the loader throughput (after a warm-up that absorbs worker start-up) and, measured in this process
on one thread, where a sample's time goes (decode, mosaic+affine, colour/flip). Run from the project root.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="coco128", help="a config of configs/data/ (default coco128)")
    parser.add_argument("--root", default=None, help="override data.root")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mosaic", type=float, default=1.0)
    parser.add_argument("--mixup", type=float, default=0.0)
    parser.add_argument("--cache-images", action="store_true", help="decode once into RAM (data.cache_images=true)")
    parser.add_argument("--batches", type=int, default=40, help="timed batches (after 5 warm-up batches)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch
    from omegaconf import OmegaConf

    from ghostdet.data import build_dataloader, build_dataset, collate_fn

    data_cfg = OmegaConf.load(ROOT / "configs" / "data" / f"{args.data}.yaml")
    if args.root:
        data_cfg.root = args.root
    data_cfg.cache_images = args.cache_images  # off by default: measure decoding, not memory copies
    aug = {"mosaic": args.mosaic, "mixup": args.mixup}
    ds = build_dataset(data_cfg, "train", imgsz=args.imgsz, augment=True, aug_cfg=aug, seed=0)

    # one-thread breakdown of a sample, in this process (before the workers start: nothing competes)
    cv2.setNumThreads(1)
    t = ds.transform
    n = 40
    idx = np.random.default_rng(0).integers(0, len(ds), n)
    start = time.perf_counter()
    for i in idx:
        ds.load_resized(int(i))
    decode = (time.perf_counter() - start) / n * 1e3
    start = time.perf_counter()
    geo = [t.geometric(int(i), use_mosaic=args.mosaic > 0) for i in idx]
    geometric = (time.perf_counter() - start) / n * 1e3
    start = time.perf_counter()
    for img, boxes, labels in geo:
        t.photometric(image=img, bboxes=boxes.reshape(-1, 4), labels=labels)
    photometric = (time.perf_counter() - start) / n * 1e3
    samples = [ds[int(i)] for i in idx[: args.batch]]
    start = time.perf_counter()
    for _ in range(5):
        collate_fn(samples)
    collate = (time.perf_counter() - start) / 5 * 1e3
    images_per_sample = 4 * args.mosaic + (1 - args.mosaic)
    breakdown = (f"one thread, per sample: decode+resize {decode:.1f} ms/image (x{images_per_sample:.1f} images), "
                 f"mosaic+affine incl. decode {geometric:.1f} ms, colour+flip+box filter {photometric:.1f} ms; "
                 f"collate {collate:.1f} ms per batch of {args.batch}")

    loader = build_dataloader(ds, batch_size=args.batch, workers=args.workers, shuffle=True, seed=0, drop_last=True)

    def batches():
        while True:
            yield from loader

    stream = batches()
    for _ in range(5):  # worker start-up, first decodes
        next(stream)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            next(stream)
        rates.append(args.batches * args.batch / (time.perf_counter() - start))
    print(f"data={args.data} imgsz={args.imgsz} batch={args.batch} workers={args.workers} mosaic={args.mosaic} "
          f"mixup={args.mixup} cache_images={args.cache_images} torch={torch.__version__} cv2={cv2.__version__} "
          f"cpus={torch.get_num_threads()}")
    print(f"loader throughput: {statistics.median(rates):.1f} images/s (median of {args.repeats} x {args.batches} batches; "
          f"runs: {', '.join(f'{r:.1f}' for r in rates)})")
    print(breakdown)


if __name__ == "__main__":
    main()
