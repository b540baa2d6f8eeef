"""Engine parts that need no data or detector: schedule, optimizer groups, EMA, RNG state, device, resume lookup."""
from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from ghostdet.engine.run_log import RunLogger
from ghostdet.engine import (ModelEMA, WarmupDecayLR, build_optimizer, find_resume_checkpoint, param_groups, rng_state,
                             select_device, set_rng_state)
from ghostdet.utils.checkpoint import load_checkpoint, save_checkpoint
from ghostdet.utils.errors import CheckpointError, ConfigError
from helpers import capture_figures, png_size_and_spread


def small_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))


def make_schedule(total=100, warmup=10, name="cosine", opt="sgd"):
    model = small_net()
    optimizer = build_optimizer(model, name=opt, lr=0.01, momentum=0.9, weight_decay=5e-4)
    return optimizer, WarmupDecayLR(optimizer, total_steps=total, warmup_steps=warmup, schedule=name, final_lr_ratio=0.01,
                                    warmup_bias_lr=0.1, warmup_momentum=0.8)


def lrs_of(optimizer):
    return {g["group"]: g["lr"] for g in optimizer.param_groups}


def test_param_groups_keep_bn_and_bias_out_of_weight_decay():
    model = small_net()
    groups = {g["group"]: g for g in param_groups(model, 5e-4)}
    decayed = {id(p) for p in groups["decay"]["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}
    assert {id(p) for p in groups["no_decay"]["params"]} == {id(model[1].weight)}
    assert {id(p) for p in groups["bias"]["params"]} == {id(model[1].bias), id(model[3].bias)}
    assert groups["no_decay"]["weight_decay"] == groups["bias"]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups.values()) == len(list(model.parameters()))


def test_optimizers_and_unknown_name():
    model = small_net()
    sgd = build_optimizer(model, "sgd", lr=0.01, momentum=0.937)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"]
    adamw = build_optimizer(model, "AdamW", lr=0.001, momentum=0.9)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.9, 0.999)
    with pytest.raises(ConfigError, match="optimizer.name='adam'"):
        build_optimizer(model, "adam")


def test_warmup_then_cosine():
    optimizer, scheduler = make_schedule(total=100, warmup=10)
    lrs = lrs_of(optimizer)
    assert lrs["decay"] == 0.0 and lrs["bias"] == pytest.approx(0.1)  # step 0
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.8)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    cos5 = 0.01 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 5 / 100)))
    assert lrs_of(optimizer)["decay"] == pytest.approx(cos5 * 0.5)
    assert lrs_of(optimizer)["bias"] == pytest.approx(0.1 + (cos5 - 0.1) * 0.5)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.85)
    for _ in range(95):
        optimizer.step()
        scheduler.step()
    assert lrs_of(optimizer)["decay"] == pytest.approx(0.01 * 0.01)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)


def test_linear_schedule_and_unknown_schedule():
    optimizer, scheduler = make_schedule(total=10, warmup=0, name="linear")
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert lrs_of(optimizer)["decay"] == pytest.approx(0.01 * (1 - 0.99 * 0.5))
    with pytest.raises(ConfigError, match="schedule.name"):
        make_schedule(name="step")


@pytest.mark.parametrize("opt", ["sgd", "adamw"])
def test_schedule_state_resumes_exactly(opt, tmp_path):
    ref_opt, ref = make_schedule(total=60, warmup=20, opt=opt)
    trace = []
    for _ in range(60):
        ref_opt.step()
        ref.step()
        trace.append((lrs_of(ref_opt), dict(ref_opt.param_groups[0])))
    first_opt, first = make_schedule(total=60, warmup=20, opt=opt)
    for _ in range(13):
        first_opt.step()
        first.step()
    save_checkpoint({"scheduler": first.state_dict(), "optimizer": first_opt.state_dict()}, tmp_path / "s.pt")
    state = load_checkpoint(tmp_path / "s.pt")  # weights_only: plain data
    second_opt, second = make_schedule(total=60, warmup=20, opt=opt)
    second_opt.load_state_dict(state["optimizer"])
    second.load_state_dict(state["scheduler"])
    for i in range(13, 60):
        second_opt.step()
        second.step()
        assert lrs_of(second_opt) == trace[i][0]
        key = "betas" if opt == "adamw" else "momentum"
        assert second_opt.param_groups[0][key] == trace[i][1][key]


def test_ema_ramp_and_buffers():
    model = small_net()
    ema = ModelEMA(model, decay=0.9999, tau=2000)
    assert all(not p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model[1].num_batches_tracked.fill_(7)
    before = ema.module[0].weight.clone()
    ema.update(model)
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.decay() == pytest.approx(0.9999 * (1 - math.exp(-1 / 2000)))
    torch.testing.assert_close(ema.module[0].weight, d * before + (1 - d) * model[0].weight)
    assert int(ema.module[1].num_batches_tracked) == 7
    for _ in range(50000):
        ema.updates += 1
    assert ema.decay() == pytest.approx(0.9999, rel=1e-6)


def test_rng_state_roundtrip_loads_weights_only(tmp_path):
    generator = torch.Generator().manual_seed(3)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = rng_state(generator)
    save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item())
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"], generator)
    assert (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item()) == expected


def test_device_errors():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="expected auto, cpu, cuda, cuda:N"):
        select_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("cuda")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("cuda:1")


def test_find_resume_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no .*last.pt found"):
        find_resume_checkpoint(True, tmp_path)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        find_resume_checkpoint(tmp_path / "nope.pt", tmp_path)
    old = tmp_path / "2026-01-01" / "10-00-00" / "weights" / "last.pt"
    new = tmp_path / "2026-01-02" / "09-00-00" / "weights" / "last.pt"
    for i, p in enumerate((old, new)):
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
        os.utime(p, (1000 + i, 1000 + i))
    assert find_resume_checkpoint(True, tmp_path) == new
    assert find_resume_checkpoint("true", tmp_path) == new
    assert find_resume_checkpoint(old.parent.parent, tmp_path) == old


def test_run_logger_csv_plots_events_and_resume_cut(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    logger = RunLogger(tmp_path, tensorboard=True)
    for epoch in (1, 2, 3):
        metrics = {"mAP50": 0.5 + epoch / 10, "mAP50-95": 0.3} if epoch != 2 else None
        logger.log_epoch(epoch, {"box": 1.0 / epoch, "cls": 2.0, "dfl": 0.5}, 1e-3, metrics, 12.5)
    logger.close()
    lines = (tmp_path / "results.csv").read_text().splitlines()
    assert lines[0] == "epoch,box_loss,cls_loss,dfl_loss,lr,mAP50,mAP50-95,mAP75,precision,recall,F1,epoch_time_s"
    assert lines[1].startswith("1,1,2,0.5,0.001,0.6,0.3,,,,,12.5") and lines[2] == "2,0.5,2,0.5,0.001,,,,,,,12.5"
    # the plots show the CSV's numbers: one loss panel per component over epochs 1-3, mAP at the evaluated epochs
    losses_fig, map_fig = figures[-2:]
    assert [ax.get_title() for ax in losses_fig.axes] == ["train box loss", "train cls loss", "train dfl loss"]
    np.testing.assert_allclose(losses_fig.axes[0].lines[0].get_xydata(), [[1, 1.0], [2, 0.5], [3, 1 / 3]], rtol=1e-5)  # 6 digits
    np.testing.assert_allclose(losses_fig.axes[1].lines[0].get_ydata(), [2.0, 2.0, 2.0])
    lines = {line.get_label(): line.get_xydata() for line in map_fig.axes[0].lines}
    np.testing.assert_allclose(lines["mAP50"], [[1, 0.6], [3, 0.8]])
    np.testing.assert_allclose(lines["mAP50-95"], [[1, 0.3], [3, 0.3]])
    for name, size in (("losses.png", (1200, 300)), ("mAP.png", (500, 350))):  # figsize x dpi 100
        got_size, spread = png_size_and_spread(tmp_path / name)
        assert got_size == size and spread > 5, name
    if logger.tb is not None:
        assert list(tmp_path.glob("events.out.tfevents.*"))
    # a run resumed from epoch 2 forgets row 3 (written after that checkpoint)
    RunLogger(tmp_path, resume_epoch=2, tensorboard=False).close()
    assert [line.split(",")[0] for line in (tmp_path / "results.csv").read_text().splitlines()] == ["epoch", "1", "2"]


def test_run_logger_draws_the_plots_every_plot_every_epochs_and_at_close(tmp_path, monkeypatch):
    figures = capture_figures(monkeypatch)
    logger = RunLogger(tmp_path, tensorboard=False, plot_every=2)
    drawn = []
    for epoch in (1, 2, 3):
        logger.log_epoch(epoch, {"box": 1.0, "cls": 2.0, "dfl": 0.5}, 1e-3, {"mAP50": 0.5, "mAP50-95": 0.3}, 1.0)
        drawn.append(len(figures))
    logger.close()
    assert drawn == [0, 2, 2] and len(figures) == 4  # epoch 2 (2 figures), then close() for epoch 3
    assert len(figures[-2].axes[0].lines[0].get_xdata()) == 3
    logger.close()
    assert len(figures) == 4  # nothing new to draw
