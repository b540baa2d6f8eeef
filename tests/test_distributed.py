"""Multi-GPU plumbing that the 2-process gloo test cannot see (issue 23 §4): the CUDA device is set before the first
collective (NCCL talks from the current device), and every collective runs on a tensor on the training device
(NCCL reduces CUDA tensors only). No GPU needed: torch.distributed and torch.cuda are replaced by recorders, or
a one-process gloo group runs the real trainer."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from ghostdet.engine import Trainer
from ghostdet.engine import distributed as dist_utils
from helpers import compose_train, tiny_overrides


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


class _Stop(Exception):
    pass


def test_set_device_comes_before_the_first_collective(monkeypatch, tmp_path):
    import ghostdet.engine.trainer as trainer_module

    gpu = torch.device("cuda", 1)
    events, joined = [], {"yes": False}
    for name, value in (("RANK", "1"), ("LOCAL_RANK", "1"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(trainer_module, "select_device", lambda *args, **kwargs: gpu)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: events.append(("set_device", torch.device(device))))

    def init_process_group(backend, **kwargs):
        events.append(("init_process_group", backend, kwargs.get("device_id")))
        joined["yes"] = True

    def broadcast_object_list(objects, src=0, group=None, device=None, **kwargs):
        events.append(("broadcast_object_list", device))
        raise _Stop  # the first collective: enough seen

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: joined["yes"])
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_object_list)
    with pytest.raises(_Stop):
        Trainer(compose_train(["device=cuda"]), tmp_path / "run")
    assert events == [("set_device", gpu), ("init_process_group", "nccl", gpu), ("broadcast_object_list", gpu)]
    assert not (tmp_path / "run").exists()


def test_the_collective_helpers_put_their_tensors_on_the_training_device(monkeypatch):
    # "meta" stands in for a CUDA device: any tensor left on the CPU would show up as "cpu" here
    device, seen = torch.device("meta"), []
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t, op=None, **kwargs: seen.append(("all_reduce", t.device)))
    monkeypatch.setattr(dist, "broadcast", lambda t, src, **kwargs: seen.append(("broadcast", t.device)))
    monkeypatch.setattr(dist, "broadcast_object_list",
                        lambda objects, src=0, group=None, device=None, **kwargs: seen.append(("objects", device)))
    losses = torch.ones(3, dtype=torch.float64)  # the epoch's loss sums live on the host
    assert dist_utils.all_reduce_mean(losses, device).device == device
    assert dist_utils.all_reduce(torch.ones(2), device, dist.ReduceOp.MIN).device == device
    dist_utils.shared_run_dir("runs/train/x", device)
    dist_utils.broadcast_tensors([torch.ones(2, device=device)])
    assert seen == [("all_reduce", device), ("all_reduce", device), ("objects", device), ("broadcast", device)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_every_collective_of_a_training_run_gets_the_training_device(shapes_root, tmp_path, monkeypatch,
                                                                      one_process_group):
    """The real trainer in a one-process gloo group: each helper call names the trainer's device, and each raw
    torch.distributed call (the trainer's own and the helpers') gets a tensor on it."""
    calls, tensors = [], []
    for name in ("all_reduce", "all_reduce_mean", "any_rank", "broadcast_object", "shared_run_dir"):
        original = getattr(dist_utils, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            calls.append((_name, kwargs.get("device", args[1] if len(args) > 1 else None)))
            return _original(*args, **kwargs)

        monkeypatch.setattr(dist_utils, name, spy)
    for name in ("all_reduce", "broadcast"):
        original = getattr(dist, name)

        def raw(tensor, *args, _original=original, **kwargs):
            tensors.append(tensor.device)
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(dist, name, raw)
    trainer = Trainer(compose_train(tiny_overrides(shapes_root, epochs=2, nbs=4)), tmp_path / "run")
    assert trainer.distributed
    trainer.fit()
    names = {name for name, _ in calls}
    assert {"all_reduce", "all_reduce_mean", "any_rank", "shared_run_dir"} <= names, calls
    assert all(device == trainer.device for _, device in calls), calls
    assert tensors and all(device == trainer.device for device in tensors)
