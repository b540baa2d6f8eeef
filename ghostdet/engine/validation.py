"""Evaluation during training: COCO mAP of a deploy-form copy of the (EMA) weights on the val split."""
from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn

from ghostdet.models.reparam import deploy_form

log = logging.getLogger(__name__)


class EpochValidator:
    """``validator(model)`` → ``{"mAP50-95", "mAP50", "mAP75", "APs", ...}`` on ``val_loader``; ``stats``: the
    last evaluation's full figures (per class included). The ground truth is indexed once, at the first call."""

    def __init__(self, val_set, val_loader, val_cfg: dict, names: list[str], category_ids, device: torch.device,
                 channels_last: bool = True, progress: bool = True):
        self.val_set, self.val_loader, self.val_cfg = val_set, val_loader, val_cfg or {}
        self.names, self.category_ids, self.device = names, category_ids, device
        self.channels_last, self.progress = channels_last, progress
        self.evaluator = None
        self.stats: dict | None = None

    def __call__(self, model: nn.Module) -> dict:
        from ghostdet.eval import COCOEvaluator, evaluate_model

        if self.evaluator is None:
            self.evaluator = COCOEvaluator(self.val_set.coco_gt())
        # a deploy-form copy (re-parameterized, BatchNorm folded): what eval, detect and export run, and faster
        model = deploy_form(copy.deepcopy(model)).use_channels_last(self.channels_last)
        # the epoch line carries the figures; the evaluator's 12-line COCO summary each epoch would drown it
        eval_log = logging.getLogger("ghostdet.eval")
        level = eval_log.level
        eval_log.setLevel(logging.WARNING)
        val = self.val_cfg
        try:
            result = evaluate_model(model, self.val_loader, self.evaluator, self.category_ids, names=self.names,
                                    conf=float(val.get("conf", 0.001)), iou=float(val.get("iou", 0.7)),
                                    max_det=int(val.get("max_det", 300)), device=self.device, progress=self.progress)
        finally:
            eval_log.setLevel(level)
        stats = self.stats = result.metrics
        return {
            "mAP50-95": float(stats["AP"]), "mAP50": float(stats["AP50"]), "mAP75": float(stats.get("AP75", float("nan"))),
            **{k: float(stats[k]) for k in ("APs", "APm", "APl", "AR100") if k in stats},
        }

    def log_per_class(self) -> None:
        if self.stats is not None and self.stats.get("per_class"):
            from ghostdet.eval.report import per_class_table

            log.info("per-class AP of the last evaluation (EMA weights):\n%s",
                     per_class_table(self.stats, self.evaluator.coco_gt))


__all__ = ["EpochValidator"]
