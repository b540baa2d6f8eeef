"""GhostNet, GhostNetV2, RepGhostNet: paper figures, authors' key layout (timm as the independent
reference for keys and outputs), pretrained loading and its errors, re-parameterization, detection features."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from ghostdet.models import GhostNet, GhostNetV2, RepGhostNet, build_model, reparameterize
from ghostdet.utils.errors import CheckpointError
from ghostdet.utils.flops import count_params, count_params_macs, gflops

timm = pytest.importorskip("timm")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

# (class, width, timm name, published params M, published MACs M, measured params, measured MACs at 224).
# Measured figures equal timm's models built from the authors' code (checked in test_timm_equivalence).
TABLE = [
    (GhostNet, 0.5, "ghostnet_050", 2.6, 42, 2_587_292, 42_328_152),
    (GhostNet, 1.0, "ghostnet_100", 5.2, 141, 5_182_508, 141_150_512),
    (GhostNet, 1.3, "ghostnet_130", 7.3, 226, 7_358_820, 227_003_256),
    (GhostNetV2, 1.0, "ghostnetv2_100", 6.2, 167, 6_156_908, 167_048_288),
    (GhostNetV2, 1.3, "ghostnetv2_130", 9.0, 269, 8_960_404, 269_322_976),
    (GhostNetV2, 1.6, "ghostnetv2_160", 12.4, 399, 12_392_698, 398_607_224),
    (RepGhostNet, 0.5, "repghostnet_050", 2.3, 43, 2_313_968, 43_314_720),
    (RepGhostNet, 0.58, "repghostnet_058", 2.5, 60, 2_546_388, 59_804_016),
    (RepGhostNet, 0.8, "repghostnet_080", 3.3, 96, 3_278_968, 95_518_948),
    (RepGhostNet, 1.0, "repghostnet_100", 4.1, 142, 4_073_604, 142_394_128),
    (RepGhostNet, 1.11, "repghostnet_111", 4.5, 170, 4_539_984, 170_124_224),
    (RepGhostNet, 1.3, "repghostnet_130", 5.5, 231, 5_478_612, 231_123_652),
    (RepGhostNet, 1.5, "repghostnet_150", 6.6, 301, 6_575_336, 301_315_856),
    (RepGhostNet, 2.0, "repghostnet_200", 9.8, 516, 9_796_124, 515_869_856),
]
# The GhostNet paper prints 7.3M for 1.3x; the authors' code at width 1.3 (= timm ghostnet_130) has 7.36M.
PARAMS_TOLERANCE = {"ghostnet_130": 0.009}


def _within_published(measured: float, published: float, rel: float, last_digit: float) -> bool:
    """Published figures are rounded: accept ``rel`` relative error or half a unit of the printed digit."""
    return abs(measured - published) <= max(rel * published, last_digit / 2 + 1e-9)


@pytest.mark.parametrize("cls,width,name,pub_params,pub_macs,params,macs", TABLE, ids=[r[2] for r in TABLE])
def test_table_figures(cls, width, name, pub_params, pub_macs, params, macs):
    model = build_model({"name": name})  # each paper width is a registered variant under timm's name
    assert type(model) is cls
    got_params, got_macs = count_params_macs(model, (1, 3, 224, 224))
    assert (got_params, got_macs) == (params, macs)
    assert _within_published(got_params / 1e6, pub_params, PARAMS_TOLERANCE.get(name, 0.005), 0.1), got_params
    assert _within_published(got_macs / 1e6, pub_macs, 0.01, 1), got_macs


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BN statistics and affine terms, so tests that compare outputs see every BN."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return model


@pytest.fixture(scope="module")
def dog(shared_data) -> torch.Tensor:
    """A real photo, resized to 224x224, ImageNet-normalised."""
    img = Image.open(shared_data / "images" / "dog.jpg").convert("RGB").resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div(255)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((x - mean[:, None, None]) / std[:, None, None]).unsqueeze(0)


@pytest.mark.parametrize("cls,width,name", [(GhostNet, 1.0, "ghostnet_100"), (GhostNetV2, 1.0, "ghostnetv2_100"),
                                            (RepGhostNet, 1.0, "repghostnet_100"),
                                            (RepGhostNet, 0.58, "repghostnet_058")])
def test_timm_equivalence(cls, width, name, dog):
    """Same keys and shapes as timm (which loads the authors' releases), and the same logits."""
    reference = _randomize_bn(timm.create_model(name)).eval()
    model = cls(width=width).eval()
    ref_state = reference.state_dict()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ref_state.items()}
    model.load_state_dict(ref_state, strict=True)
    with torch.no_grad():
        expected, got = reference(dog), model(dog)
    assert got.shape == (1, 1000)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_pretrained_file_with_wrappers_and_features_only(tmp_path, dog):
    """A release-style file (``state_dict`` wrapper, ``module.`` prefix, thop buffers) loads strictly;
    ``features_only`` ignores only the head it does not build."""
    reference = _randomize_bn(timm.create_model("ghostnetv2_100")).eval()
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    state["module.total_ops"] = torch.zeros(1)
    state["module.blocks.0.0.total_params"] = torch.zeros(1)
    path = tmp_path / "ck_ghostnetv2_10.pth.tar"
    torch.save({"epoch": 450, "state_dict": state}, path)

    model = GhostNetV2(width=1.0, pretrained=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(dog), reference(dog), atol=1e-4, rtol=1e-4)

    backbone = GhostNetV2(width=1.0, features_only=True, pretrained=path).eval()
    assert not hasattr(backbone, "classifier") and not hasattr(backbone, "conv_head")
    assert len(backbone.blocks) == 9  # no final 1x1 LastStageConv (blocks.9) in features_only mode
    with torch.no_grad():
        c3, c4, c5 = backbone(dog)
        x = model.act1(model.bn1(model.conv_stem(dog)))
        x = model.blocks[:9](x)
    torch.testing.assert_close(c5, x)


def test_pretrained_mismatch_errors(tmp_path):
    state = GhostNet(width=1.0).state_dict()
    path = tmp_path / "ghostnet_1x.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"ghostnet_1x\.pth: weights do not fit GhostNet "
                       r"\(shape mismatch: conv_stem\.weight file \(16, 3, 3, 3\) vs model \(8, 3, 3, 3\)"):
        GhostNet(width=0.5, pretrained=path)

    del state["blocks.3.0.se.conv_reduce.weight"]
    state["blocks.3.0.extra.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        GhostNet(width=1.0, pretrained=path)
    message = str(err.value)
    assert "missing in file: blocks.3.0.se.conv_reduce.weight (20, 72, 1, 1)" in message
    assert "not in model: blocks.3.0.extra.weight (3,)" in message
    assert "\n" not in message

    # a ghostdet backbone must not silently accept another architecture's file
    torch.save(RepGhostNet(width=1.0).state_dict(), path)
    with pytest.raises(CheckpointError, match="do not fit GhostNet"):
        GhostNet(width=1.0, features_only=True, pretrained=path)


def test_pretrained_not_a_checkpoint(tmp_path, shared_data):
    not_weights = tmp_path / "weights.pth"  # an image saved under a weights name
    not_weights.write_bytes((shared_data / "images" / "dog.jpg").read_bytes())
    with pytest.raises(CheckpointError, match="weights.pth"):
        RepGhostNet(pretrained=not_weights)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        GhostNet(pretrained=tmp_path / "missing.pth")
    no_tensors = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "arch": "ghostnet"}, no_tensors)
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        GhostNet(pretrained=no_tensors)


@pytest.mark.parametrize("features_only", [False, True])
def test_repghost_reparameterize_exact(features_only, dog, tmp_path):
    model = _randomize_bn(RepGhostNet(width=0.5, features_only=features_only)).eval()
    with torch.no_grad():
        before = model(dog)
    params_before = count_params(model)

    assert not model.deploy
    assert reparameterize(model) is model
    assert model.deploy
    params_after = count_params(model)
    assert params_after < params_before
    with torch.no_grad():
        after = model(dog)
        reparameterize(model)  # idempotent
        again = model(dog)
    for b, a, a2 in zip(*(t if features_only else [t] for t in (before, after, again))):
        assert (b - a).abs().max().item() < 1e-4
        torch.testing.assert_close(a2, a, atol=0, rtol=0)
    assert count_params(model) == params_after

    # the deploy-form state dict loads strictly into a model built in deploy form, also from a file
    deployed = RepGhostNet(width=0.5, features_only=features_only, deploy=True).eval()
    deployed.load_state_dict(model.state_dict(), strict=True)
    path = tmp_path / "repghost_deploy.pth"
    torch.save(model.state_dict(), path)
    from_file = RepGhostNet(width=0.5, features_only=features_only, deploy=True, pretrained=path).eval()
    with pytest.raises(CheckpointError, match="re-parameterized .* need deploy=True"):
        RepGhostNet(width=0.5, features_only=features_only, pretrained=path)
    with torch.no_grad():
        for a, d in zip(*(t if features_only else [t] for t in (after, from_file(dog)))):
            torch.testing.assert_close(d, a, atol=0, rtol=0)
    assert count_params(deployed) == params_after


def test_repghost_trains_after_build():
    """A backward pass through the two-branch modules reaches every parameter (identity BN included)."""
    model = RepGhostNet(width=0.5, num_classes=10).train()
    loss = model(torch.rand(2, 3, 64, 96)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("cls,width,channels", [(GhostNet, 1.0, [40, 112, 160]), (GhostNetV2, 1.0, [40, 112, 160]),
                                                (RepGhostNet, 0.5, [20, 56, 80]), (GhostNet, 1.3, [52, 144, 208])])
def test_features_non_square(cls, width, channels):
    model = cls(width=width, features_only=True).eval()
    assert model.out_channels == channels
    with torch.no_grad():
        features = model(torch.rand(1, 3, 192, 320))
    assert [tuple(f.shape) for f in features] == [(1, c, 192 // s, 320 // s) for c, s in zip(channels, (8, 16, 32))]
    # the ImageNet head (final 1x1 LastStageConv, conv_head, classifier) is not built
    with torch.device("meta"):
        classifier = cls(width=width)
    assert count_params(model) < count_params(classifier) - 1_000_000


def test_flops_helpers():
    model = GhostNet(width=1.0, features_only=True).train()
    params, macs = count_params_macs(model, (1, 3, 320, 320))
    assert model.training  # mode restored
    assert gflops(model, 320) == pytest.approx(2 * macs / 1e9)
    assert gflops(model, (320, 512)) == pytest.approx(2 * count_params_macs(model, (1, 3, 320, 512))[1] / 1e9)
    assert params == count_params(model)
    # conv + linear multiply-adds only: a lone 3x3 conv on 8x8 is 8*8 * 16*3*9 MACs, BN adds nothing
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1, bias=False), torch.nn.BatchNorm2d(16))
    assert count_params_macs(conv, (1, 3, 8, 8)) == (16 * 3 * 9 + 32, 8 * 8 * 16 * 3 * 9)


def _same_outputs(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def test_deepcopy_and_state_dict_round_trip():
    """A deepcopy (what EMA keeps) and a state_dict loaded into a freshly built model give bit-identical
    outputs; changing one weight of the copy changes its outputs and leaves the original's alone."""
    torch.manual_seed(0)
    model = _randomize_bn(GhostNetV2(width=1.0, features_only=True)).eval()
    torch.manual_seed(1)
    fresh = GhostNetV2(width=1.0, features_only=True).eval()  # another initialisation
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        reference = model(x)
        assert not _same_outputs(fresh(x), reference)  # the comparison below can fail
        fresh.load_state_dict(model.state_dict())  # strict: every key matches
        clone = copy.deepcopy(model)
        assert _same_outputs(fresh(x), reference) and _same_outputs(clone(x), reference)
        stem = next(p for p in clone.parameters() if p.ndim == 4)  # the first conv: feeds every output
        stem.mul_(1.5)
        assert not _same_outputs(clone(x), reference)
        assert _same_outputs(model(x), reference)  # the copy shares no tensor with the original


@pytest.mark.parametrize("build", [lambda: GhostNet(width=0.5, features_only=True),
                                   lambda: GhostNetV2(width=1.0, features_only=True),
                                   lambda: RepGhostNet(width=0.5, features_only=True),
                                   lambda: RepGhostNet(width=0.5)],
                         ids=["ghostnet", "ghostnetv2", "repghost", "repghost-classifier"])
@pytest.mark.parametrize("order", ["reparameterize-then-fuse", "fuse-then-reparameterize"])
def test_bn_folding_removes_every_batchnorm(build, order):
    """Deployment: re-parameterization and BN folding, in either order, leave no BN and the same outputs."""
    from ghostdet.models.layers import fuse_conv_bn_modules

    model = _randomize_bn(build()).eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        reference = model(x)
        steps = [reparameterize, fuse_conv_bn_modules]
        for step in steps if order.startswith("reparameterize") else steps[::-1]:
            step(model)
        folded = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for a, b in zip(*(t if isinstance(t, list) else [t] for t in (reference, folded))):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)


class _RecordConcats(torch.overrides.TorchFunctionMode):
    """Records the number of elements of every ``torch.cat`` result."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.cat:
            self.sizes.append(out.numel())
        return out


def test_ghostnet_deploy_form_concatenates_after_the_strided_conv():
    """GhostNet's strided blocks in deploy form run their depthwise conv on each half of the Ghost module and
    concatenate at the lower resolution: same outputs, and no map at the pre-stride resolution is concatenated."""
    from ghostdet.models.backbones.ghostnet import GhostDownsample

    model = _randomize_bn(GhostNet(width=1.0, features_only=True)).eval()
    x = torch.rand(1, 3, 128, 96)
    with torch.no_grad(), _RecordConcats() as before:
        reference = model(x)
    reparameterize(model)
    assert sum(isinstance(m, GhostDownsample) for m in model.modules()) == 4  # one per stride-2 bottleneck
    with torch.no_grad(), _RecordConcats() as after:
        deployed = model(x)
    for a, b in zip(reference, deployed):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    # stage 2's 48-channel concat at stride 2 (64x48 here) is the largest before, and is gone after
    assert max(before.sizes) == 48 * 64 * 48
    assert max(after.sizes) < max(before.sizes)
    reparameterize(model)  # idempotent
    assert sum(isinstance(m, GhostDownsample) for m in model.modules()) == 4


def test_add_residual_in_place_only_without_autograd():
    from ghostdet.models.layers import add_residual

    out, shortcut = torch.rand(2, 3), torch.rand(2, 3, requires_grad=True)
    expected = out + shortcut.detach()
    with torch.no_grad():
        result = add_residual(out.clone(), shortcut)
    torch.testing.assert_close(result, expected)
    buffer = out.clone()
    with torch.no_grad():
        assert add_residual(buffer, shortcut).data_ptr() == buffer.data_ptr()  # no new allocation
    branch = out.clone().requires_grad_()
    total = add_residual(branch * 1.0, shortcut)  # training: out of place, gradients reach both inputs
    total.sum().backward()
    assert torch.equal(branch.grad, torch.ones_like(out)) and torch.equal(shortcut.grad, torch.ones_like(out))
