"""COCO evaluation: the evaluator, model-output conversion, the shared evaluation loop, tables and plots."""
from ghostdet.eval.coco_evaluator import COCOEvaluator, load_coco_gt, resolve_category_ids
from ghostdet.eval.convert import predictions_to_coco
from ghostdet.eval.loop import EvalResult, evaluate_model
from ghostdet.eval.report import STAT_KEYS, format_summary, per_class_table, plot_pr_curve, save_eval_outputs

__all__ = [
    "STAT_KEYS",
    "COCOEvaluator",
    "EvalResult",
    "evaluate_model",
    "format_summary",
    "load_coco_gt",
    "per_class_table",
    "plot_pr_curve",
    "predictions_to_coco",
    "resolve_category_ids",
    "save_eval_outputs",
]
