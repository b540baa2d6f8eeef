"""Collate and DataLoader construction: the training order and every sample's augmentation follow from
``(seed, epoch, sample index)`` alone (:class:`EpochSampler`), with any number of workers, after a resume too."""
from __future__ import annotations

import random
import signal

import cv2
import numpy as np
import torch
import torch.distributed as dist
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


def mix_seed(*values: int) -> int:
    """One 32-bit seed from several integers (numpy's SeedSequence: nearby inputs give unrelated seeds)."""
    return int(np.random.SeedSequence([int(v) % 2**64 for v in values]).generate_state(1)[0])


class EpochSampler(DistributedSampler):
    """The sample order of one epoch and each sample's augmentation seed, as functions of ``(seed, epoch, index)``.

    Nothing depends on how many workers load, which worker gets a sample, how long they have lived (persistent
    workers) or on a generator's state, so a resumed run sees exactly the batches of an uninterrupted one.
    ``set_epoch(epoch, start)`` picks the epoch and skips its first ``start`` samples (a run resumed mid-epoch).
    Under DDP every rank draws the same permutation (padded by wrapping around, as ``DistributedSampler``) and
    takes every ``world_size``-th sample. ``keyed``: yield ``(index, sample_seed)``, which an augmenting
    ``DetectionDataset`` seeds its transform with; else plain indices.
    """

    def __init__(self, dataset, seed: int = 0, shuffle: bool = True, keyed: bool = True, rank: int = 0,
                 world_size: int = 1):
        super().__init__(dataset, num_replicas=max(int(world_size), 1), rank=int(rank), shuffle=shuffle, seed=int(seed))
        self.keyed, self.start = bool(keyed), 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), max(int(start), 0)

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)

    def __iter__(self):
        size = len(self.dataset)
        order = (np.random.default_rng(mix_seed(self.seed, self.epoch)).permutation(size) if self.shuffle
                 else np.arange(size))
        if self.num_replicas > 1:
            order = np.resize(order, self.total_size)[self.rank::self.num_replicas]
        for index in order[self.start:].tolist():
            yield (index, mix_seed(self.seed, self.epoch, index)) if self.keyed else index


def _init_worker(worker_id: int) -> None:
    """Each worker: Ctrl-C is the main process's to handle (it stops at a step boundary and saves, while the
    workers finish the batches it still needs); reproducible global RNG streams; one decode thread."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    cv2.setNumThreads(0)  # one decode thread per worker; the workers are the parallelism


def build_dataloader(dataset, batch_size: int = 16, workers: int = 2, shuffle: bool = True, seed: int = 0,
                     distributed: bool = False, drop_last: bool = False, pin_memory: bool | None = None) -> DataLoader:
    """A DataLoader over ``dataset``. Shuffled, augmented or distributed loading goes through an
    :class:`EpochSampler` (``loader.sampler``; call its ``set_epoch`` before each epoch)."""
    keyed = bool(getattr(dataset, "augment", False)) and hasattr(dataset, "set_random_seed")
    sampler = None
    if shuffle or keyed or distributed:
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        sampler = EpochSampler(dataset, seed, shuffle=shuffle, keyed=keyed, rank=rank, world_size=world)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
        worker_init_fn=_init_worker if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
