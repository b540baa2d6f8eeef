"""What a run writes besides last.pt: P/R/F1 columns, the val plots, labels.jpg, a slim best.pt; ``patience=``."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import pytest

from ghostdet.cli.train import train_run_dir
from ghostdet.engine import Trainer
from ghostdet.engine.early_stop import EarlyStopping
from ghostdet.engine.run_log import CSV_COLUMNS
from ghostdet.engine.validation import EpochValidator
from ghostdet.utils.checkpoint import load_checkpoint
from ghostdet.utils.errors import ConfigError
from helpers import compose_train, tiny_overrides

PLOTS = ("labels.jpg", "val_batch0_pred.jpg", "P_curve.png", "R_curve.png", "F1_curve.png", "PR_curve.png",
         "confusion_matrix.png", "confusion_matrix_normalized.png", "losses.png", "mAP.png")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("outputs")
    Trainer(compose_train(tiny_overrides(tmp / "shapes")), tmp / "run").fit()
    return tmp / "run"


@pytest.mark.slow
def test_results_csv_has_precision_recall_f1(run_dir):
    assert {"precision", "recall", "F1"} <= set(CSV_COLUMNS)
    with open(run_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for row in rows:
        for key in ("precision", "recall", "F1"):
            assert 0.0 <= float(row[key]) <= 1.0, (key, row[key])
    ckpt = load_checkpoint(run_dir / "weights" / "last.pt")
    assert {"precision", "recall", "F1"} <= ckpt["metrics"].keys()


@pytest.mark.slow
def test_run_writes_the_plots(run_dir):
    for name in PLOTS:
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 1000, name


@pytest.mark.slow
def test_best_pt_is_slim_and_deployable(run_dir):
    from ghostdet.inference import Detector

    best, last = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    assert best.stat().st_size < last.stat().st_size
    slim, full = load_checkpoint(best), load_checkpoint(last)
    assert "optimizer" not in slim and "optimizer" in full and full.get("ema") is not None
    assert slim["names"] == full["names"]
    detector = Detector.from_checkpoint(best)
    assert detector is not None


def test_early_stopping_counts_evaluations_without_improvement():
    stopper = EarlyStopping(patience=2)
    assert [stopper.step(v) for v in (0.1, 0.2, 0.2, 0.15)] == [False, False, False, True]
    assert "patience=2" in stopper.reason(best_epoch=2) and "\n" not in stopper.reason(2)
    again = EarlyStopping(patience=2)
    again.load_state_dict(stopper.state_dict())
    assert again.bad_evaluations == 2 and again.best_fitness == 0.2
    off = EarlyStopping(patience=0)
    assert not any(off.step(0.0) for _ in range(50))


@pytest.mark.slow
def test_patience_stops_a_run_that_does_not_improve(tmp_path, monkeypatch, caplog):
    fixed = {"mAP50-95": 0.1, "mAP50": 0.2, "mAP75": 0.1}
    monkeypatch.setattr(EpochValidator, "__call__", lambda self, model: dict(fixed))
    cfg = compose_train(tiny_overrides(tmp_path / "shapes", epochs=4, patience=1, close_mosaic=0))
    with caplog.at_level(logging.INFO, logger="ghostdet"):
        Trainer(cfg, tmp_path / "run").fit()
    assert load_checkpoint(tmp_path / "run" / "weights" / "last.pt")["epoch"] == 2
    assert load_checkpoint(tmp_path / "run" / "weights" / "best.pt")["epoch"] == 1
    stops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("early stop")]
    assert len(stops) == 1 and "patience=1" in stops[0] and "epoch 1" in stops[0], stops


def test_project_and_name_choose_a_numbered_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dirs = [train_run_dir(["project=exps", "name=cats"]).path for _ in range(3)]
    assert dirs == [Path("exps/cats"), Path("exps/cats2"), Path("exps/cats3")]
    assert train_run_dir(["name=dogs"]).path == Path("runs/train/dogs")
    run = train_run_dir(["project=exps"])
    assert run.path.parent.parent == Path("exps") and run.path.is_dir()
    for bad in (["name=a/b"], ["name=x", "hydra.run.dir=somewhere"]):
        with pytest.raises(ConfigError):
            train_run_dir(bad)


def test_batch_auto_keeps_the_default_on_the_cpu(caplog):
    import torch
    from omegaconf import OmegaConf

    from ghostdet.engine.outputs import resolve_auto_batch

    for value in ("auto", -1, "-1"):
        cfg = OmegaConf.create({"batch": value})
        with caplog.at_level(logging.INFO, logger="ghostdet"):
            resolve_auto_batch(cfg, torch.device("cpu"))
        assert cfg.batch == 16
    assert any("batch=auto on the CPU: batch 16" in r.getMessage() for r in caplog.records)
    cfg = OmegaConf.create({"batch": 8})
    resolve_auto_batch(cfg, torch.device("cpu"))
    assert cfg.batch == 8
    with pytest.raises(ConfigError, match="give batch=N"):
        resolve_auto_batch(OmegaConf.create({"batch": "auto"}), torch.device("cuda"))
