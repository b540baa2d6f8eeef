"""Training engine: trainer (trainer.py), the checkpointed training state (state.py), resume (resume.py), run dirs
and the lock of a live run (run_dir.py), Ctrl-C (interrupt.py), mixed precision (amp.py), EMA (ema.py), optimizer
groups and LR schedule (optim.py), evaluation during training (validation.py), results.csv/plots/TensorBoard
(run_log.py), seeding and RNG state (seeding.py), distributed helpers (distributed.py)."""
from ghostdet.engine.ema import ModelEMA, unwrap_model
from ghostdet.engine.optim import WarmupDecayLR, build_optimizer, param_groups
from ghostdet.engine.resume import RESUME_OVERRIDABLE, find_resume_checkpoint, is_no_resume, run_dir_of_checkpoint
from ghostdet.engine.seeding import rng_state, seed_everything, set_rng_state
from ghostdet.engine.trainer import Trainer, TrainingError, train
from ghostdet.utils.device import select_device

__all__ = [
    "ModelEMA", "unwrap_model", "WarmupDecayLR", "build_optimizer", "param_groups", "rng_state", "seed_everything",
    "select_device", "set_rng_state", "RESUME_OVERRIDABLE", "Trainer", "TrainingError", "find_resume_checkpoint",
    "is_no_resume", "run_dir_of_checkpoint", "train",
]
