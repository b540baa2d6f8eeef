"""``weights=PATH``: a new run that starts from an earlier run's weights (matched by name and shape)."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from ghostdet.cli.train import train_run_dir
from ghostdet.engine import Trainer
from ghostdet.utils.checkpoint import load_checkpoint
from ghostdet.utils.errors import ConfigError
from helpers import compose_train, jpeg_bytes, tiny_overrides


def two_class_yolo_folder(root: Path) -> Path:
    """A YOLO folder with 2 classes (the shapes data has 5): 8 train and 4 val images, one or two boxes each."""
    for split, n in (("train", 8), ("val", 4)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(n):
            seed = i + (100 if split == "val" else 0)
            (root / "images" / split / f"{i}.jpg").write_bytes(jpeg_bytes(96, 112, seed=seed))
            lines = [f"{i % 2} 0.4 0.45 0.3 0.35"] + ([f"{(i + 1) % 2} 0.7 0.7 0.2 0.25"] if i % 3 == 0 else [])
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def yolo_overrides(shapes_root: Path, yolo_root: Path, **extra) -> list[str]:
    shapes_only = ("data=", "data.num_train=", "data.num_val=", "data.image_size=")
    base = [o for o in tiny_overrides(shapes_root, epochs=1) if not o.startswith(shapes_only)]
    return base + ["data=yolo", f"data.root={yolo_root}", "data.cache=false", *(f"{k}={v}" for k, v in extra.items())]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finetune")
    Trainer(compose_train(tiny_overrides(tmp / "shapes", epochs=1)), tmp / "first").fit()
    return tmp / "first" / "weights" / "last.pt"


@pytest.mark.slow
def test_weights_start_a_new_run_from_the_checkpoint_backbone(first_run, tmp_path, caplog):
    yolo_root = two_class_yolo_folder(tmp_path / "cats")
    overrides = yolo_overrides(first_run.parents[2] / "shapes", yolo_root, weights=first_run)
    with caplog.at_level(logging.INFO, logger="ghostdet"):
        trainer = Trainer(compose_train(overrides), tmp_path / "second")
    reports = [r.getMessage() for r in caplog.records if r.getMessage().startswith("weights: loaded")]
    assert len(reports) == 1 and "\n" not in reports[0], reports
    assert "class branch" in reports[0] and "5 -> 2 classes" in reports[0], reports[0]
    ckpt = load_checkpoint(first_run)
    source = ckpt["ema"]  # the EMA weights are what a run deploys and what fine-tuning takes
    model, ema = trainer.model.state_dict(), trainer.ema.module.state_dict()
    backbone = [k for k in model if k.startswith("backbone.")]
    assert backbone
    for key in backbone:
        assert torch.equal(model[key].cpu(), source[key].float()), key
        assert torch.equal(ema[key].cpu(), source[key].float()), key  # the EMA starts from the loaded weights
    cls = [k for k in model if k.startswith("head.cls_preds.") and k.endswith(".bias")]
    assert cls and all(model[k].shape[0] == 2 and source[k].shape[0] == 5 for k in cls)
    assert trainer.start_epoch == 0 and trainer.optimizer.state_dict()["state"] == {}  # a new optimizer and schedule
    trainer.fit()
    second = load_checkpoint(tmp_path / "second" / "weights" / "last.pt")
    assert second["names"] == ["cat", "dog"] and second["epoch"] == 1


def test_weights_and_resume_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="give one of them"):
        train_run_dir(["weights=a.pt", "resume=b.pt"])
    cfg = compose_train(tiny_overrides(tmp_path / "shapes", weights="a.pt", resume="b.pt"))
    with pytest.raises(ConfigError, match="give one of them") as e:
        Trainer(cfg, tmp_path / "run")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()

