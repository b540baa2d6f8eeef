"""Resuming a run: what ``resume=`` means, which checkpoint and run dir it names, and the config the resumed run
continues with. Restoring the training state is ``engine/state.py``; the tool's run dir is ``cli/train.py``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ghostdet.engine.run_dir import refuse_locked
from ghostdet.engine.state import INTERRUPTED
from ghostdet.utils.checkpoint import load_checkpoint, model_spec_of
from ghostdet.utils.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

# what a resumed run may change; everything else comes from the checkpoint's config so the run continues as it was
RESUME_OVERRIDABLE = ("epochs", "device", "workers", "eval_interval")
_NO_RESUME_STRINGS = ("", "null", "none", "false")


def is_no_resume(value: Any) -> bool:
    """The one definition of "no resume": ``None``, ``False``, or (any case, spaces ignored) ``""``, ``"null"``,
    ``"none"``, ``"false"`` — e.g. ``resume=None`` from the command line reaches Hydra as the string ``"None"``."""
    if value is None or value is False:
        return True
    return isinstance(value, str) and value.strip().lower() in _NO_RESUME_STRINGS


def _resumable(weights: Path) -> Path | None:
    """The file a run's ``weights/`` continues from: ``interrupted.pt`` (Ctrl-C mid-epoch) when it is newer
    than ``last.pt``, else ``last.pt``; None when it holds neither."""
    files = [p for p in (weights / INTERRUPTED, weights / "last.pt") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


def find_resume_checkpoint(resume: Any, runs_root: str | Path = "runs/train") -> Path:
    """``resume=true`` → the newest run under ``runs_root`` (``<run>/weights/last.pt`` or ``interrupted.pt``);
    a run dir or a file in its ``weights/`` → that run's. Refuses (ConfigError) a run a live process trains."""
    if resume is True or str(resume).lower() == "true":
        root = Path(runs_root)
        found = [f for f in (_resumable(w) for w in root.glob("**/weights")) if f] if root.is_dir() else []
        if not found:
            raise CheckpointError(f"resume=true: no {runs_root}/**/weights/last.pt found; pass resume=PATH/TO/last.pt")
        path = max(found, key=lambda p: p.stat().st_mtime)
    else:
        path = Path(str(resume))
        if path.is_dir():
            weights = path / "weights" if (path / "weights").is_dir() else path
            path = _resumable(weights) or weights / "last.pt"
        elif path.name == "last.pt" and path.parent.name == "weights":
            path = _resumable(path.parent) or path
        if not path.is_file():
            raise CheckpointError(f"resume={resume}: no such checkpoint; pass a run's weights/last.pt or resume=true "
                                  "for the newest run")
    refuse_locked(run_dir_of_checkpoint(path))
    return path


def run_dir_of_checkpoint(path: str | Path) -> Path:
    """``<run>/weights/last.pt`` → ``<run>``."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == "weights" else path.parent


@dataclass
class ResumePoint:
    path: Path  # the checkpoint
    checkpoint: dict
    cfg: DictConfig  # the run's own config, with the allowed overrides applied
    run_dir: Path


def load_resume(cfg: DictConfig, overrides: dict) -> ResumePoint:
    """Read the checkpoint ``cfg.resume`` names and the config the run continues with.

    Only ``RESUME_OVERRIDABLE`` keys of ``overrides`` change it (others are warned about). Raises CheckpointError
    for a file that is not a training checkpoint or names unregistered models, ConfigError for a finished run or
    one that a live process still trains.
    """
    from ghostdet.models.registry import without_pretrained

    path = find_resume_checkpoint(cfg.resume, cfg.get("runs_root", "runs/train"))
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or "optimizer" not in ckpt:
        raise CheckpointError(f"{path}: not a ghostdet training checkpoint with optimizer state; resume needs a run's weights/last.pt")
    # the model spec is checked before anything else is read or written: a file names registered models only;
    # its `pretrained` paths are cleared, as in build_model_from_checkpoint: the weights come from the checkpoint,
    # and no file a checkpoint names is ever read
    spec = without_pretrained(model_spec_of(ckpt, str(path)))
    run_cfg = OmegaConf.create(ckpt["config"])
    run_cfg.model = spec
    for key, value in overrides.items():
        if key in RESUME_OVERRIDABLE:
            run_cfg[key] = value
        else:
            log.warning("resume: ignoring %s=%s (a resumed run keeps its own config; only %s can change)",
                        key, value, ", ".join(RESUME_OVERRIDABLE))
    run_cfg.resume = str(path)
    done = int(ckpt.get("epoch", 0))
    if done >= int(run_cfg.epochs):
        raise ConfigError(
            f"{path}: this run already finished {done} of {run_cfg.epochs} epochs; nothing to resume "
            f"(add epochs=N with N > {done} to train it longer)"
        )
    at = f", iteration {ckpt['iteration']}" if ckpt.get("iteration") else ""
    log.info("resuming %s from epoch %d%s of %d", path, done + 1, at, int(run_cfg.epochs))
    return ResumePoint(path, ckpt, run_cfg, run_dir_of_checkpoint(path))


__all__ = ["RESUME_OVERRIDABLE", "ResumePoint", "find_resume_checkpoint", "is_no_resume", "load_resume",
           "run_dir_of_checkpoint"]
