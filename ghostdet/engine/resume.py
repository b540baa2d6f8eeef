"""Resuming a run, in one place: what ``resume=`` means, which checkpoint and run dir it names, the config a
resumed run continues with, the run dir every DDP rank writes into, and putting the training state back.

``tools/train.py`` uses the first half before Hydra makes a run dir (so a resumed run continues in its own);
the :class:`~ghostdet.engine.trainer.Trainer` uses :func:`load_resume` and :func:`restore_training_state`.
"""
from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf

from ghostdet.engine import distributed as dist_utils
from ghostdet.engine.seeding import set_rng_state
from ghostdet.utils.checkpoint import load_checkpoint, model_spec_of, newest_checkpoint
from ghostdet.utils.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from ghostdet.engine.trainer import Trainer

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


def find_resume_checkpoint(resume: Any, runs_root: str | Path = "runs/train") -> Path:
    """``resume=true`` → the newest ``<runs_root>/**/weights/last.pt``; a path → that file (or ``<dir>/weights/last.pt``)."""
    if resume is True or str(resume).lower() == "true":
        newest = newest_checkpoint(runs_root, "last.pt")
        if newest is None:
            raise CheckpointError(f"resume=true: no {runs_root}/**/weights/last.pt found; pass resume=PATH/TO/last.pt")
        return newest
    path = Path(str(resume))
    if path.is_dir():
        path = path / "weights" / "last.pt" if (path / "weights" / "last.pt").is_file() else path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"resume={resume}: no such checkpoint; pass a run's weights/last.pt or resume=true for the newest run")
    return path


def run_dir_of_checkpoint(path: str | Path) -> Path:
    """``<run>/weights/last.pt`` → ``<run>``."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == "weights" else path.parent


# ------------------------------------------------------------------ the run dir (before Hydra makes one)
def train_run_dir(resume: Any, default: str) -> str:
    """The run dir of ``tools/train.py``: a resumed run continues in its own; ranks > 0 of a DDP run write
    nothing and get a scratch dir (their Trainer takes rank 0's, :func:`shared_run_dir`)."""
    rank = dist_utils.env_world()[0]
    if rank > 0:
        return os.path.join(tempfile.gettempdir(), f"ghostdet-rank{rank}-{os.getpid()}")
    if is_no_resume(resume):
        return default
    try:
        return str(run_dir_of_checkpoint(find_resume_checkpoint(resume)))
    except (CheckpointError, OSError):  # the trainer reports a bad resume path with a proper message
        return default


def hydra_output_subdir(resume: Any) -> str | None:
    """Where Hydra writes its config: ``.hydra``, or ``.hydra/resume`` beside the original run's (ranks > 0: none)."""
    if dist_utils.env_world()[0] > 0:
        return None
    return ".hydra" if is_no_resume(resume) else ".hydra/resume"


def command_line_overrides(cfg: DictConfig, task_overrides: list[str]) -> dict:
    """The top-level keys given on the command line (Hydra's ``overrides.task``), for ``Trainer(resume_overrides=)``:
    the ones in ``RESUME_OVERRIDABLE`` with their composed values, the others as typed (to warn about)."""
    keys = {}
    for item in task_overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key != "resume" and "=" in item:
            keys[key] = cfg[key] if key in RESUME_OVERRIDABLE else item.split("=", 1)[1]
    return keys


def shared_run_dir(run_dir: str | Path) -> Path:
    """Rank 0's run dir on every rank (their Hydra dirs may differ by a clock tick); ``run_dir`` when not distributed."""
    return Path(dist_utils.broadcast_object(str(run_dir)))


# ------------------------------------------------------------------ the trainer's side
@dataclass
class ResumePoint:
    path: Path  # the checkpoint
    checkpoint: dict
    cfg: DictConfig  # the run's own config, with the allowed overrides applied
    run_dir: Path


def load_resume(cfg: DictConfig, overrides: dict) -> ResumePoint:
    """Read the checkpoint ``cfg.resume`` names and the config the run continues with.

    Only ``RESUME_OVERRIDABLE`` keys of ``overrides`` change it (others are warned about). Raises CheckpointError
    for a file that is not a training checkpoint or names unregistered models, ConfigError for a finished run.
    """
    path = find_resume_checkpoint(cfg.resume, cfg.get("runs_root", "runs/train"))
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) or "optimizer" not in ckpt:
        raise CheckpointError(f"{path}: not a ghostdet training checkpoint with optimizer state; resume needs a run's weights/last.pt")
    # the model spec is checked before anything else is read or written: a file names registered models only
    spec = model_spec_of(ckpt, str(path))
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
    log.info("resuming %s from epoch %d of %d", path, done + 1, int(run_cfg.epochs))
    return ResumePoint(path, ckpt, run_cfg, run_dir_of_checkpoint(path))


def restore_training_state(trainer: Trainer, point: ResumePoint) -> None:
    """Weights, EMA, optimizer, schedule, scaler, epoch counters, best metrics and (uninterrupted epochs) the
    RNG streams of ``point`` into a freshly built ``trainer``, so the run continues as if never stopped."""
    ckpt = point.checkpoint
    try:
        trainer.model.load_state_dict(ckpt["model"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
        if trainer.ema is not None and ckpt.get("ema") is not None:
            trainer.ema.load_state_dict(ckpt["ema"], ckpt.get("ema_updates", 0))
        if ckpt.get("scaler"):
            trainer.scaler.load_state_dict(ckpt["scaler"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{point.path}: cannot resume from it ({str(e).splitlines()[0]})") from None
    trainer.start_epoch = trainer.epochs_done = int(ckpt.get("epoch", 0))
    scheduler, start_step = trainer.scheduler, trainer.start_epoch * trainer.iters_per_epoch
    # extending a run (epochs=N larger than before) stretches the decay over the new length
    scheduler.total_steps = trainer.epochs * trainer.iters_per_epoch
    # an interrupted epoch is run again from its start position in the schedule
    if scheduler.last_epoch != start_step:
        scheduler.last_epoch = start_step - 1
        scheduler.step()
    if ckpt.get("rng") and trainer.rank == 0 and not ckpt.get("interrupted"):
        set_rng_state(ckpt["rng"], getattr(trainer.train_loader, "generator", None))
    trainer.best_fitness = ckpt.get("best_fitness")
    trainer.best_metrics = dict(ckpt.get("best_metrics") or {})


__all__ = ["RESUME_OVERRIDABLE", "ResumePoint", "command_line_overrides", "find_resume_checkpoint",
           "hydra_output_subdir", "is_no_resume", "load_resume", "restore_training_state", "run_dir_of_checkpoint",
           "shared_run_dir", "train_run_dir"]
