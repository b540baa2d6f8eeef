"""The training loop: data, model, loss, optimizer, schedule, EMA, DDP, evaluation, checkpoints.

The checkpoint layout and its restoring are ``engine/state.py``, finding what ``resume=`` names ``engine/resume.py``,
run dirs and the lock of a live run ``engine/run_dir.py``, mixed precision ``engine/amp.py``, what a run writes
besides checkpoints ``engine/run_log.py`` and ``engine/outputs.py`` (with ``weights=``), ``patience=``
``engine/early_stop.py``, seeding ``engine/seeding.py``, collectives ``engine/distributed.py``, non-finite losses
and gradients at the optimizer step ``engine/step_guard.py``.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig

from ghostdet.engine import distributed as dist_utils
from ghostdet.engine import state
from ghostdet.engine.amp import mixed_precision
from ghostdet.engine.early_stop import EarlyStopping
from ghostdet.engine.ema import ModelEMA
from ghostdet.engine.interrupt import StopRequest
from ghostdet.engine.outputs import (check_weights_and_resume, given, load_start_weights, plot_labels_jpg,
                                     resolve_auto_batch, slim_best)
from ghostdet.engine.optim import build_training_optimizer, check_optimizer_name, check_schedule_name
from ghostdet.engine.resume import is_no_resume, load_resume
from ghostdet.engine.run_dir import RunLock, check_new_run_dir
from ghostdet.engine.run_log import LOSS_KEYS, RunLogger, progress_bar, progress_text, summary_table
from ghostdet.engine.seeding import seed_everything
from ghostdet.engine.state import EpochStats
from ghostdet.engine.step_guard import TrainingError, account_window, read_step_flags
from ghostdet.engine.validation import EpochValidator
from ghostdet.models.layers import freeze_batchnorm_stats
from ghostdet.utils.checkpoint import save_checkpoint
from ghostdet.utils.cpu_memory import keep_freed_memory
from ghostdet.utils.device import select_device
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.imgsz import check_imgsz, max_stride

log = logging.getLogger(__name__)


class Trainer:
    """Trains a detector as described by a train config (``configs/train.yaml``) and writes a run dir.

    ``run_dir`` must not hold another run's outputs (only the tool's ``.hydra/`` and ``train.log``); on
    ``resume=...`` the run continues in its own dir with its own config, and only ``resume_overrides`` keys
    (from ``RESUME_OVERRIDABLE``) are taken from ``cfg`` — the tool passes the ones given on the command line.
    The main process holds ``weights/train.lock`` from here until :meth:`fit` ends (or :meth:`close`).
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path, resume_overrides: dict | None = None):
        self.rank, self.local_rank, self.world_size = dist_utils.env_world()
        check_weights_and_resume(cfg)  # the command's own keys (a resumed run's config still names its weights=)
        resume = None if is_no_resume(cfg.get("resume")) else load_resume(cfg, resume_overrides or {})
        if resume is not None:
            cfg, run_dir = resume.cfg, resume.run_dir
        self.resume_path: Path | None = resume.path if resume is not None else None
        self.cfg = cfg
        self.device = select_device(cfg.device, self.local_rank, self.world_size)
        resolve_auto_batch(cfg, self.device)  # batch=auto / -1
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # before the first collective: NCCL talks from the current device
        elif cfg.get("reuse_freed_memory", True):
            keep_freed_memory()  # before the loaders fork their workers (ghostdet/utils/cpu_memory.py)
        self.distributed = dist_utils.init_distributed(self.device)
        self.is_main = dist_utils.is_main_process()
        if self.distributed:
            self.rank, self.world_size = dist_utils.rank(), dist_utils.world_size()
        self.run_dir = dist_utils.shared_run_dir(run_dir, self.device)  # every rank writes into rank 0's run dir
        self.weights_dir = self.run_dir / "weights"
        self.epochs = int(cfg.epochs)
        _check_config(cfg)  # before minutes of dataset scanning
        self.logger: RunLogger | None = None
        self.lock = RunLock(self.weights_dir) if self.is_main else None
        if self.lock is not None:
            if resume is None:
                check_new_run_dir(self.run_dir)  # never replace another run's checkpoints and results
            self.lock.acquire()
        try:
            self._set_up(resume)
        except BaseException:
            self.close()  # a failed start leaves no lock and no folder it created
            raise

    # ------------------------------------------------------------------ set-up
    def _set_up(self, resume) -> None:
        cfg = self.cfg
        # data augmentation differs per rank; model init is the same everywhere (DDP also broadcasts it)
        seed_everything(int(cfg.seed) + self.rank, bool(cfg.deterministic))
        torch.manual_seed(int(cfg.seed))
        self._build_data()
        self._build_model()
        self._build_optimization()
        self.start_epoch = self.epochs_done = self.start_iteration = 0
        self.resume_stats: EpochStats | None = None
        self.mosaic_epochs = 0  # epochs trained on mosaic batches, this run's history included
        self.best_fitness: float | None = None
        self.best_metrics: dict = {}
        self.last_metrics: dict = {}
        self.validator = EpochValidator(self.val_set, getattr(self, "val_loader", None), cfg.get("val"), self.names,
                                        self.category_ids, self.device, self.channels_last,
                                        bool(cfg.get("progress", True)), out_dir=self.run_dir if self.is_main else None)
        self.stopper = EarlyStopping(int(cfg.get("patience", 0) or 0))
        self._stop = StopRequest()  # Ctrl-C: stop at the next optimizer step
        if resume is not None:
            state.load_state_dict(self, resume.checkpoint, resume.path)
        if self.is_main:
            self.logger = RunLogger(self.run_dir, resume_epoch=self.start_epoch if self.resume_path else None,
                                    tensorboard=bool(cfg.get("tensorboard", True)), extra_plots=self.validator.plot)
            if resume is None:
                plot_labels_jpg(self.train_set, self.run_dir, self.names)

    def _build_data(self) -> None:
        from ghostdet.data import build_dataloader, build_dataset

        cfg = self.cfg
        imgsz = int(cfg.imgsz)
        # datasets first: a bad data root fails before any model is built
        resumed = self.resume_path is not None  # a data config read from a checkpoint is only read, never written to
        self.train_set = build_dataset(cfg.data, split="train", imgsz=imgsz, augment=True, aug_cfg=cfg.get("augment"),
                                       read_only=resumed)
        self.val_set = build_dataset(cfg.data, split="val", imgsz=imgsz, augment=False,
                                     read_only=resumed) if self.is_main else None
        self.names = list(self.train_set.names)
        self.category_ids = list(self.train_set.category_ids) if getattr(self.train_set, "category_ids", None) else None
        self.mosaic_closed = False
        self.train_loader = build_dataloader(self.train_set, batch_size=int(cfg.batch), workers=int(cfg.workers),
                                             shuffle=True, seed=int(cfg.seed), distributed=self.distributed)
        if self.val_set is not None:
            val_batch = int(cfg.get("val", {}).get("batch") or cfg.batch)
            self.val_loader = build_dataloader(self.val_set, batch_size=val_batch, workers=int(cfg.workers),
                                               shuffle=False, seed=int(cfg.seed))
        self.iters_per_epoch = len(self.train_loader)
        if self.iters_per_epoch == 0:
            raise ConfigError(f"batch={cfg.batch}: the training split has fewer images than one batch")

    def _build_model(self) -> None:
        from ghostdet.models.loss import DetectionLoss
        from ghostdet.models.registry import build_model, to_spec

        cfg = self.cfg
        # the spec, validated (a resumed run's comes from its checkpoint: only registered names are accepted)
        self.model_spec = to_spec(cfg.model, "model")
        model = build_model(self.model_spec, "model", num_classes=len(self.names))
        if self.resume_path is None and given(cfg.get("weights")):  # fine-tune: a new run from a checkpoint's weights
            load_start_weights(model, cfg.weights)
        model.to(self.device)
        check_imgsz(int(cfg.imgsz), max_stride(model))  # the model's own strides, now that it is built
        # NHWC on the CPU too: oneDNN's depthwise/1x1 kernels are faster in channels_last for backward as well as
        # forward (ghost_yolo, batch 16 at 320: 1.5x faster forward+backward; benchmarks/profile_train_epoch.py)
        self.channels_last = bool(cfg.get("channels_last", True))
        if self.channels_last:
            model = model.use_channels_last()
        if self.distributed and cfg.get("sync_bn", False):
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:
                log.warning("sync_bn=true needs CUDA; keeping per-process BatchNorm on %s", self.device)
        self.model = model
        self.criterion = DetectionLoss(model, **state.to_container(cfg.get("loss") or {}))
        self.train_model = model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        ema_cfg = cfg.get("ema") or {}
        self.ema = ModelEMA(model, decay=float(ema_cfg.get("decay", 0.9999)), tau=float(ema_cfg.get("tau", 2000))) \
            if ema_cfg.get("enabled", True) else None

    def _build_optimization(self) -> None:
        cfg = self.cfg
        self.accumulate, self.optimizer, self.scheduler = build_training_optimizer(
            cfg, self.model, self.iters_per_epoch, self.world_size)
        self.amp = mixed_precision(cfg.get("amp", "auto"), self.device)
        self.scaler = self.amp.scaler
        self.clip_norm = float(cfg.get("clip_grad_norm", 10.0) or 0.0)
        self.max_nonfinite = int(cfg.get("max_nonfinite_steps", 20))

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train from where the run stands to ``epochs``; returns the best metrics (rank 0) or {}.

        Ctrl-C stops cleanly at the next optimizer step (a second one stops at once): mid-epoch the state goes to
        ``weights/interrupted.pt`` (``last.pt`` keeps the last completed epoch), then KeyboardInterrupt is raised.
        """
        cfg = self.cfg
        if self.is_main:
            log.info("training %s on %s: %d train images, %d classes, imgsz %d, batch %d x %d process(es), "
                     "accumulate %d (nominal batch %d), %d epochs, device %s%s",
                     self.model_spec["name"], cfg.data.get("format", "data"),
                     len(self.train_set), len(self.names), int(cfg.imgsz), int(cfg.batch), self.world_size,
                     self.accumulate, int(cfg.batch) * self.world_size * self.accumulate, self.epochs, self.device,
                     f", AMP {self.amp.dtype}" if self.amp.dtype else "")
            log.info("run dir: %s", self.run_dir)
        t0 = time.time()
        try:
            with self._stop.on_sigint():
                for epoch in range(self.start_epoch, self.epochs):
                    epoch_t0 = time.time()
                    losses = self.train_one_epoch(epoch)
                    if losses is None:  # stopped mid-epoch; its state is in weights/interrupted.pt
                        raise KeyboardInterrupt
                    self._sync_buffers()
                    metrics = None
                    interval = max(int(cfg.get("eval_interval", 1)), 1)
                    if (epoch + 1) % interval == 0 or epoch + 1 == self.epochs:
                        metrics = self.evaluate() if self.is_main else None
                    stop = self._end_epoch(epoch, losses, metrics, epoch_t0) if self.is_main else False
                    if dist_utils.any_rank(stop, self.device):  # patience=N: rank 0 decides, every rank stops
                        break
                    dist_utils.barrier()
                    if epoch + 1 < self.epochs and dist_utils.any_rank(self._stop.requested, self.device):
                        raise KeyboardInterrupt
            if self.is_main:
                slim_best(self.weights_dir)  # deployment-sized; last.pt keeps everything for resume=
        except KeyboardInterrupt:
            if self.is_main and not self._stop.saved:
                saved = f"{self.weights_dir / 'last.pt'} holds epoch {self.epochs_done}" if self.epochs_done \
                    else "no epoch completed yet"
                log.warning("interrupted: %s; continue with resume=%s", saved, self.run_dir)
            raise
        finally:
            self.close()
        if self.is_main:
            self._summary(time.time() - t0)
        dist_utils.barrier()
        return dict(self.best_metrics)

    def close(self) -> None:
        """Close the run's logs and release its lock (``fit`` does it at the end)."""
        if self.logger is not None:
            self.logger.close()
            self.logger = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _set_epoch_data(self, epoch: int, start_iteration: int = 0) -> None:
        close = int(self.cfg.get("close_mosaic", 0) or 0)
        if close and not self.mosaic_closed and epoch >= self.epochs - close and hasattr(self.train_set, "set_mosaic"):
            log.info("closing mosaic for the last %d epoch(s)", self.epochs - epoch)
            self.train_set.set_mosaic(False)
            self.mosaic_closed = True  # the dataset's switch reaches its persistent workers too
            if _close_mosaic_bn(self.cfg) == "freeze" and not self.mosaic_epochs:
                log.info("no mosaic epoch before: BatchNorm statistics keep updating (close_mosaic_bn=freeze keeps "
                         "only statistics estimated on mosaic batches)")
        # the order and every sample's augmentation follow from (seed, epoch, sample index) alone, so a resumed
        # run sees the batches of an uninterrupted one; a run resumed mid-epoch skips the samples it has seen
        self.train_loader.sampler.set_epoch(epoch, start_iteration * int(self.cfg.batch))

    def train_one_epoch(self, epoch: int) -> dict | None:
        """One pass over the training data; returns the epoch's mean losses (over finite iterations and ranks),
        or None when Ctrl-C stopped it at an optimizer step (the state is then in ``weights/interrupted.pt``).

        The loop itself reads the device once per optimizer step: a loss's finiteness stays there until the step
        reads the flags of its accumulation window with the gradient norm and the stop request (as GradScaler
        reads anyway). The loss's sparse assignment waits for the device where its sizes depend on the data (four
        times a batch, models/loss.py). A window with a non-finite loss is skipped whole.
        """
        start = self.start_iteration if epoch == self.start_epoch else 0
        stats = self.resume_stats if start else EpochStats(torch.zeros(len(LOSS_KEYS), dtype=torch.float64))
        self.start_iteration, self.resume_stats = 0, None
        self._set_epoch_data(epoch, start)
        self.train_model.train()
        # BatchNorm statistics estimated on mosaic batches stay frozen; with none behind them they keep updating
        if self.mosaic_closed and _close_mosaic_bn(self.cfg) == "freeze" and self.mosaic_epochs > 0:
            freeze_batchnorm_stats(self.train_model)
        mosaic_on = not self.mosaic_closed and self.train_set.transform.aug["mosaic"] > 0
        bar, iterator = progress_bar(self.train_loader, f"epoch {epoch + 1}/{self.epochs}",
                                     self.is_main and bool(self.cfg.get("progress", True)))
        n = self.iters_per_epoch
        window: list[tuple[int, torch.Tensor, dict]] = []  # (iteration, finite flag on the device, loss items)
        self.optimizer.zero_grad(set_to_none=True)
        stopped_at = 0  # the iteration a Ctrl-C stopped the epoch after
        for i, (images, targets, _metas, ignore) in enumerate(iterator, start):
            # targets and crowd regions (ignore: no background loss there) stay on the host: the loss checks and
            # pads them there, where their data-dependent sizes cost no device sync (models/loss.py)
            images = images.to(self.device, non_blocking=True)  # the model makes them NHWC (use_channels_last)
            step_now = (i + 1) % self.accumulate == 0 or i + 1 == n
            finite, items = self._forward_backward(images, targets, ignore, step_now)
            window.append((i, finite, items))
            if step_now:
                if self._optimizer_step(epoch, window, stats) and i + 1 < n:
                    stopped_at = i + 1
                window = []
            self.scheduler.step()
            stats.images_seen += images.shape[0]
            if step_now and bar is not None:
                bar.set_postfix_str(progress_text(stats.mean(), self.optimizer.param_groups[0]["lr"],
                                                  stats.images_seen * self.world_size, stats.t_start))
            if stopped_at:
                break
        if bar is not None:
            bar.close()
        if stopped_at:
            self._save_interrupted(epoch, stopped_at, stats)
            return None
        self.mosaic_epochs += int(mosaic_on)
        mean = dist_utils.all_reduce_mean(stats.mean(), self.device)
        return dict(zip(LOSS_KEYS, mean.tolist()))

    def _forward_backward(self, images, targets, ignore, step_now: bool) -> tuple[torch.Tensor, dict]:
        """Forward, loss and backward of one batch; returns the loss's finiteness (a device tensor) and items."""
        # DDP: all-reduce gradients only on the iteration that steps
        sync = self.train_model.no_sync() if self.distributed and not step_now else contextlib.nullcontext()
        with sync:
            with self.amp.autocast():
                raw = self.train_model(images)
                loss, items = self.criterion(raw, targets, ignore)
            # the loss is already x batch size (YOLOv8 convention); DDP averages gradients over ranks,
            # so scale by the world size to keep them a sum over the nominal batch
            self.scaler.scale(loss * self.world_size if self.distributed else loss).backward()
        return torch.isfinite(loss.detach()).all(), items

    def _optimizer_step(self, epoch: int, window: list, stats: EpochStats) -> bool:
        """Clip and step, unless a loss of the window or (without a scaler) the gradient norm is not finite.
        Returns whether to stop here (Ctrl-C on any rank)."""
        norm = None
        if self.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                                  self.clip_norm)
        finite, norm_finite, stop = read_step_flags([f for _, f, _ in window], norm, self._stop.requested,
                                                    self.distributed, self.device)
        account_window(epoch, window, finite, stats, self.max_nonfinite, self.weights_dir / "last.pt")
        if all(finite) and (norm_finite or self.scaler.is_enabled()):  # GradScaler skips inf gradients itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            return stop
        if all(finite):
            log.warning("non-finite gradient norm; optimizer step skipped")
        if self.scaler.is_enabled() and self.clip_norm > 0:
            self.scaler.update()  # unscale_ ran: the scaler backs off and is ready for the next step
        self.optimizer.zero_grad(set_to_none=True)
        return stop

    def _sync_buffers(self) -> None:
        """BN running stats drift apart between ranks (each sees its own last batch): take rank 0's."""
        if self.distributed:
            modules = [self.model] + ([self.ema.module] if self.ema is not None else [])
            dist_utils.broadcast_tensors([b for m in modules for b in m.buffers()])

    # ------------------------------------------------------------------ evaluation, checkpoints, logs
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self) -> dict:
        """COCO mAP of the (EMA) weights on the val split (engine/validation.py)."""
        return self.validator(self.eval_model())

    def _save_interrupted(self, epoch: int, iteration: int, stats: EpochStats) -> None:
        if self.is_main:
            path = save_checkpoint(state.state_dict(self, epoch, iteration, stats), self.weights_dir / state.INTERRUPTED)
            self._stop.saved = True
            log.warning("stopped at epoch %d, iteration %d of %d: saved %s (weights/last.pt keeps epoch %d); "
                        "continue with resume=%s", epoch + 1, iteration, self.iters_per_epoch, path, self.epochs_done,
                        self.run_dir)
        dist_utils.barrier()

    def _end_epoch(self, epoch: int, losses: dict, metrics: dict | None, epoch_t0: float) -> bool:
        """Best/last bookkeeping, checkpoints, the results row and the log line; returns whether ``patience``
        stops the run here. The epoch's time counts the checkpoint writes too (as ultralytics' does)."""
        done = epoch + 1
        if metrics is not None:
            self.last_metrics = {**metrics, "epoch": done}  # a checkpoint's "metrics" say which epoch they are from
        improved = False
        if metrics is not None and (self.best_fitness is None or metrics["mAP50-95"] > self.best_fitness):
            self.best_fitness, self.best_metrics = metrics["mAP50-95"], {**metrics, "epoch": done}
            improved = True
        stop = metrics is not None and self.stopper.step(metrics["mAP50-95"])  # its count goes into last.pt
        ckpt = state.state_dict(self, done)
        save_checkpoint(ckpt, self.weights_dir / "last.pt")
        (self.weights_dir / state.INTERRUPTED).unlink(missing_ok=True)  # last.pt is newer now
        self.epochs_done = done
        if improved:  # best.pt: the best *evaluated* weights only (its best_metrics["epoch"] == its "epoch")
            save_checkpoint(ckpt, self.weights_dir / "best.pt")
        seconds = time.time() - epoch_t0
        self.logger.log_epoch(done, losses, self.optimizer.param_groups[0]["lr"], metrics, seconds)
        msg = f"epoch {done}/{self.epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        if metrics is not None:
            msg += f" | mAP50 {metrics['mAP50']:.4f} mAP50-95 {metrics['mAP50-95']:.4f}" + (" (best)" if improved else "")
        log.info("%s | %.1fs", msg, seconds)
        if stop and done < self.epochs:
            log.info("%s", self.stopper.reason(self.best_metrics.get("epoch")))
        return stop

    def _summary(self, seconds: float) -> None:
        log.info("training finished\n%s", summary_table(self.epochs, seconds, self.best_metrics, self.last_metrics,
                                                         self.run_dir))
        self.validator.log_per_class()


def _check_config(cfg: DictConfig) -> None:
    """The settings that can be checked before the data is scanned and the model built."""
    if int(cfg.epochs) < 1:
        raise ConfigError(f"epochs={cfg.epochs}: must be at least 1")
    if int(cfg.batch) < 1:
        raise ConfigError(f"batch={cfg.batch}: must be at least 1 (it is the batch per process)")
    # the spec's strides when it gives them; the built model is checked again with its own
    check_imgsz(int(cfg.imgsz), max_stride(strides=cfg.model.get("strides")))
    check_optimizer_name(cfg.optimizer.name)
    check_schedule_name(str(cfg.schedule.name))
    if _close_mosaic_bn(cfg) not in ("update", "freeze"):
        raise ConfigError(f"close_mosaic_bn={cfg.close_mosaic_bn}: must be update or freeze")


def _close_mosaic_bn(cfg: DictConfig) -> str:
    """BatchNorm statistics in the close-mosaic epochs; ``freeze`` also for configs saved before the key existed."""
    return cfg.get("close_mosaic_bn", "freeze")


def train(cfg: DictConfig, run_dir: str | Path, resume_overrides: dict | None = None) -> dict:
    """Build a :class:`Trainer` and run it; returns the best validation metrics (empty on ranks > 0)."""
    trainer = Trainer(cfg, run_dir, resume_overrides=resume_overrides)
    try:
        return trainer.fit()
    finally:
        dist_utils.cleanup()


__all__ = ["Trainer", "TrainingError", "train"]
