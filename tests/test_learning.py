"""Does the trainer actually learn? The real Trainer on real photos (the raccoon set: 160 train / 40 val, one class),
and the default config's short run on the generated shapes (issue 23 §1, at the end).

The other training tests check outputs, resume and plumbing on a few generated images; none of them would notice a
trainer that runs but does not learn. Here (measured with the test's former recipe), deliberately broken
(monkeypatched once each), an LR of 0, a scheduler that is never stepped, conv weights left out of the optimizer's
groups, an EMA that never updates and an assigner with zeroed targets all end at or below the untrained model and
fail the test. Milder faults did NOT fail it at that budget: one optimizer step per epoch instead of every 2 batches
(0.58), gradients never zeroed (0.56), affine-warped images with unmoved boxes (0.62). Figures: docs/training.md,
"Learning real data".

Why mAP50 has to clear 0.50 and not merely be "above zero": on raccoon a model *before any training* already scores
mAP50 0.42 (its initial boxes span the whole letterboxed image, and most raccoons fill most of their photo), and
a trainer whose weights never move keeps that. Training first destroys this accidental prior, then learns real
boxes. With the shipped recipe (issue 25: the test sets the run's size, never the recipe) the last evaluation scored
mAP50 0.694 / 0.631 / 0.625 after 30 epochs (seeds 0 / 1 / 2); after 20 epochs it was 0.649 / 0.487 / 0.403, too
close to the untrained model, hence 30. The threshold sits 0.12 below the lowest run and 0.08 above the untrained
model; no timing is asserted (a busy machine only makes it slower).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ghostdet.engine import train
from ghostdet.utils.checkpoint import load_checkpoint

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

EPOCHS = 30
# untrained (0 epochs): mAP50 0.42; the shipped recipe after EPOCHS: 0.63-0.69 (seeds 0, 1, 2); docs/training.md
MIN_MAP50 = 0.50


def learning_overrides(raccoon: Path, seed: int = 0) -> list[str]:
    """About 2.5 minutes on 2 cores: the shipped recipe (configs/train.yaml as users get it: AdamW at its LR, warm-up
    with the bias-LR ramp, cosine decay, mosaic closed for the last 3 epochs, affine/flip/HSV, EMA, default workers)
    on a half-width Ghost-YOLO at 192 px, 30 epochs of 20 iterations (batch 8) with gradients accumulated over 2 batches
    (nominal batch 16), so accumulation, parameter groups, the schedule, EMA, augmentation and the assigner are all on
    the path being tested. Only the size of the run is set here, never the recipe (issue 25)."""
    values = {
        "data": "voc", "data.root": raccoon, "data.cache_images": True,
        "model.backbone.width": 0.5, "model.neck_channels": 64,
        "imgsz": 192, "batch": 8, "nbs": 16, "epochs": EPOCHS, "eval_interval": 5,
        "device": "cpu", "seed": seed, "progress": False, "tensorboard": False,
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.mark.slow
def test_trainer_learns_raccoon(raccoon, tmp_path, one_thread):  # loader workers take the other core
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=learning_overrides(raccoon))
    best = train(cfg, tmp_path / "run")

    ckpt = load_checkpoint(tmp_path / "run" / "weights" / "best.pt")
    last = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert last["epoch"] == EPOCHS and last["metrics"]["epoch"] == EPOCHS  # the last epoch was evaluated
    assert ckpt["best_metrics"]["mAP50"] == pytest.approx(best["mAP50"])
    final = last["metrics"]["mAP50"]
    # best.pt is the best mAP50-95 epoch; the last evaluation may score a higher mAP50: either one counts
    assert max(best["mAP50"], final) >= MIN_MAP50, (
        f"val mAP50 {best['mAP50']:.3f} at the best epoch ({best['epoch']}), {final:.3f} at the last: below "
        f"{MIN_MAP50} after {EPOCHS} epochs (untrained: 0.42; a correct trainer: 0.63-0.69): something in the "
        "learning path (optimizer groups, LR schedule, accumulation, EMA, augmentation boxes, assigner) is broken")


# issue 23 §1: the default config (close_mosaic: 3) for 3 epochs on shapes. Measured val mAP50 after epochs 1/2/3:
# 0.060 / 0.202 / 0.298 (seed 0) and 0.032 / 0.163 / 0.251 (seed 1); with the statistics of the untrained BatchNorm
# frozen (mosaic closed at epoch 0, close_mosaic_bn: freeze) it was 0.001 / 0.0004 / 0.005 (imgsz 160, the issue's
# A/B). The threshold sits 0.10 below the lowest correct run and 30x above the frozen one.
SHORT_EPOCHS = 3
MIN_SHORT_MAP50 = 0.15


@pytest.mark.slow
def test_default_config_learns_shapes_in_three_epochs(tmp_path, one_thread):
    """A short first run (what users try first) learns: mosaic closes at once, and BatchNorm statistics with no
    mosaic epoch behind them keep updating. About 2 minutes on an idle 2-core CPU."""
    overrides = [f"epochs={SHORT_EPOCHS}", f"data.root={tmp_path / 'shapes'}", "progress=false", "tensorboard=false"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    assert int(cfg.close_mosaic) >= SHORT_EPOCHS and cfg.close_mosaic_bn == "freeze"  # the defaults under test
    best = train(cfg, tmp_path / "run")
    last = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert last["mosaic_epochs"] == 0
    assert best["mAP50"] >= MIN_SHORT_MAP50, (
        f"val mAP50 {best['mAP50']:.3f} after {SHORT_EPOCHS} epochs of the default config on shapes: below "
        f"{MIN_SHORT_MAP50} (a correct trainer: 0.25-0.30; frozen untrained BatchNorm statistics: ~0.005)")
