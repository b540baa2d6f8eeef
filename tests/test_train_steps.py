"""The optimizer-step bookkeeping of the real Trainer: gradient accumulation windows and zeroed gradients.

The learning test (test_learning.py) does not notice these when they break (one step per epoch, or gradients
that pile up across steps, still learn a little), so they are checked here directly on a few-second run.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose_train, tiny_overrides

from ghostdet.engine import Trainer, state
from ghostdet.utils.checkpoint import save_checkpoint
from ghostdet.utils.errors import ConfigError


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def _grad_total(model: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("batch, nbs, expected_accumulate", [(2, 2, 1), (2, 6, 3)])
def test_steps_follow_the_accumulation_window_and_start_from_zero_grads(shapes_root, tmp_path, monkeypatch,
                                                                       batch, nbs, expected_accumulate):
    # 8 images at batch 2: 4 iterations; accumulation 3 steps after iterations 3 and 4 (the last one of the epoch)
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, batch=batch, nbs=nbs, epochs=1)), tmp_path / "run")
    assert trainer.accumulate == expected_accumulate
    iterations = len(trainer.train_loader)
    events = []
    forward_backward = trainer._forward_backward
    optimizer_step = trainer.optimizer.step

    def spy_forward_backward(*args, **kwargs):
        events.append(("grad before backward", _grad_total(trainer.model)))
        return forward_backward(*args, **kwargs)

    def spy_step(*args, **kwargs):
        events.append(("step", _grad_total(trainer.model)))
        return optimizer_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "_forward_backward", spy_forward_backward)
    monkeypatch.setattr(trainer.optimizer, "step", spy_step)
    trainer.train_one_epoch(0)

    steps = [i for i, (kind, _) in enumerate(events) if kind == "step"]
    expected_steps = -(-iterations // expected_accumulate)  # ceil: the epoch's last iteration always steps
    assert len(steps) == expected_steps, events
    backward = [g for kind, g in events if kind == "grad before backward"]
    assert len(backward) == iterations
    for i, grad in enumerate(backward):
        if i % expected_accumulate == 0:  # a window opens: nothing left over from the previous step
            assert grad == 0.0, f"iteration {i + 1}: gradients of the previous step were not zeroed ({grad:.3g})"
        else:  # inside a window the gradients accumulate
            assert grad > 0.0, f"iteration {i + 1}: gradients were zeroed inside an accumulation window"
    assert all(g > 0.0 for kind, g in events if kind == "step")


def _bn_stats(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
            for t in (m.running_mean, m.running_var)]


@pytest.mark.parametrize("mode", ["update", "freeze"])
def test_close_mosaic_bn_freezes_or_updates_the_statistics_of_the_closed_epochs(shapes_root, tmp_path, mode):
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, epochs=2, close_mosaic=1, close_mosaic_bn=mode)),
                      tmp_path / "run")
    trainer.train_one_epoch(0)  # mosaic on
    assert not trainer.mosaic_closed
    before = _bn_stats(trainer.model)
    weights = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train_one_epoch(1)  # the closed epoch
    assert trainer.mosaic_closed
    moved = [not torch.equal(a, b) for a, b in zip(before, _bn_stats(trainer.model))]
    assert (not any(moved)) if mode == "freeze" else all(moved)
    assert any(not torch.equal(a, p) for a, p in zip(weights, trainer.model.parameters())), "the weights must train"
    trainer.train_model.train()
    assert all(m.training for m in trainer.model.modules()), "model.train() undoes the freeze"


def test_a_run_with_no_mosaic_epoch_behind_it_keeps_updating_batchnorm(shapes_root, tmp_path):
    """Issue 23 §1: close_mosaic >= epochs (the defaults close_mosaic: 3 with epochs=3) closes mosaic at the first
    epoch; "freeze" must not freeze the untrained statistics (mean 0, var 1) for the whole run."""
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, epochs=2, close_mosaic=3, close_mosaic_bn="freeze")),
                      tmp_path / "short")
    before = _bn_stats(trainer.model)
    trainer.train_one_epoch(0)
    assert trainer.mosaic_closed and trainer.mosaic_epochs == 0
    assert all(not torch.equal(a, b) for a, b in zip(before, _bn_stats(trainer.model))), "BatchNorm stats frozen"
    trainer.close()

    # a resumed run whose history has a mosaic epoch keeps its mosaic statistics frozen in the closed epochs, also
    # from a checkpoint written before "mosaic_epochs" was stored (inferred from its config)
    first = Trainer(compose_train(tiny_overrides(shapes_root, epochs=2, close_mosaic=1)), tmp_path / "long")
    first.train_one_epoch(0)
    assert first.mosaic_epochs == 1
    ckpt = state.state_dict(first, 1)
    first.close()
    del ckpt["mosaic_epochs"]
    last = save_checkpoint(ckpt, tmp_path / "long" / "weights" / "last.pt")
    resumed = Trainer(compose_train(tiny_overrides(shapes_root, resume=str(last))), tmp_path / "x")
    assert resumed.mosaic_epochs == 1
    before = _bn_stats(resumed.model)
    resumed.train_one_epoch(1)
    assert resumed.mosaic_closed and all(torch.equal(a, b) for a, b in zip(before, _bn_stats(resumed.model)))
    resumed.close()


def test_close_mosaic_bn_rejects_unknown_modes(shapes_root, tmp_path):
    with pytest.raises(ConfigError, match="close_mosaic_bn=keep: must be update or freeze"):
        Trainer(compose_train(tiny_overrides(shapes_root, close_mosaic_bn="keep")), tmp_path / "run")
