"""The training loop: data, model, loss, optimizer, schedule, EMA, DDP, evaluation, checkpoints.

Resume lives in ``engine/resume.py``, mixed precision in ``engine/amp.py``, what a run writes besides checkpoints
in ``engine/run_log.py``, seeding in ``engine/seeding.py``.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

import ghostdet
from ghostdet.engine import distributed as dist_utils
from ghostdet.engine.amp import mixed_precision
from ghostdet.engine.ema import ModelEMA
from ghostdet.engine.optim import WarmupDecayLR, build_optimizer, check_optimizer_name, check_schedule_name
from ghostdet.engine.resume import (is_no_resume, load_resume, restore_training_state,
                                    shared_run_dir)
from ghostdet.engine.run_log import LOSS_KEYS, RunLogger
from ghostdet.engine.seeding import rng_state, seed_everything
from ghostdet.models.layers import freeze_batchnorm_stats
from ghostdet.models.reparam import deploy_form
from ghostdet.utils.checkpoint import save_checkpoint
from ghostdet.utils.cpu_memory import keep_freed_memory
from ghostdet.utils.device import select_device
from ghostdet.utils.errors import ConfigError, GhostdetError
from ghostdet.utils.imgsz import check_imgsz, max_stride
from ghostdet.utils.tables import text_table

log = logging.getLogger(__name__)


class TrainingError(GhostdetError):
    """Training cannot go on (e.g. the loss stayed non-finite); the last good checkpoint is kept."""


@dataclass
class _EpochStats:
    """The host-side running figures of one epoch."""

    loss_sums: torch.Tensor  # float64, per LOSS_KEYS, over the finite iterations
    n_good: int = 0
    bad_in_row: int = 0
    images_seen: int = 0
    t_start: float = field(default_factory=time.time)

    def mean(self) -> torch.Tensor:
        return self.loss_sums / max(self.n_good, 1)


def _to_container(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


class Trainer:
    """Trains a detector as described by a train config (``configs/train.yaml``) and writes a run dir.

    ``resume_overrides``: on ``resume=...`` the run's own config is used; only these keys
    (from ``RESUME_OVERRIDABLE``) are taken from ``cfg`` — the tool passes the ones given on the command line.
    """

    def __init__(self, cfg: DictConfig, run_dir: str | Path, resume_overrides: dict | None = None):
        self.rank, self.local_rank, self.world_size = dist_utils.env_world()
        resume = None if is_no_resume(cfg.get("resume")) else load_resume(cfg, resume_overrides or {})
        if resume is not None:
            cfg, run_dir = resume.cfg, resume.run_dir
        self.resume_path: Path | None = resume.path if resume is not None else None
        self.cfg = cfg
        self.device = select_device(cfg.device, self.local_rank, self.world_size)
        if self.device.type == "cpu" and cfg.get("reuse_freed_memory", True):
            keep_freed_memory()  # before the loaders fork their workers (ghostdet/utils/cpu_memory.py)
        self.distributed = dist_utils.init_distributed(self.device)
        self.is_main = dist_utils.is_main_process()
        if self.distributed:
            self.rank, self.world_size = dist_utils.rank(), dist_utils.world_size()
        self.run_dir = shared_run_dir(run_dir)  # every rank writes into rank 0's run dir
        self.weights_dir = self.run_dir / "weights"
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.epochs = int(cfg.epochs)
        _check_config(cfg)  # before minutes of dataset scanning
        # data augmentation differs per rank; model init is the same everywhere (DDP also broadcasts it)
        seed_everything(int(cfg.seed) + self.rank, bool(cfg.deterministic))
        torch.manual_seed(int(cfg.seed))

        self._build_data()
        self._build_model()
        self._build_optimization()
        self.start_epoch = self.epochs_done = 0
        self.best_fitness: float | None = None
        self.best_metrics: dict = {}
        self.last_metrics: dict = {}
        self._evaluator = None
        self.last_eval_stats: dict | None = None
        self._in_epoch = False
        if resume is not None:
            restore_training_state(self, resume)
        self.logger = RunLogger(self.run_dir, resume_epoch=self.start_epoch if self.resume_path else None,
                                tensorboard=bool(cfg.get("tensorboard", True))) if self.is_main else None

    # ------------------------------------------------------------------ set-up
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
        self.train_loader = self._train_loader()
        if self.val_set is not None:
            val_batch = int(cfg.get("val", {}).get("batch") or cfg.batch)
            self.val_loader = build_dataloader(self.val_set, batch_size=val_batch, workers=int(cfg.workers),
                                               shuffle=False, seed=int(cfg.seed))
        self.iters_per_epoch = len(self.train_loader)
        if self.iters_per_epoch == 0:
            raise ConfigError(f"batch={cfg.batch}: the training split has fewer images than one batch")

    def _train_loader(self):
        from ghostdet.data import build_dataloader

        return build_dataloader(self.train_set, batch_size=int(self.cfg.batch), workers=int(self.cfg.workers), shuffle=True,
                                seed=int(self.cfg.seed), distributed=self.distributed)

    def _build_model(self) -> None:
        from ghostdet.models.registry import build_model, to_spec

        cfg = self.cfg
        # the spec, validated (a resumed run's comes from its checkpoint: only registered names are accepted)
        self.model_spec = to_spec(cfg.model, "model")
        model = build_model(self.model_spec, "model", num_classes=len(self.names))
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
        self.criterion = self._build_loss(model)
        self.train_model = model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        ema_cfg = cfg.get("ema") or {}
        self.ema = ModelEMA(model, decay=float(ema_cfg.get("decay", 0.9999)), tau=float(ema_cfg.get("tau", 2000))) \
            if ema_cfg.get("enabled", True) else None

    def _build_loss(self, model):
        from ghostdet.models.loss import DetectionLoss

        loss_cfg = _to_container(self.cfg.get("loss") or {})
        return DetectionLoss(model, **loss_cfg)

    def _build_optimization(self) -> None:
        cfg = self.cfg
        opt, sch = cfg.optimizer, cfg.schedule
        nbs = int(cfg.get("nbs", 64))
        total_batch = int(cfg.batch) * self.world_size
        # accumulate gradients to a nominal batch of `nbs` images; weight decay is defined per nominal batch
        self.accumulate = max(round(nbs / total_batch), 1)
        weight_decay = float(opt.weight_decay) * total_batch * self.accumulate / nbs
        self.optimizer = build_optimizer(self.model, name=opt.name, lr=float(opt.lr), momentum=float(opt.momentum),
                                         weight_decay=weight_decay, nesterov=bool(opt.get("nesterov", True)))
        total_steps = self.epochs * self.iters_per_epoch
        warmup = max(round(float(sch.warmup_epochs) * self.iters_per_epoch), int(sch.get("min_warmup_iters", 0))) \
            if float(sch.warmup_epochs) > 0 else 0
        self.scheduler = WarmupDecayLR(self.optimizer, total_steps=total_steps, warmup_steps=min(warmup, total_steps // 2),
                                       schedule=str(sch.name), final_lr_ratio=float(sch.final_lr_ratio),
                                       warmup_bias_lr=float(sch.get("warmup_bias_lr", 0.0)),
                                       warmup_momentum=sch.get("warmup_momentum"))
        self.amp = mixed_precision(cfg.get("amp", "auto"), self.device)
        self.scaler = self.amp.scaler
        self.clip_norm = float(cfg.get("clip_grad_norm", 10.0) or 0.0)
        self.max_nonfinite = int(cfg.get("max_nonfinite_steps", 20))

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict:
        """Train from ``start_epoch`` to ``epochs``; returns the best metrics (rank 0) or {}."""
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
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.epochs):
                epoch_t0 = time.time()
                self._in_epoch = True
                losses = self.train_one_epoch(epoch)
                self._sync_buffers()
                metrics = None
                interval = max(int(cfg.get("eval_interval", 1)), 1)
                if (epoch + 1) % interval == 0 or epoch + 1 == self.epochs:
                    metrics = self.evaluate() if self.is_main else None
                if self.is_main:
                    self._end_epoch(epoch, losses, metrics, epoch_t0)
                dist_utils.barrier()
        except KeyboardInterrupt:
            if self.is_main and self._in_epoch:
                # keep the progress of the unfinished epoch; a resume runs that epoch again from these weights
                path = self.save(self.weights_dir / "last.pt", self.epochs_done, interrupted=True)
                log.warning("interrupted during epoch %d: saved %s; continue with resume=%s", epoch + 1, path, path)
            elif self.is_main:
                log.warning("interrupted after epoch %d; continue with resume=%s", self.epochs_done,
                            self.weights_dir / "last.pt")
            raise
        finally:
            if self.logger is not None:
                self.logger.close()
        if self.is_main:
            self._summary(time.time() - t0)
        dist_utils.barrier()
        return dict(self.best_metrics)

    def _set_epoch_data(self, epoch: int) -> None:
        close = int(self.cfg.get("close_mosaic", 0) or 0)
        if close and not self.mosaic_closed and epoch >= self.epochs - close and hasattr(self.train_set, "set_mosaic"):
            log.info("closing mosaic for the last %d epoch(s)", self.epochs - epoch)
            self.train_set.set_mosaic(False)
            self.mosaic_closed = True  # the dataset's switch reaches its persistent workers too
        # every epoch's shuffle and augmentation stream follows from (seed, epoch, rank) alone, so a resumed run
        # sees the same batches as an uninterrupted one (exactly so with workers=0)
        epoch_seed = int(self.cfg.seed) + 1000 * epoch + self.rank
        generator = getattr(self.train_loader, "generator", None)
        if generator is not None:
            generator.manual_seed(epoch_seed)
        if int(self.cfg.workers) == 0 and hasattr(self.train_set, "set_random_seed"):
            self.train_set.set_random_seed(epoch_seed)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def train_one_epoch(self, epoch: int) -> dict:
        """One pass over the training data; returns the epoch's mean losses (over finite iterations and ranks).

        Nothing here waits for the device per iteration: a loss's finiteness stays on the device until the
        optimizer step reads the flags of its accumulation window together with the gradient norm (one
        host-device sync per step, as GradScaler has anyway). A window with a non-finite loss is skipped whole.
        """
        self._set_epoch_data(epoch)
        self.train_model.train()
        if self.mosaic_closed and _close_mosaic_bn(self.cfg) == "freeze":
            freeze_batchnorm_stats(self.train_model)
        stats = _EpochStats(torch.zeros(len(LOSS_KEYS), dtype=torch.float64))
        bar, iterator = self._progress_bar(epoch)
        n = len(self.train_loader)
        window: list[tuple[int, torch.Tensor, dict]] = []  # (iteration, finite flag on the device, loss items)
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(iterator):
            images, targets, ignore = self._to_device(batch)
            step_now = (i + 1) % self.accumulate == 0 or i + 1 == n
            finite, items = self._forward_backward(images, targets, ignore, step_now)
            window.append((i, finite, items))
            if step_now:
                self._optimizer_step(epoch, window, stats)
                window = []
            self.scheduler.step()
            stats.images_seen += images.shape[0]
            if step_now and bar is not None:
                self._show_progress(bar, stats)
        if bar is not None:
            bar.close()
        mean = dist_utils.all_reduce_mean(stats.mean())
        return dict(zip(LOSS_KEYS, mean.tolist()))

    def _progress_bar(self, epoch: int):
        """``(bar, iterable)``: a tqdm bar over the loader on the main process with ``progress=true``, else none."""
        if not (self.is_main and self.cfg.get("progress", True)):
            return None, self.train_loader
        from tqdm import tqdm

        bar = tqdm(self.train_loader, total=len(self.train_loader), desc=f"epoch {epoch + 1}/{self.epochs}",
                   leave=True, dynamic_ncols=True, bar_format="{l_bar}{bar:20}{r_bar}")
        return bar, bar

    def _to_device(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, targets, _metas, ignore = batch
        images = images.to(self.device, non_blocking=True)  # the model makes them NHWC (GhostYOLO.use_channels_last)
        # crowd regions (ignore): no background loss there
        return images, targets.to(self.device), ignore.to(self.device)

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

    def _optimizer_step(self, epoch: int, window: list, stats: "_EpochStats") -> None:
        """Clip and step, unless a loss of the window or (without a scaler) the gradient norm is not finite."""
        norm = None
        if self.clip_norm > 0:
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad],
                                                  self.clip_norm)
        finite, norm_finite = self._read_flags([f for _, f, _ in window], norm)
        self._account(epoch, window, finite, stats)
        if all(finite) and (norm_finite or self.scaler.is_enabled()):  # GradScaler skips inf gradients itself
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.model)
            return
        if all(finite):
            log.warning("non-finite gradient norm; optimizer step skipped")
        if self.scaler.is_enabled() and self.clip_norm > 0:
            self.scaler.update()  # unscale_ ran: the scaler backs off and is ready for the next step
        self.optimizer.zero_grad(set_to_none=True)

    def _read_flags(self, flags: list[torch.Tensor], norm: torch.Tensor | None) -> tuple[list[bool], bool]:
        """The window's loss flags and the norm's finiteness on the host: the step's one device sync. Under DDP
        the flags are the minimum over ranks, so every rank skips together."""
        values = torch.stack(flags).float()
        if norm is not None:
            values = torch.cat([values, torch.isfinite(norm).float().view(1)])
        if self.distributed:
            values = values.to(self.device) if self.device.type == "cuda" else values.cpu()
            torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MIN)
        host = [v > 0 for v in values.tolist()]
        return (host[:-1], host[-1]) if norm is not None else (host, True)

    def _account(self, epoch: int, window: list, finite: list[bool], stats: "_EpochStats") -> None:
        """Add the window's finite losses to the epoch's sums; warn of each non-finite one and stop after
        ``max_nonfinite_steps`` in a row."""
        for (i, _, items), ok in zip(window, finite):
            if ok:
                stats.bad_in_row = 0
                stats.n_good += 1
                values = _items(items)
                stats.loss_sums += torch.tensor([values.get(k, 0.0) for k in LOSS_KEYS], dtype=torch.float64)
                continue
            stats.bad_in_row += 1
            log.warning("epoch %d iteration %d: non-finite loss (%s), step skipped", epoch + 1, i + 1,
                        ", ".join(f"{k} {v:.4g}" for k, v in _items(items).items()))
            if stats.bad_in_row >= self.max_nonfinite:
                raise TrainingError(
                    f"{stats.bad_in_row} non-finite losses in a row at epoch {epoch + 1}; stopped "
                    f"(last good checkpoint: {self.weights_dir / 'last.pt'}); lower optimizer.lr or check the data"
                )

    def _show_progress(self, bar, stats: "_EpochStats") -> None:
        bar.set_postfix_str(" ".join(f"{k} {v:.3f}" for k, v in zip(LOSS_KEYS, stats.mean().tolist()))
                            + f" lr {self.optimizer.param_groups[0]['lr']:.2e}"
                            + f" {stats.images_seen * self.world_size / max(time.time() - stats.t_start, 1e-9):.1f} img/s")

    def _sync_buffers(self) -> None:
        """BN running stats drift apart between ranks (each sees its own last batch): take rank 0's."""
        if not self.distributed:
            return
        modules = [self.model] + ([self.ema.module] if self.ema is not None else [])
        for m in modules:
            for b in m.buffers():
                torch.distributed.broadcast(b, 0)

    # ------------------------------------------------------------------ evaluation, checkpoints, logs
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self) -> dict:
        from ghostdet.eval import COCOEvaluator, evaluate_model

        val = self.cfg.get("val") or {}
        if self._evaluator is None:  # built once: indexing the ground truth is not free
            self._evaluator = COCOEvaluator(self.val_set.coco_gt())
        # a deploy-form copy (re-parameterized, BatchNorm folded): what eval, detect and export run, and faster
        model = deploy_form(copy.deepcopy(self.eval_model())).use_channels_last(self.channels_last)
        # the epoch line carries the figures; the evaluator's 12-line COCO summary each epoch would drown it
        eval_log = logging.getLogger("ghostdet.eval")
        level = eval_log.level
        eval_log.setLevel(logging.WARNING)
        try:
            result = evaluate_model(model, self.val_loader, self._evaluator, self.category_ids, names=self.names,
                                    conf=float(val.get("conf", 0.001)), iou=float(val.get("iou", 0.7)),
                                    max_det=int(val.get("max_det", 300)), device=self.device,
                                    progress=bool(self.cfg.get("progress", True)))
        finally:
            eval_log.setLevel(level)
        stats = self.last_eval_stats = result.metrics
        return {
            "mAP50-95": float(stats["AP"]), "mAP50": float(stats["AP50"]), "mAP75": float(stats.get("AP75", float("nan"))),
            **{k: float(stats[k]) for k in ("APs", "APm", "APl", "AR100") if k in stats},
        }

    def checkpoint(self, epoch_done: int, interrupted: bool = False) -> dict:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "ema_updates": self.ema.updates if self.ema is not None else 0,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch_done,
            "interrupted": interrupted,
            "rng": rng_state(getattr(self.train_loader, "generator", None)),
            "config": _to_container(self.cfg),
            "names": list(self.names),
            "category_ids": self.category_ids,
            "metrics": dict(self.last_metrics),
            "best_fitness": self.best_fitness,
            "best_metrics": dict(self.best_metrics),
            "model_spec": self.model_spec,  # registered names + plain values: how the model is rebuilt
            "ghostdet_version": ghostdet.__version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    def save(self, path: Path, epoch_done: int, interrupted: bool = False) -> Path:
        return save_checkpoint(self.checkpoint(epoch_done, interrupted), path)

    def _end_epoch(self, epoch: int, losses: dict, metrics: dict | None, epoch_t0: float) -> None:
        """Best/last bookkeeping, checkpoints, the results row and the log line. The epoch's time counts the
        checkpoint writes too (as ultralytics' does), so the two tools' epoch times compare like for like."""
        done = epoch + 1
        if metrics is not None:
            self.last_metrics = {**metrics, "epoch": done}  # a checkpoint's "metrics" say which epoch they are from
        improved = False
        if metrics is not None and (self.best_fitness is None or metrics["mAP50-95"] > self.best_fitness):
            self.best_fitness, self.best_metrics = metrics["mAP50-95"], {**metrics, "epoch": done}
            improved = True
        ckpt = self.checkpoint(done)
        save_checkpoint(ckpt, self.weights_dir / "last.pt")
        self.epochs_done, self._in_epoch = done, False
        if improved:  # best.pt: the best *evaluated* weights only (its best_metrics["epoch"] == its "epoch")
            save_checkpoint(ckpt, self.weights_dir / "best.pt")
        seconds = time.time() - epoch_t0
        self.logger.log_epoch(done, losses, self.optimizer.param_groups[0]["lr"], metrics, seconds)
        msg = f"epoch {done}/{self.epochs}: " + " ".join(f"{k} {v:.4f}" for k, v in losses.items())
        if metrics is not None:
            msg += f" | mAP50 {metrics['mAP50']:.4f} mAP50-95 {metrics['mAP50-95']:.4f}" + (" (best)" if improved else "")
        log.info("%s | %.1fs", msg, seconds)

    def _summary(self, seconds: float) -> None:
        best = self.best_metrics
        rows = [("epochs", f"{self.epochs}"), ("time", f"{seconds / 60:.1f} min")]
        if best:
            rows += [("best epoch", str(best.get("epoch"))), ("mAP50", f"{best['mAP50']:.4f}"),
                     ("mAP50-95", f"{best['mAP50-95']:.4f}")]
        last = self.last_metrics
        if last:
            rows += [("final mAP50", f"{last['mAP50']:.4f}"), ("final mAP50-95", f"{last['mAP50-95']:.4f}")]
        rows += [("best.pt", str(self.weights_dir / "best.pt")), ("last.pt", str(self.weights_dir / "last.pt")),
                 ("results", str(self.run_dir / "results.csv"))]
        log.info("training finished\n%s", text_table(None, rows, align="ll", rule=True))
        if self.last_eval_stats is not None and self.last_eval_stats.get("per_class"):
            from ghostdet.eval.report import per_class_table

            log.info("per-class AP of the last evaluation (EMA weights):\n%s",
                     per_class_table(self.last_eval_stats, self._evaluator.coco_gt))


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


def _items(items: dict) -> dict:
    """The loss's logging dict as floats (reading a tensor value waits for the device)."""
    return {k: float(v) for k, v in items.items()}


def train(cfg: DictConfig, run_dir: str | Path, resume_overrides: dict | None = None) -> dict:
    """Build a :class:`Trainer` and run it; returns the best validation metrics (empty on ranks > 0)."""
    trainer = Trainer(cfg, run_dir, resume_overrides=resume_overrides)
    try:
        return trainer.fit()
    finally:
        dist_utils.cleanup()


__all__ = ["Trainer", "TrainingError", "train"]
