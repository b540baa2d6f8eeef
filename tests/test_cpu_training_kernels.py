"""The CPU training speed-ups change no numbers: the NHWC BatchNorm backward equals torch's, and the malloc
setting applies on glibc (benchmarks/bench_batchnorm.py measures what they buy)."""
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from ghostdet.models.layers import ChannelsLastBatchNorm2d, use_channels_last_batchnorm
from tests.helpers import tiny_model_cfg


def _train_step(bn: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.clone().requires_grad_()
    y = bn(x)
    y.backward(grad)
    return y.detach(), x.grad, bn.weight.grad, bn.bias.grad, bn.running_mean.clone(), bn.running_var.clone()


@pytest.mark.parametrize("shape", [(4, 12, 16, 16), (2, 36, 10, 10), (3, 7, 5, 5), (2, 24, 8, 8), (2, 32, 6, 6)])
def test_channels_last_batchnorm_matches_torch(shape):
    torch.manual_seed(0)
    c = shape[1]
    ref = nn.BatchNorm2d(c, eps=1e-3, momentum=0.03)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5), ref.bias.normal_(), ref.running_mean.normal_(), ref.running_var.uniform_(1, 2)
    fast = ChannelsLastBatchNorm2d(c, eps=1e-3, momentum=0.03)
    fast.load_state_dict(ref.state_dict())
    x = (torch.randn(shape) * 3 + 2).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    for _ in range(2):  # running statistics accumulate over steps
        ref.zero_grad(), fast.zero_grad()
        want, got = _train_step(ref, x, grad), _train_step(fast, x, grad)
    for name, w, g in zip(("y", "dx", "dweight", "dbias", "running_mean", "running_var"), want, got):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4, msg=f"{name} differs for {shape}")
    assert int(fast.num_batches_tracked) == int(ref.num_batches_tracked) == 2


def test_channels_last_batchnorm_takes_its_own_backward_only_where_torch_is_slow():
    """The custom backward runs for NHWC CPU training at C % 16 != 0; eval, NCHW and C=32 are torch's forward."""
    bn = ChannelsLastBatchNorm2d(12)
    x = torch.randn(2, 12, 4, 4, requires_grad=True)
    assert "ChannelsLastBatchNorm" in type(bn(x.contiguous(memory_format=torch.channels_last)).grad_fn).__name__
    assert "ChannelsLastBatchNorm" not in type(bn(x).grad_fn).__name__  # NCHW
    assert "ChannelsLastBatchNorm" not in type(ChannelsLastBatchNorm2d(32)(
        torch.randn(2, 32, 4, 4, requires_grad=True).contiguous(memory_format=torch.channels_last)).grad_fn).__name__
    bn.eval()
    assert "ChannelsLastBatchNorm" not in type(bn(x.contiguous(memory_format=torch.channels_last)).grad_fn).__name__


def test_channels_last_policy_swaps_batchnorm_class_and_keeps_the_state_dict():
    model = nn.Sequential(nn.Conv2d(3, 12, 3), nn.BatchNorm2d(12), nn.SyncBatchNorm(12))
    keys = list(model.state_dict())
    use_channels_last_batchnorm(model)
    assert type(model[1]) is ChannelsLastBatchNorm2d and type(model[2]) is nn.SyncBatchNorm
    assert list(model.state_dict()) == keys
    use_channels_last_batchnorm(model, False)
    assert type(model[1]) is nn.BatchNorm2d


def test_ghost_yolo_uses_the_channels_last_batchnorm_in_training():
    from ghostdet.models import build_model

    model = build_model(tiny_model_cfg(), num_classes=2)
    model.use_channels_last()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(type(m) is ChannelsLastBatchNorm2d for m in bns)
    model.use_channels_last(False)
    assert all(type(m) is nn.BatchNorm2d for m in bns)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_keep_freed_memory_applies_on_glibc():
    code = "from ghostdet.utils.cpu_memory import keep_freed_memory; print(keep_freed_memory(), keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
