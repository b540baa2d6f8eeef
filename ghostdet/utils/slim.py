"""Slim deployment checkpoints: a training checkpoint stripped to what inference needs (ultralytics' strip_optimizer).

A training checkpoint carries the raw weights, the EMA weights, the optimizer's moments and the RNG state (about
4x the model); ``Detector.from_checkpoint``, ``tools/eval.py``, export and fine-tuning (``weights=``) read only the
EMA weights, the model spec, the class names and the config. ``last.pt`` keeps everything for ``resume=``; a slim
file has no ``optimizer`` and resume refuses it with its usual message.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ghostdet.utils.atomic import atomic_write
from ghostdet.utils.checkpoint import load_checkpoint, model_spec_of, model_state
from ghostdet.utils.errors import CheckpointError

# what survives, besides the weights (stored as ``model``; ``model_state`` reads them like any checkpoint's)
KEEP_KEYS = ("model_spec", "names", "category_ids", "metrics", "best_metrics", "best_fitness", "config", "epoch",
             "ghostdet_version", "date")


def slim_checkpoint(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """Write ``src`` stripped to its EMA weights (as ``model``; the raw weights when there is no EMA), spec, names,
    category ids, metrics, config and version, to ``dst`` (default: ``src`` itself, replaced atomically).

    The weights keep their dtype (float32), so predictions are identical to the full checkpoint's. The file is
    written through ``atomic_write`` with the usual 0644 permissions. Raises CheckpointError (one line) when ``src``
    is not a ghostdet training checkpoint. Returns the path written.
    """
    src = Path(src)
    dst = src if dst is None else Path(dst)
    ckpt = load_checkpoint(src, map_location="cpu")
    model_spec_of(ckpt, str(src))  # refuses anything but a ghostdet checkpoint, naming the file
    try:
        state = model_state(ckpt)
    except CheckpointError as e:
        raise CheckpointError(f"{src}: {e}") from None
    # clone: a tensor that is a view of a bigger storage would otherwise drag all of it into the file
    slim = {"model": {k: v.detach().clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}}
    slim.update({k: ckpt[k] for k in KEEP_KEYS if k in ckpt})
    slim["slim"] = True  # says why there is no optimizer, EMA copy or RNG state
    with atomic_write(dst, "wb") as f:
        torch.save(slim, f)
    return dst


__all__ = ["KEEP_KEYS", "slim_checkpoint"]
