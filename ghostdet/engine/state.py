"""The training state a checkpoint carries, written and read side by side: :func:`state_dict` is the checkpoint
layout (docs/CONTRACTS.md), :func:`load_state_dict` puts a freshly built :class:`~ghostdet.engine.Trainer` back
into it, so the run continues as if never stopped.

``weights/last.pt`` is the state after the last completed epoch. Ctrl-C mid-epoch stops at the next optimizer
step and writes ``weights/interrupted.pt``: the same layout plus the ``iteration`` reached and the epoch's running
loss figures (``epoch_stats``); a resume continues from that iteration (the loader skips the samples already
seen, :class:`ghostdet.data.loader.EpochSampler`). It is removed once an epoch completes after it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import torch
from omegaconf import DictConfig, OmegaConf

import ghostdet
from ghostdet.engine.seeding import rng_state, set_rng_state
from ghostdet.utils.errors import CheckpointError

INTERRUPTED = "interrupted.pt"


@dataclass
class EpochStats:
    """The host-side running figures of one epoch."""

    loss_sums: torch.Tensor  # float64, per LOSS_KEYS, over the finite iterations
    n_good: int = 0
    bad_in_row: int = 0
    images_seen: int = 0
    t_start: float = field(default_factory=time.time)

    def mean(self) -> torch.Tensor:
        return self.loss_sums / max(self.n_good, 1)

    def to_dict(self) -> dict:
        return {"loss_sums": self.loss_sums.clone(), "n_good": self.n_good, "bad_in_row": self.bad_in_row,
                "images_seen": self.images_seen}

    @classmethod
    def from_dict(cls, d: dict) -> "EpochStats":
        return cls(d["loss_sums"].to(torch.float64), int(d["n_good"]), int(d["bad_in_row"]), int(d["images_seen"]))


def to_container(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def state_dict(trainer, epoch_done: int, iteration: int = 0, stats: EpochStats | None = None) -> dict:
    """The checkpoint of a :class:`~ghostdet.engine.Trainer` after ``epoch_done`` epochs (and ``iteration``
    iterations of the next one)."""
    ckpt = {
        "model": trainer.model.state_dict(),
        "ema": trainer.ema.state_dict() if trainer.ema is not None else None,
        "ema_updates": trainer.ema.updates if trainer.ema is not None else 0,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.scaler.state_dict(),
        "epoch": epoch_done,
        "interrupted": bool(iteration),
        "rng": rng_state(),
        "mosaic_epochs": trainer.mosaic_epochs,  # epochs behind whose BatchNorm statistics came from mosaic batches
        "config": to_container(trainer.cfg),
        "names": list(trainer.names),
        "category_ids": trainer.category_ids,
        "metrics": dict(trainer.last_metrics),
        "best_fitness": trainer.best_fitness,
        "best_metrics": dict(trainer.best_metrics),
        "early_stop": trainer.stopper.state_dict(),  # patience=: evaluations since the best one
        "model_spec": trainer.model_spec,  # registered names + plain values: how the model is rebuilt
        "ghostdet_version": ghostdet.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if iteration:
        ckpt.update(iteration=iteration, epoch_stats=stats.to_dict())
    return ckpt


def load_state_dict(trainer, ckpt: dict, where) -> None:
    """Put ``ckpt`` (a :func:`state_dict`) into a freshly built ``trainer``: weights, EMA, optimizer, scheduler
    position, scaler, epoch and iteration, the interrupted epoch's figures, best metrics and RNG streams."""
    try:
        trainer.model.load_state_dict(ckpt["model"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        trainer.scheduler.load_state_dict(ckpt["scheduler"])
        if trainer.ema is not None and ckpt.get("ema") is not None:
            trainer.ema.load_state_dict(ckpt["ema"], ckpt.get("ema_updates", 0))
        if ckpt.get("scaler"):
            trainer.scaler.load_state_dict(ckpt["scaler"])
        done = int(ckpt.get("epoch", 0))
        # checkpoints of older versions marked "interrupted" hold mid-epoch weights without an iteration: that
        # epoch runs again from its start
        iteration = int(ckpt.get("iteration", 0)) if ckpt.get("interrupted") else 0
        stats = EpochStats.from_dict(ckpt["epoch_stats"]) if iteration else None
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{where}: cannot resume from it ({str(e).splitlines()[0]})") from None
    if not 0 <= iteration < trainer.iters_per_epoch:
        raise CheckpointError(f"{where}: stopped at iteration {iteration}, but an epoch now has "
                              f"{trainer.iters_per_epoch}; resume with the data and batch it was trained with")
    trainer.start_epoch = trainer.epochs_done = done
    trainer.start_iteration, trainer.resume_stats = iteration, stats
    scheduler = trainer.scheduler
    # extending a run (epochs=N larger than before) stretches the decay over the new length; the LR and momentum
    # are recomputed for the position reached (closed form: the same values an uninterrupted run has there)
    scheduler.total_steps = trainer.epochs * trainer.iters_per_epoch
    scheduler.last_epoch = done * trainer.iters_per_epoch + iteration - 1
    scheduler.step()
    if ckpt.get("rng") and trainer.rank == 0:
        set_rng_state(ckpt["rng"])
    trainer.mosaic_epochs = int(ckpt["mosaic_epochs"]) if "mosaic_epochs" in ckpt else _mosaic_epochs_before(ckpt)
    trainer.best_fitness = ckpt.get("best_fitness")
    trainer.best_metrics = dict(ckpt.get("best_metrics") or {})
    trainer.last_metrics = dict(ckpt.get("metrics") or {})
    trainer.stopper.load_state_dict(ckpt.get("early_stop") or {"best_fitness": trainer.best_fitness})


def _mosaic_epochs_before(ckpt: dict) -> int:
    """Checkpoints written before ``mosaic_epochs`` existed: the epochs done before close-mosaic, by their config."""
    cfg, done = ckpt.get("config") or {}, int(ckpt.get("epoch", 0))
    if float((cfg.get("augment") or {}).get("mosaic", 1.0)) <= 0:
        return 0
    close = int(cfg.get("close_mosaic", 0) or 0)
    return min(done, max(int(cfg.get("epochs", done)) - close, 0)) if close else done


__all__ = ["EpochStats", "INTERRUPTED", "load_state_dict", "state_dict", "to_container"]
