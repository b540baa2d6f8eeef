"""The optimizer-step bookkeeping of the real Trainer: gradient accumulation windows and zeroed gradients.

The learning test (test_learning.py) does not notice these when they break (one step per epoch, or gradients
that pile up across steps, still learn a little), so they are checked here directly on a few-second run.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose_train, tiny_overrides

from ghostdet.engine import Trainer


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
