"""Evaluation during training: COCO mAP, and precision/recall/F1 at ``val.pr_conf`` (eval/pr_metrics.py), of a
deploy-form copy of the (EMA) weights on the val split; the P/R/F1/PR curves, confusion matrices and a val batch
with predictions next to its ground truth as images in the run dir."""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
import torch.nn as nn

from ghostdet.models.reparam import deploy_form

log = logging.getLogger(__name__)


class EpochValidator:
    """``validator(model)`` → ``{"mAP50-95", "mAP50", "mAP75", "APs", ..., "precision", "recall", "F1"}`` on
    ``val_loader``; ``stats``: the last evaluation's full COCO figures (per class included), ``pr_result``: its
    ``PRResult``. The ground truth is indexed once, at the first call. With ``out_dir``, each evaluation writes
    ``val_batch0_pred.jpg`` there and :meth:`plot` the curves and confusion matrices of the last one."""

    def __init__(self, val_set, val_loader, val_cfg: dict, names: list[str], category_ids, device: torch.device,
                 channels_last: bool = True, progress: bool = True, out_dir=None):
        self.val_set, self.val_loader, self.val_cfg = val_set, val_loader, val_cfg or {}
        self.names, self.category_ids, self.device = names, category_ids, device
        self.channels_last, self.progress = channels_last, progress
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.evaluator = None
        self.stats: dict | None = None
        self.pr_result = None
        self._plotted = None  # the PRResult the curves were last drawn for

    def __call__(self, model: nn.Module) -> dict:
        from ghostdet.eval import COCOEvaluator, evaluate_model
        from ghostdet.eval.plots import plot_val_batch
        from ghostdet.eval.pr_metrics import PRMetrics

        if self.evaluator is None:
            self.evaluator = COCOEvaluator(self.val_set.coco_gt())
        # a deploy-form copy (re-parameterized, BatchNorm folded): what eval, detect and export run, and faster
        model = deploy_form(copy.deepcopy(model)).use_channels_last(self.channels_last)
        # the epoch line carries the figures; the evaluator's 12-line COCO summary each epoch would drown it
        eval_log = logging.getLogger("ghostdet.eval")
        level = eval_log.level
        eval_log.setLevel(logging.WARNING)
        val = self.val_cfg
        pr, first = PRMetrics(len(self.names), self.names), []

        def on_batch(images, targets, preds, extra):
            pr.add_batch(preds, targets, extra[0] if extra else None)
            if not first:  # val_batch0_pred.jpg
                first.append((images[:8].cpu(), targets, [{k: v.cpu() for k, v in p.items()} for p in preds[:8]]))

        try:
            result = evaluate_model(model, self.val_loader, self.evaluator, self.category_ids, names=self.names,
                                    conf=float(val.get("conf", 0.001)), iou=float(val.get("iou", 0.7)),
                                    max_det=int(val.get("max_det", 300)), device=self.device, progress=self.progress,
                                    on_batch=on_batch)
        finally:
            eval_log.setLevel(level)
        stats = self.stats = result.metrics
        conf = float(val.get("pr_conf", 0.25))
        self.pr_result = pr.compute(conf=conf)
        if first and self.out_dir is not None:
            _plot("val_batch0_pred.jpg", plot_val_batch, *first[0], self.names, self.out_dir / "val_batch0_pred.jpg",
                  conf=conf)
        return {
            "mAP50-95": float(stats["AP"]), "mAP50": float(stats["AP50"]), "mAP75": float(stats.get("AP75", float("nan"))),
            **{k: float(stats[k]) for k in ("APs", "APm", "APl", "AR100") if k in stats},
            **{k: float(v) for k, v in self.pr_result.summary().items()},
        }

    def plot(self) -> None:
        """P/R/F1/PR curves and the confusion matrices (counts, normalised) of the last evaluation, into
        ``out_dir`` (each once per evaluation; the run logger calls this at each plot refresh and at the end)."""
        if self.out_dir is None or self.pr_result is None or self._plotted is self.pr_result:
            return
        from ghostdet.eval.plots import plot_confusion_matrices, plot_pr_curves

        self._plotted = self.pr_result
        _plot("PR curves", plot_pr_curves, self.pr_result, self.out_dir)
        _plot("confusion matrices", plot_confusion_matrices, self.pr_result, self.out_dir)

    def log_per_class(self) -> None:
        if self.stats is not None and self.stats.get("per_class"):
            from ghostdet.eval.report import per_class_table

            log.info("per-class AP of the last evaluation (EMA weights):\n%s",
                     per_class_table(self.stats, self.evaluator.coco_gt))


def _plot(what: str, fn, *args, **kwargs) -> None:
    """A plot of the run; one that fails is a warning, never the end of a training run."""
    try:
        fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001
        log.warning("%s not drawn: %s", what, str(e).splitlines()[0] if str(e) else type(e).__name__)


__all__ = ["EpochValidator"]
