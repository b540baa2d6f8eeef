"""Collate and DataLoader construction (seeded, persistent workers, optional DistributedSampler)."""
from __future__ import annotations

import random

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from ghostdet.data.image_io import to_chw_batch


def collate_fn(batch: list[dict]):
    """Samples → ``(images, targets, metas, ignore)``.

    images: float B×3×H×W in 0–1; targets: (N, 6) ``[batch_idx, class, x1, y1, x2, y2]`` in input pixels;
    metas: per image ``{"image_id", "file", "orig_size": (h, w), "ratio", "pad": (left, top)}``;
    ignore: (K, 5) ``[batch_idx, x1, y1, x2, y2]`` input pixels, the crowd (``iscrowd``) regions the loss
    ignores (the samples' ``crowd_boxes``); (0, 5) when there are none.
    """
    images = torch.from_numpy(to_chw_batch([s["image"] for s in batch]))  # runs for every batch in the workers
    targets = _with_batch_index([np.column_stack([s["labels"], s["boxes"]]) for s in batch], 6)
    ignore = _with_batch_index([s.get("crowd_boxes") for s in batch], 5)
    metas = [{"image_id": s["image_id"], "file": s["file"], "orig_size": s["orig_size"], "ratio": s["ratio"],
              "pad": s["pad"]} for s in batch]
    return images, targets, metas, ignore


def _with_batch_index(per_sample: list, width: int) -> torch.Tensor:
    """Each sample's rows (``width - 1`` numbers each; None for none) prefixed with the sample's index in the
    batch: one float32 ``(N, width)`` tensor, ``(0, width)`` when no sample has rows."""
    rows = []
    for i, values in enumerate(per_sample):
        if values is not None and len(values):
            r = torch.empty((len(values), width), dtype=torch.float32)
            r[:, 0] = i
            r[:, 1:] = torch.as_tensor(np.asarray(values), dtype=torch.float32)
            rows.append(r)
    return torch.cat(rows) if rows else torch.zeros((0, width), dtype=torch.float32)


def _seed_worker(worker_id: int) -> None:
    """Each worker: distinct, reproducible RNG streams (torch's per-worker seed derives from the loader's)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)  # one decode thread per worker; the workers are the parallelism
    info = torch.utils.data.get_worker_info()
    if hasattr(info.dataset, "set_random_seed"):
        info.dataset.set_random_seed(seed)


def build_dataloader(dataset, batch_size: int = 16, workers: int = 2, shuffle: bool = True, seed: int = 0,
                     distributed: bool = False, drop_last: bool = False, pin_memory: bool | None = None) -> DataLoader:
    generator = torch.Generator()
    sampler = None
    if distributed:  # same order seed on every rank (the sampler splits it); different augmentation streams
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        shuffle = False
        seed += sampler.rank
    generator.manual_seed(seed)
    if workers == 0 and hasattr(dataset, "set_random_seed"):
        dataset.set_random_seed(seed)  # augmentation runs in this process
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=_seed_worker if workers > 0 else None,
        generator=generator,
    )
