"""Train a Ghost-YOLO detector: `python tools/train.py model=ghost_yolo` (Hydra; see configs/train.yaml).

Examples:
    python tools/train.py                                   # shapes demo on CPU, a few minutes
    python tools/train.py data=coco128 epochs=50 imgsz=320
    python tools/train.py resume=runs/train/2026-11-22/08-00-00/weights/last.pt
    torchrun --nproc_per_node 2 tools/train.py data=coco device=cuda   # DDP, batch is per process
"""
from __future__ import annotations

import logging
import os
import tempfile

import hydra
from omegaconf import DictConfig, OmegaConf

from _common import check_checkpoints_before_hydra, run_tool, setup_logging  # noqa: I001 (puts the project on sys.path)
from ghostdet.models import import_plugins
from ghostdet.engine import RESUME_OVERRIDABLE, find_resume_checkpoint, is_no_resume, run_dir_of_checkpoint, train


def _rank() -> int:
    return int(os.environ.get("RANK", 0))


def _train_dir(resume, default: str) -> str:
    """Hydra's run dir: a resumed run continues in its own; ranks > 0 of a DDP run write nothing and get a scratch dir."""
    if _rank() > 0:
        return os.path.join(tempfile.gettempdir(), f"ghostdet-rank{_rank()}-{os.getpid()}")
    if is_no_resume(resume):
        return default
    try:
        return str(run_dir_of_checkpoint(find_resume_checkpoint(resume)))
    except Exception:  # the trainer reports a bad resume path with a proper message
        return default


def _hydra_subdir(resume):
    if _rank() > 0:
        return None
    # keep the original run's .hydra/ config; record the resume command beside it
    return ".hydra" if is_no_resume(resume) else ".hydra/resume"


OmegaConf.register_new_resolver("ghostdet_train_dir", _train_dir, replace=True)
OmegaConf.register_new_resolver("ghostdet_hydra_subdir", _hydra_subdir, replace=True)


def _resume_overrides(cfg: DictConfig) -> dict:
    """The top-level keys given on the command line (a resumed run may change some of them)."""
    from hydra.core.hydra_config import HydraConfig

    keys = {}
    for item in HydraConfig.get().overrides.task:
        key = item.split("=", 1)[0].lstrip("+~")
        if key != "resume" and "=" in item:
            keys[key] = cfg[key] if key in RESUME_OVERRIDABLE else item.split("=", 1)[1]
    return keys


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
@run_tool
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    setup_logging()
    if _rank() > 0:
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = HydraConfig.get().runtime.output_dir
    if _rank() == 0:
        handler = logging.FileHandler(os.path.join(run_dir, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    import_plugins(cfg.get("plugins"))  # the user's own modules (never names read from a checkpoint)
    metrics = train(cfg, run_dir, resume_overrides=_resume_overrides(cfg))
    if _rank() == 0 and metrics:
        print(f"best mAP50 {metrics['mAP50']:.4f}  mAP50-95 {metrics['mAP50-95']:.4f}  ({run_dir})")


if __name__ == "__main__":
    check_checkpoints_before_hydra(("resume",))  # a refused file leaves no run dir behind
    main()
