"""Training engine: trainer, EMA, optimizer groups and LR schedule, run logging, distributed helpers."""
from ghostdet.engine.ema import ModelEMA, unwrap_model
from ghostdet.engine.optim import WarmupDecayLR, build_optimizer, param_groups
from ghostdet.engine.runtime import rng_state, seed_everything, set_rng_state
from ghostdet.engine.trainer import (RESUME_OVERRIDABLE, Trainer, TrainingError, find_resume_checkpoint,
                                     is_no_resume, run_dir_of_checkpoint, train)
from ghostdet.utils.device import select_device

__all__ = [
    "ModelEMA", "unwrap_model", "WarmupDecayLR", "build_optimizer", "param_groups", "rng_state", "seed_everything",
    "select_device", "set_rng_state", "RESUME_OVERRIDABLE", "Trainer", "TrainingError", "find_resume_checkpoint",
    "is_no_resume", "run_dir_of_checkpoint", "train",
]
