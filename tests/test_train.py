"""The trainer end to end on tiny data: outputs, exact resume, Ctrl-C, non-finite losses, faulty data, overrides,
unsafe checkpoints, DDP (gloo, 2 processes) and the command line (subprocess, as users run it)."""
from __future__ import annotations

import csv
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ghostdet.engine import Trainer, TrainingError
from ghostdet.engine import run_log
from ghostdet.utils.checkpoint import load_checkpoint
from ghostdet.utils.errors import CheckpointError, ConfigError
from helpers import CONFIG_DIR, ROOT, assert_same_tensors, compose_train, run_main_in_process, tiny_overrides

TRAIN_TOOL = ROOT / "tools" / "train.py"
CKPT_KEYS = {"model", "ema", "ema_updates", "optimizer", "scheduler", "scaler", "epoch", "rng", "config", "names",
             "category_ids", "metrics", "ghostdet_version", "mosaic_epochs"}


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def tool_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_tool(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TRAIN_TOOL), *args], cwd=cwd, env=tool_env(), capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_tool_run_writes_every_output(shapes_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_tool([*tiny_overrides(shapes_root, tensorboard=True), f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training finished" in proc.stderr and "best mAP50" in proc.stdout
    for name in ("weights/last.pt", "weights/best.pt", "results.csv", "losses.png", "mAP.png", "train.log",
                 ".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert (run_dir / name).is_file() and (run_dir / name).stat().st_size > 0, name
    assert sorted(p.name for p in (run_dir / "weights").iterdir()) == ["best.pt", "last.pt"]  # the lock is gone
    ckpt = torch.load(run_dir / "weights" / "last.pt", map_location="cpu", weights_only=True)
    assert CKPT_KEYS <= ckpt.keys()
    assert ckpt["epoch"] == 2 and ckpt["names"] == ["circle", "square", "triangle", "star", "cross"]
    assert ckpt["config"]["imgsz"] == 64 and ckpt["config"]["model"]["name"] == "ghost_yolo"
    assert ckpt["model_spec"]["name"] == "ghost_yolo" and ckpt["model_spec"]["backbone"]["name"] == "ghostnet"
    assert {"mAP50", "mAP50-95"} <= ckpt["metrics"].keys()
    with open(run_dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for key in ("box_loss", "cls_loss", "dfl_loss", "lr", "mAP50", "mAP50-95"):
        assert all(r[key] != "" for r in rows), key
    if importlib.util.find_spec("tensorboard") is not None:
        assert list(run_dir.glob("events.out.tfevents.*"))
    # deployable: the detector rebuilt from the checkpoint predicts
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(run_dir / "weights" / "best.pt")
    assert meta["names"][0] == "circle"
    assert len(model.predict(torch.rand(1, 3, 64, 64))) == 1


@pytest.mark.slow
def test_resume_after_epoch_one_equals_uninterrupted_run(shapes_root, tmp_path, monkeypatch):
    overrides = tiny_overrides(shapes_root, workers=2)  # the default loader workers
    full = Trainer(compose_train(overrides), tmp_path / "full")
    full.fit()

    original_log_epoch = run_log.RunLogger.log_epoch

    def ctrl_c_after_first_epoch(self, epoch, *args, **kwargs):
        original_log_epoch(self, epoch, *args, **kwargs)
        if epoch == 1:
            raise KeyboardInterrupt  # as a second Ctrl-C (stop at once) between the epochs

    monkeypatch.setattr(run_log.RunLogger, "log_epoch", ctrl_c_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        Trainer(compose_train(overrides), tmp_path / "split").fit()
    monkeypatch.setattr(run_log.RunLogger, "log_epoch", original_log_epoch)
    last = tmp_path / "split" / "weights" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1

    resumed = Trainer(compose_train(tiny_overrides(shapes_root, resume=str(last))), tmp_path / "elsewhere")
    assert resumed.run_dir == (tmp_path / "split").resolve() and resumed.start_epoch == 1
    assert int(resumed.cfg.workers) == 2  # the run's own config
    resumed.fit()
    a = load_checkpoint(tmp_path / "full" / "weights" / "last.pt")
    b = load_checkpoint(last)
    for key in ("model", "ema", "optimizer", "scheduler"):
        assert_same_tensors(a[key], b[key], key)
    assert a["ema_updates"] == b["ema_updates"] and b["epoch"] == 2
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"]
    with open(tmp_path / "split" / "results.csv", newline="") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2"]

    # a finished run says so; a larger epochs extends it
    with pytest.raises(ConfigError, match="already finished 2 of 2 epochs"):
        Trainer(compose_train(tiny_overrides(shapes_root, resume=str(last))), tmp_path / "x")
    extended = Trainer(compose_train(tiny_overrides(shapes_root, resume=str(last))), tmp_path / "x",
                       resume_overrides={"epochs": 3})
    assert extended.start_epoch == 2 and extended.epochs == 3
    assert extended.scheduler.total_steps == 3 * extended.iters_per_epoch
    extended.close()


@pytest.mark.slow
def test_a_second_ctrl_c_writes_nothing_and_nonfinite_losses_stop(shapes_root, tmp_path, caplog):
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, nbs=4)), tmp_path / "run")  # a step per batch
    real_loss = trainer.criterion
    calls = {"n": 0}

    def interrupt_on_second_batch(*args):
        calls["n"] += 1
        if calls["n"] == 2:  # KeyboardInterrupt itself: the second Ctrl-C, which stops at once
            raise KeyboardInterrupt
        return real_loss(*args)

    trainer.criterion = interrupt_on_second_batch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    # no completed epoch: nothing was saved, not even mid-epoch weights as last.pt (Ctrl-C once saves
    # weights/interrupted.pt at an optimizer step: tests/test_resume.py)
    assert not (tmp_path / "run" / "weights").exists()
    assert "interrupted: no epoch completed yet" in caplog.text

    # NaN losses: skipped with a warning, then a clear stop; the last good checkpoint stays loadable
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, epochs=3, max_nonfinite_steps=2)), tmp_path / "nan")
    real_loss = trainer.criterion
    calls["n"] = 0

    def nan_from_epoch_two(*args):
        calls["n"] += 1
        total, items = real_loss(*args)
        return (total * float("nan"), items) if calls["n"] > 2 else (total, items)

    trainer.criterion = nan_from_epoch_two
    with pytest.raises(TrainingError, match="2 non-finite losses in a row at epoch 2"):
        trainer.fit()
    assert "non-finite loss" in caplog.text
    good = load_checkpoint(tmp_path / "nan" / "weights" / "last.pt")
    assert good["epoch"] == 1 and all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())


def test_one_nonfinite_loss_skips_only_its_step(shapes_root, tmp_path, caplog):
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, epochs=1, nbs=4)), tmp_path / "run")  # 2 steps
    real_loss = trainer.criterion
    calls = {"n": 0}

    def nan_first(*args):
        calls["n"] += 1
        total, items = real_loss(*args)
        return (total * float("nan"), items) if calls["n"] == 1 else (total, items)

    trainer.criterion = nan_first
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert "epoch 1 iteration 1: non-finite loss" in caplog.text
    assert trainer.ema.updates == 1  # the NaN step was skipped, the other one taken
    state = trainer.model.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert any(not torch.equal(initial[k], v) for k, v in state.items() if v.is_floating_point())


def test_overrides_reach_the_right_places(shapes_root, tmp_path):
    cfg = compose_train(tiny_overrides(shapes_root, model="repghost_yolo", **{
        "optimizer.name": "adamw", "optimizer.lr": 0.002, "optimizer.weight_decay": 0.05, "epochs": 7,
        "augment.mosaic": 0.0, "batch": 2, "nbs": 8, "ema.enabled": False, "schedule.name": "linear"}))
    assert cfg.optimizer.name == "adamw" and cfg.epochs == 7 and cfg.augment.mosaic == 0.0
    trainer = Trainer(cfg, tmp_path / "run")
    assert type(trainer.model.backbone).__name__ == "RepGhostNet"
    assert isinstance(trainer.optimizer, torch.optim.AdamW)
    assert trainer.scheduler.base_lrs == [0.002] * len(trainer.optimizer.param_groups)
    assert trainer.scheduler.schedule == "linear" and trainer.epochs == 7 and trainer.ema is None
    assert trainer.accumulate == 4  # batch 2 -> nominal 8
    decay_group = next(g for g in trainer.optimizer.param_groups if g["group"] == "decay")
    assert decay_group["weight_decay"] == pytest.approx(0.05)  # 2 x 4 / 8 = 1
    assert trainer.train_loader.batch_size == 2 and trainer.scheduler.total_steps == 7 * 4
    assert str(trainer.cfg.data.root) == str(shapes_root)
    with pytest.raises(ConfigError, match="optimizer.name='lamb'"):
        Trainer(compose_train(tiny_overrides(shapes_root, **{"optimizer.name": "lamb"})), tmp_path / "bad")
    with pytest.raises(ConfigError, match="imgsz=100"):
        Trainer(compose_train(tiny_overrides(shapes_root, imgsz=100)), tmp_path / "bad")


def test_booby_trapped_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil = tmp_path / "weights" / "last.pt"
    evil.parent.mkdir()
    torch.save({"model": Payload(), "epoch": 1}, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        Trainer(compose_train([f"resume={evil}", "device=cpu"]), tmp_path / "run")
    proc = run_tool([f"resume={evil}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "refused to load" in lines[-1] and "Traceback" not in proc.stderr
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the payload is real: unsafe loading runs it
    assert marker.exists()


def test_command_line_errors_are_one_line(tmp_path):
    """The tool's main in this process (test_unknown_keys.py runs tools/train.py epoch=3 as a script)."""
    proc = run_main_in_process("train", "epoch=3", f"hydra.run.dir={tmp_path / 'a'}", cwd=tmp_path)  # mistyped key
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Could not override 'epoch'" in proc.stderr or "did you mean epochs?" in proc.stderr
    assert not (tmp_path / "a").exists()  # a failed command leaves no run dir
    if not torch.cuda.is_available():
        proc = run_main_in_process("train", "device=cuda", f"hydra.run.dir={tmp_path / 'b'}", cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].startswith("error: device=cuda: CUDA is not available")
        assert not (tmp_path / "b").exists()


DDP_WORKER = textwrap.dedent("""
    import os, sys
    import torch
    from hydra import compose, initialize_config_dir
    from ghostdet.engine import Trainer
    from ghostdet.engine import distributed

    config_dir, run_dir, out_dir, *overrides = sys.argv[1:]
    with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    trainer = Trainer(cfg, run_dir)
    trainer.fit()
    rank = distributed.rank()
    torch.save({"model": trainer.model.state_dict(), "ema": trainer.ema.state_dict(), "world": distributed.world_size()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    distributed.cleanup()
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_two_processes_gloo_end_with_identical_weights(shapes_root, tmp_path):
    # the dataset must exist before two ranks race to generate it
    Trainer(compose_train(tiny_overrides(shapes_root)), tmp_path / "warm")
    script = tmp_path / "ddp_worker.py"
    script.write_text(DDP_WORKER)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(script), str(CONFIG_DIR), str(tmp_path / "run"), str(out),
           *tiny_overrides(shapes_root, batch=2)]
    proc = subprocess.run(cmd, cwd=tmp_path, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert_same_tensors(r0["model"], r1["model"], "model")
    assert_same_tensors(r0["ema"], r1["ema"], "ema")
    # only rank 0 wrote the run; the weights moved away from the start
    assert (tmp_path / "run" / "weights" / "last.pt").is_file()
    ckpt = load_checkpoint(tmp_path / "run" / "weights" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["batch"] == 2
    assert_same_tensors(ckpt["model"], r0["model"], "checkpoint")


@pytest.mark.slow
def test_training_on_a_folder_of_faulty_files_completes_an_epoch(coco128, tmp_path, caplog):
    root = tmp_path / "faulty"
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    good = ["000000000009", "000000000025", "000000000030", "000000000034"]
    for stem in good:
        shutil.copy(coco128 / "images" / "train2017" / f"{stem}.jpg", images)
        shutil.copy(coco128 / "labels" / "train2017" / f"{stem}.txt", labels)
    shutil.copy(coco128 / "classes.txt", root / "classes.txt")
    with open(labels / "000000000009.txt", "a") as f:
        f.write("999 0.5 0.5 0.1 0.1\nnot a label line\n3 nan 0.5 0.1 0.1\n5 1.7 1.7 0.2 0.2\n")
    (images / "random_bytes.jpg").write_bytes(os.urandom(2048))
    (images / "empty.jpg").write_bytes(b"")
    (images / "text.jpg").write_text("this is not an image\n")
    data = (coco128 / "images" / "train2017" / "000000000036.jpg").read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (labels / "random_bytes.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    overrides = ["data=yolo", f"data.root={root}", "data.val=images/train", "imgsz=64", "batch=2", "workers=0",
                 "epochs=1", "device=cpu", "progress=false", "tensorboard=false", "model.backbone.width=0.5",
                 "schedule.min_warmup_iters=0"]
    trainer = Trainer(compose_train(overrides), tmp_path / "run")
    trainer.fit()
    assert "random_bytes.jpg" in caplog.text and "empty.jpg" in caplog.text
    assert len(trainer.names) == 80
    with open(tmp_path / "run" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["mAP50"] != ""
