"""Checkpoint files: atomic writes and safe reads.

A checkpoint is a dict of tensors and plain Python data only, so it loads with
``torch.load(f, weights_only=True)``: loading never executes code from the file.
Layout written by the trainer (``ghostdet/engine/state.py``, see docs/CONTRACTS.md):
``model`` (state dict), ``ema`` (state dict or None), ``ema_updates``, ``optimizer``, ``scheduler``,
``scaler``, ``epoch``, ``interrupted``, ``rng``, ``mosaic_epochs``, ``config`` (resolved train config as plain dict),
``names``, ``category_ids`` (COCO ids per class or None), ``metrics``, ``model_spec``, ``ghostdet_version``; a
``weights/interrupted.pt`` adds ``iteration`` and ``epoch_stats``.
"""
from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ghostdet.utils.atomic import atomic_write
from ghostdet.utils.errors import CheckpointError


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename.

    A crash at any point leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    with atomic_write(path, "wb") as f:  # creates the folder if needed (and removes it again on failure)
        torch.save(obj, f)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Read a checkpoint or weights file without executing any code stored in it.

    Raises CheckpointError with a one-line message for a missing file, a file that is not a
    PyTorch checkpoint, and a file that needs arbitrary unpickling (the way model files attack users).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path (e.g. runs/train/<date>/<time>/weights/best.pt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found or "Unsupported global" in str(e):
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"{path}: refused to load: it contains pickled Python objects{what} that would run code when loaded; "
                "only files of tensors and plain data are accepted (re-save the weights with "
                "torch.save(model.state_dict(), ...) from code you trust)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle data); is this the right file?") from None
    except Exception as e:  # zip/pickle/IO errors of a truncated, empty or foreign file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({msg}); is the file complete and a .pt/.pth file?") from None


def newest_checkpoint(root: str | os.PathLike, name: str) -> Path | None:
    """The most recently written ``<root>/**/weights/<name>`` (a trainer run's ``best.pt`` or ``last.pt``), or None."""
    root = Path(root)
    candidates = list(root.glob(f"**/weights/{name}")) if root.is_dir() else []
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def model_state(ckpt: dict) -> dict:
    """The weights to deploy from a trainer checkpoint: the EMA weights when present, else the raw model."""
    if not isinstance(ckpt, dict):
        raise CheckpointError("checkpoint is not a dict; expected a ghostdet training checkpoint")
    state = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(state, dict):
        raise CheckpointError("checkpoint holds no 'model' or 'ema' state dict; is this a ghostdet training checkpoint?")
    return state


def model_spec_of(ckpt: dict, where: str = "checkpoint") -> dict:
    """The validated model spec a checkpoint describes: its ``model_spec``, else (files written before the
    registry) its ``config.model`` with every ``_target_`` mapped to a registered ghostdet name. Names must be
    registered (import your plugins first) and arguments must fit the constructors.

    Raises CheckpointError naming the file and the offending key for anything else; nothing is imported or called.
    """
    from ghostdet.models.registry import check_spec
    from ghostdet.utils.errors import ConfigError

    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{where}: not a ghostdet training checkpoint (not a dict); pass a weights/best.pt or last.pt written by tools/train.py")
    node = ckpt.get("model_spec")
    if node is None:
        node = (ckpt.get("config") or {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    if node is None:
        raise CheckpointError(f"{where}: not a ghostdet training checkpoint (no model spec); pass a weights/best.pt or last.pt written by tools/train.py")
    try:
        return check_spec(node, "model")
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


def build_model_from_checkpoint(ckpt_or_path: dict | str | os.PathLike, map_location: Any = "cpu"):
    """Rebuild the detector described by a ghostdet checkpoint and load its (EMA) weights.

    The model is built only through the registry (``ghostdet.models.build_model``) from the stored spec, with
    every ``pretrained`` path cleared (the weights come from the checkpoint). Returns ``(model, meta)`` where meta
    has ``names``, ``category_ids``, ``imgsz``, ``config`` and ``spec``. The model is in eval mode on ``map_location``.
    """
    from ghostdet.models.registry import build_model, without_pretrained
    from ghostdet.utils.errors import GhostdetError

    if isinstance(ckpt_or_path, dict):
        ckpt, where = ckpt_or_path, "checkpoint"
    else:
        ckpt, where = load_checkpoint(ckpt_or_path, map_location="cpu"), str(ckpt_or_path)
    spec = without_pretrained(model_spec_of(ckpt, where))
    names = ckpt.get("names") or []
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"{where}: 'names' must be a list of class-name strings")
    names = list(names)
    try:
        model = build_model(spec, "model", **({"num_classes": len(names)} if names else {}))
    except GhostdetError as e:
        raise CheckpointError(f"{where}: cannot rebuild the model from its spec ({e})") from None
    except Exception as e:  # a constructor rejecting a value this version cannot build
        raise CheckpointError(f"{where}: cannot rebuild the model from its spec ({type(e).__name__}: {e})") from None
    state = model_state(ckpt)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise CheckpointError(f"{where}: weights do not fit the stored model spec ({str(e).splitlines()[-1].strip()})") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: weights do not fit the stored model spec (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    model.to(map_location).eval()
    config = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else {}
    meta = {
        "names": names,
        "category_ids": ckpt.get("category_ids"),
        "imgsz": config.get("imgsz", 640),
        "config": config,
        "spec": spec,
    }
    return model, meta
