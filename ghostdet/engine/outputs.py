"""What a run starts from and leaves besides results.csv: fine-tuning weights (``weights=``), ``labels.jpg`` and the
slim ``best.pt`` written at the end (``last.pt`` keeps everything for ``resume=``)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch.nn as nn

from ghostdet.utils.errors import ConfigError

log = logging.getLogger(__name__)

_NONE_STRINGS = ("", "null", "none", "false")


def given(value) -> bool:
    """Whether an optional path key (``weights=``) is set: not None/False/"", "null", "none", "false"."""
    return not (value is None or value is False or str(value).strip().lower() in _NONE_STRINGS)


def check_weights_and_resume(cfg) -> None:
    """``weights=`` starts a new run, ``resume=`` continues one: both at once is a mistake. ``cfg``: the train
    config or the command line's ``{key: value}``."""
    from ghostdet.engine.resume import is_no_resume

    if given(cfg.get("weights")) and not is_no_resume(cfg.get("resume")):
        raise ConfigError(f"weights={cfg.get('weights')} and resume={cfg.get('resume')}: weights= starts a new run "
                          "from a checkpoint's weights, resume= continues a run; give one of them")


AUTO_BATCH_CPU = 16  # configs/train.yaml's default


def resolve_auto_batch(cfg, device) -> None:
    """``batch=-1`` / ``batch=auto``: on the CPU the default batch (memory is rarely what limits it there), said in
    one log line; on CUDA not measured yet (a one-line ConfigError asks for a number). Sets ``cfg.batch``."""
    if str(cfg.get("batch")).strip().lower() not in ("-1", "auto"):
        return
    if device.type != "cpu":
        raise ConfigError(f"batch={cfg.batch} on {device}: the largest batch that fits is not measured yet; "
                          "give batch=N (images per process)")
    cfg.batch = AUTO_BATCH_CPU
    log.info("batch=auto on the CPU: batch %d (the default; CPU memory rarely limits the batch)", AUTO_BATCH_CPU)


def load_start_weights(model: nn.Module, path) -> None:
    """``weights=PATH``: the checkpoint's layers that fit ``model`` by name and shape (models/transfer.py)."""
    from ghostdet.models.transfer import load_matching_weights

    log.info("weights: %s", load_matching_weights(model, path))


def plot_labels_jpg(dataset, run_dir: Path, names) -> None:
    """``labels.jpg``: class counts, box centres and sizes of the training split (a failed plot never stops a run)."""
    try:
        from ghostdet.eval.plots import plot_labels

        plot_labels(dataset, Path(run_dir) / "labels.jpg", names=names)
    except Exception as e:  # noqa: BLE001 - a plot is never worth a training run
        log.warning("labels.jpg not written: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)


def slim_best(weights_dir: Path) -> None:
    """Strip ``best.pt`` to its EMA weights, spec, names and metrics (utils/slim.py), in place."""
    from ghostdet.utils.slim import slim_checkpoint

    best = Path(weights_dir) / "best.pt"
    if best.is_file():
        slim_checkpoint(best)
        log.info("best.pt slimmed to the EMA weights for deployment (%.1f MB); last.pt keeps the full state for "
                 "resume=", best.stat().st_size / 1e6)


__all__ = ["check_weights_and_resume", "given", "load_start_weights", "plot_labels_jpg", "resolve_auto_batch",
           "slim_best"]
