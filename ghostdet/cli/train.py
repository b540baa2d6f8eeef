"""Train a Ghost-YOLO detector: `ghostdet train model=ghost_yolo` or `python tools/train.py model=ghost_yolo` (Hydra;
see configs/train.yaml).

Examples:
    python tools/train.py                                   # shapes demo on CPU, a few minutes
    python tools/train.py data=coco128 epochs=50 imgsz=320
    python tools/train.py resume=runs/train/2026-11-22/08-00-00/weights/last.pt
    torchrun --nproc_per_node 2 tools/train.py data=coco device=cuda   # DDP, batch is per process
"""
from __future__ import annotations

import logging
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from ghostdet.cli.common import check_checkpoints_before_hydra, config_dir, run_tool, setup_logging
from ghostdet.engine import train
from ghostdet.engine.distributed import env_world
from ghostdet.engine.resume import command_line_overrides, hydra_output_subdir, train_run_dir
from ghostdet.models import import_plugins

# Hydra's run dir and config subdir (configs/train.yaml): a resumed run continues in its own (ghostdet.engine.resume)
OmegaConf.register_new_resolver("ghostdet_train_dir", train_run_dir, replace=True)
OmegaConf.register_new_resolver("ghostdet_hydra_subdir", hydra_output_subdir, replace=True)


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@run_tool
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    setup_logging()
    rank = env_world()[0]
    if rank > 0:
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = HydraConfig.get().runtime.output_dir
    if rank == 0:
        handler = logging.FileHandler(os.path.join(run_dir, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    import_plugins(cfg.get("plugins"))  # the user's own modules (never names read from a checkpoint)
    metrics = train(cfg, run_dir, resume_overrides=command_line_overrides(cfg, HydraConfig.get().overrides.task))
    if rank == 0 and metrics:
        print(f"best mAP50 {metrics['mAP50']:.4f}  mAP50-95 {metrics['mAP50-95']:.4f}  ({run_dir})")


def main() -> None:
    """``ghostdet train`` / ``python tools/train.py``: the arguments are Hydra overrides read from ``sys.argv``."""
    check_checkpoints_before_hydra(("resume",))  # a refused file leaves no run dir behind
    hydra_main()


if __name__ == "__main__":
    main()
