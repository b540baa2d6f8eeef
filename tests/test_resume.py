"""Resume (issue 23 §3): no file a checkpoint names is read; Ctrl-C mid-epoch keeps ``last.pt`` as the last completed
epoch and saves ``interrupted.pt`` with its iteration, from which a resume continues exactly; the loader's order and
augmentation follow from (seed, epoch, sample index) alone, with the default ``workers=2``."""
from __future__ import annotations

import csv
import os
import signal
from pathlib import Path

import pytest
import torch

from ghostdet.data import build_dataloader, build_dataset
from ghostdet.engine import Trainer, state
from ghostdet.utils.checkpoint import load_checkpoint, save_checkpoint
from helpers import assert_same_tensors, compose_train, tiny_overrides


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def _batches(loader, epoch: int, start: int = 0) -> list[torch.Tensor]:
    loader.sampler.set_epoch(epoch, start)
    return [images for images, *_ in loader]


def test_loader_batches_depend_on_seed_epoch_and_index_only(shapes_root):
    cfg = compose_train(tiny_overrides(shapes_root))
    dataset = build_dataset(cfg.data, "train", imgsz=64, augment=True, aug_cfg=cfg.augment)
    in_process = build_dataloader(dataset, batch_size=4, workers=0, shuffle=True, seed=3)
    workers = build_dataloader(dataset, batch_size=4, workers=2, shuffle=True, seed=3)
    expected = {epoch: _batches(in_process, epoch) for epoch in (0, 1)}
    assert not torch.equal(expected[0][0], expected[1][0])  # a new epoch: new order and augmentation
    for epoch in (0, 1):  # two workers, persistent between the epochs: the same images
        assert_same_tensors(_batches(workers, epoch), expected[epoch], f"epoch {epoch}")
    # a fresh loader started mid-epoch 1 (a resumed run) continues with the same batches
    resumed = build_dataloader(dataset, batch_size=4, workers=2, shuffle=True, seed=3)
    assert_same_tensors(_batches(resumed, 1, start=4), expected[1][1:], "resumed epoch 1")


def test_resume_never_reads_the_pretrained_file_its_checkpoint_names(shapes_root, tmp_path):
    trainer = Trainer(compose_train(tiny_overrides(shapes_root)), tmp_path / "run")
    ckpt = state.state_dict(trainer, 1)
    trainer.close()
    moved = tmp_path / "imagenet_weights_moved_away.pth"  # the backbone file the run started from, gone now
    ckpt["model_spec"]["backbone"]["pretrained"] = str(moved)
    ckpt["config"]["model"]["backbone"]["pretrained"] = str(moved)
    last = save_checkpoint(ckpt, tmp_path / "run" / "weights" / "last.pt")
    resumed = Trainer(compose_train(tiny_overrides(shapes_root, resume=str(last))), tmp_path / "x")
    assert resumed.start_epoch == 1 and resumed.model_spec["backbone"]["pretrained"] is None
    assert_same_tensors(resumed.model.state_dict(), ckpt["model"], "model")
    resumed.close()


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_ctrl_c_mid_epoch_keeps_last_pt_and_resume_continues_exactly(tmp_path):
    # 12 images, batch 4, nbs 4: three optimizer steps per epoch; the default two loader workers
    root = tmp_path / "data"
    overrides = tiny_overrides(root, workers=2, nbs=4, **{"data.num_train": 12})
    Trainer(compose_train(overrides), tmp_path / "full").fit()

    split = Trainer(compose_train(overrides), tmp_path / "split")
    real_loss, calls = split.criterion, {"n": 0}

    def ctrl_c_in_epoch_two(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, iteration 2 of 3: the SIGINT a terminal sends
            os.kill(os.getpid(), signal.SIGINT)
        return real_loss(*args)

    split.criterion = ctrl_c_in_epoch_two
    with pytest.raises(KeyboardInterrupt):
        split.fit()
    assert calls["n"] == 5  # it stopped at that iteration's optimizer step
    weights = tmp_path / "split" / "weights"
    last, stopped = load_checkpoint(weights / "last.pt"), load_checkpoint(weights / state.INTERRUPTED)
    assert last["epoch"] == 1 and not last["interrupted"]  # the last completed epoch, untouched
    assert stopped["epoch"] == 1 and stopped["interrupted"] and stopped["iteration"] == 2
    assert not (weights / "train.lock").exists()

    resumed = Trainer(compose_train(tiny_overrides(root, resume=str(weights / "last.pt"))), tmp_path / "x")
    assert resumed.resume_path == weights / state.INTERRUPTED  # the newer state of the run
    assert (resumed.start_epoch, resumed.start_iteration) == (1, 2)
    resumed.fit()
    a, b = load_checkpoint(tmp_path / "full" / "weights" / "last.pt"), load_checkpoint(weights / "last.pt")
    for key in ("model", "ema", "optimizer", "scheduler", "scaler"):
        assert_same_tensors(a[key], b[key], key)
    assert a["ema_updates"] == b["ema_updates"] == 6 and b["epoch"] == 2
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 6
    assert not (weights / state.INTERRUPTED).exists()  # last.pt is newer now
    full_rows, split_rows = _rows(tmp_path / "full" / "results.csv"), _rows(tmp_path / "split" / "results.csv")
    assert [r["epoch"] for r in split_rows] == ["1", "2"]
    for key in ("box_loss", "cls_loss", "dfl_loss", "lr", "mAP50-95"):  # the interrupted epoch's figures too
        assert [r[key] for r in split_rows] == [r[key] for r in full_rows], key
