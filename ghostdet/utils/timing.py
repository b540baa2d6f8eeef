"""Latency timing in one place: explicit thread count, warm-up, repeats, median (model comparisons built on
it are ``ghostdet/eval/benchmark.py``).

Every benchmark script (tools/benchmark.py and others) times through ``measure_latency`` so their
figures are comparable.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from typing import Callable

import torch


def set_threads(threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads (``None``: the number of CPUs this process may use) and return it.

    Record the value next to any timing: CPU latency depends on it more than on anything else.
    """
    if threads is None or threads <= 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(int(threads))
    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(threads: int):
    """PyTorch's intra-op threads set to ``threads`` inside the block, restored after it (process-wide setting)."""
    before = torch.get_num_threads()
    if before == threads:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure_latency(fn: Callable[[], object], warmup: int = 5, repeats: int = 20, device: str | torch.device = "cpu") -> dict:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed calls (CUDA synchronised).

    Returns milliseconds per call: ``median`` (the figure to report), ``mean``, ``min``, ``max``, and ``repeats``.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(max(warmup, 0)):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    return {
        "median": statistics.median(times),
        "mean": statistics.fmean(times),
        "min": min(times),
        "max": max(times),
        "repeats": repeats,
    }


def compare_latency(fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 3, repeats: int = 10,
                    baseline: str | None = None) -> dict[str, dict]:
    """Time several callables interleaved: every round times each of them in turn (``measure_latency``), so a
    machine that speeds up or slows down mid-run (turbo, noisy neighbours) shifts all of them alike.

    Returns per name: ``median`` (ms, median of the round medians), ``rounds`` (the round medians) and, when
    ``baseline`` names one of them, ``ratio``: the median over rounds of this one's time / the baseline's in the
    same round — the figure to quote when comparing models.
    """
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    per_round: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            per_round[name].append(measure_latency(fn, warmup, repeats)["median"])
    result = {name: {"median": statistics.median(times), "rounds": times} for name, times in per_round.items()}
    if baseline is not None:
        base = per_round[baseline]
        for name, times in per_round.items():
            result[name]["ratio"] = statistics.median(t / b for t, b in zip(times, base))
    return result
