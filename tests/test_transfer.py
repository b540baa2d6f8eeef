"""Fine-tuning from a ghostdet checkpoint (ghostdet/models/transfer.py) and slim deployment checkpoints
(ghostdet/utils/slim.py)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from ghostdet.models import build_model
from ghostdet.models.transfer import load_matching_weights
from ghostdet.utils.errors import CheckpointError

CLASS_KEYS = [f"head.cls_preds.{i}.{p}" for i in range(3) for p in ("weight", "bias")]


def spec(backbone="ghostnet", neck=32, **backbone_kw) -> dict:
    kw = {"width": 0.25} if backbone == "ghostnet" else {}
    return {"name": "ghost_yolo", "backbone": {"name": backbone, "features_only": True, **kw, **backbone_kw},
            "neck_channels": neck}


def save_ghostdet_checkpoint(path, model_spec, num_classes, seed=0) -> dict:
    """A trainer-layout checkpoint whose EMA weights differ from its raw ones (so we can tell which were taken)."""
    torch.manual_seed(seed)
    ema = build_model(model_spec, num_classes=num_classes)
    raw = {k: v + 1 if v.is_floating_point() else v for k, v in ema.state_dict().items()}
    ckpt = {"model": raw, "ema": ema.state_dict(), "optimizer": {}, "epoch": 3, "model_spec": model_spec,
            "names": [f"c{i}" for i in range(num_classes)], "config": {"imgsz": 64}, "metrics": {},
            "ghostdet_version": "test"}
    torch.save(ckpt, path)
    return ema.state_dict()


def fresh(model_spec, num_classes, seed=1):
    torch.manual_seed(seed)
    model = build_model(model_spec, num_classes=num_classes)
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def test_other_number_of_classes_reinitialises_only_the_class_branch(tmp_path):
    path = tmp_path / "best.pt"
    ema = save_ghostdet_checkpoint(path, spec(), 80)
    model, before = fresh(spec(), 1)
    report = load_matching_weights(model, path)
    n = len(before)
    assert sorted(report.reinitialised) == sorted(CLASS_KEYS) and sorted(report.unused) == sorted(CLASS_KEYS)
    assert str(report) == (f"loaded {n - 6}/{n} tensors from {path}; re-initialised 6 "
                           f"(class branch: 80 -> 1 classes); 6 checkpoint tensors unused")
    after = model.state_dict()
    for key in after:
        expected = before[key] if key in CLASS_KEYS else ema[key]  # the EMA weights, not the raw ones
        assert torch.equal(after[key], expected), key


def test_same_backbone_with_another_neck_gives_the_backbone(tmp_path):
    path = tmp_path / "neck64.pt"
    ema = save_ghostdet_checkpoint(path, spec(neck=64), 3)
    model, before = fresh(spec(neck=32), 3)
    report = load_matching_weights(model, path)
    after = model.state_dict()
    backbone = [k for k in after if k.startswith("backbone.")]
    assert backbone and set(backbone) <= set(report.loaded)
    assert all(torch.equal(after[k], ema[k]) for k in backbone)
    assert not [k for k in report.loaded if k.startswith("head.")]
    for key in report.reinitialised:  # whole layers: nothing half-loaded
        assert torch.equal(after[key], before[key]), key
        assert not any(k.rsplit(".", 1)[0] == key.rsplit(".", 1)[0] for k in report.loaded), key
    text = str(report)
    assert "re-initialised" in text and "neck" in text and "head" in text and "\n" not in text


def test_identical_model_loads_everything(tmp_path):
    path = tmp_path / "same.pt"
    ema = save_ghostdet_checkpoint(path, spec(), 2)
    model, _ = fresh(spec(), 2)
    report = load_matching_weights(model, path)
    assert not report.reinitialised and not report.unused and str(report).startswith(f"loaded {len(ema)}/{len(ema)}")
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_that_shares_nothing_is_refused(tmp_path):
    path = tmp_path / "gghost.pt"
    save_ghostdet_checkpoint(path, spec("gghost_regnet", neck=64, variant="002"), 3)
    model, before = fresh(spec(), 80)
    with pytest.raises(CheckpointError, match=r"gghost.pt: shares no layer with this model .*gghost_regnet") as err:
        load_matching_weights(model, path)
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # untouched


class Booby:
    def __reduce__(self):
        return (os.system, ("echo owned",))


@pytest.mark.parametrize("content, match", [
    ("state_dict", "not a ghostdet training checkpoint"),
    ("random", "not a (readable )?PyTorch checkpoint"),
    ("pickle", "refused to load"),
    ("missing", "no such checkpoint file"),
])
def test_files_that_are_not_ghostdet_checkpoints_are_refused(tmp_path, content, match):
    path = tmp_path / "weights.pt"
    if content == "state_dict":  # a bare state dict of the very same model: no spec, so not a ghostdet checkpoint
        torch.save(build_model(spec(), num_classes=3).state_dict(), path)
    elif content == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    elif content == "pickle":
        torch.save({"model": Booby(), "model_spec": spec()}, path)
    model, _ = fresh(spec(), 3)
    with pytest.raises(CheckpointError, match=match) as err:
        load_matching_weights(model, path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


# ------------------------------------------------------------------------------------------ slim checkpoints
@pytest.fixture(scope="module")
def trained_best(tmp_path_factory):
    """A checkpoint in the trainer's layout (Trainer.checkpoint): raw and EMA weights, AdamW moments after a step,
    scheduler, RNG state and metadata. (A real run takes a minute of this shared CPU; the layout is what matters.)"""
    from ghostdet.utils.checkpoint import save_checkpoint

    model_spec = spec()
    torch.manual_seed(0)
    model = build_model(model_spec, num_classes=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for param in model.parameters():  # one step fills AdamW's two moments per weight (no forward needed)
        param.grad = torch.randn_like(param)
    optimizer.step()
    ema = build_model(model_spec, num_classes=3)
    ema.load_state_dict({k: v * 0.5 if v.is_floating_point() else v for k, v in model.state_dict().items()})
    ckpt = {"model": model.state_dict(), "ema": ema.state_dict(), "ema_updates": 10, "optimizer": optimizer.state_dict(),
            "scheduler": {"last_epoch": 4}, "scaler": {}, "epoch": 1, "interrupted": False,
            "rng": {"torch": torch.get_rng_state()}, "config": {"imgsz": 64, "model": model_spec},
            "names": ["a", "b", "c"], "category_ids": None, "metrics": {"mAP50": 0.1}, "best_fitness": 0.05,
            "best_metrics": {"mAP50": 0.1, "epoch": 1}, "model_spec": model_spec, "ghostdet_version": "test",
            "date": "2026-12-06T00:00:00+00:00"}
    return save_checkpoint(ckpt, tmp_path_factory.mktemp("slim") / "best.pt")


def test_slim_checkpoint_is_smaller_and_predicts_identically(trained_best, tmp_path, shared_data):
    from ghostdet import Detector
    from ghostdet.utils.checkpoint import load_checkpoint
    from ghostdet.utils.slim import slim_checkpoint

    slim = slim_checkpoint(trained_best, tmp_path / "deploy" / "best_slim.pt")
    assert slim.stat().st_size < 0.35 * trained_best.stat().st_size  # 1 of the 4 model-sized parts
    assert stat.S_IMODE(slim.stat().st_mode) == 0o644
    data = load_checkpoint(slim)
    assert data["slim"] is True and "optimizer" not in data and "ema" not in data
    full, thin = load_checkpoint(trained_best), data
    assert thin["names"] == full["names"] and thin["model_spec"] == full["model_spec"]
    assert all(torch.equal(v, full["ema"][k]) for k, v in thin["model"].items())
    image = str(shared_data / "images" / "dog.jpg")
    a = Detector.from_checkpoint(trained_best, conf=0.001).predict(image)[0]
    b = Detector.from_checkpoint(slim, conf=0.001).predict(image)[0]
    assert len(a.boxes) > 0
    for key in ("boxes", "scores", "labels"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key
    # fine-tuning reads a slim file too
    model = build_model(thin["model_spec"], num_classes=len(thin["names"]))
    assert not load_matching_weights(model, slim).reinitialised


def test_slim_in_place_and_refusals(trained_best, tmp_path):
    import shutil

    from ghostdet.utils.slim import slim_checkpoint

    copy = tmp_path / "best.pt"
    shutil.copy(trained_best, copy)
    assert slim_checkpoint(copy) == copy and copy.stat().st_size < trained_best.stat().st_size
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # no temporary file left behind
    bare = tmp_path / "bare.pt"
    torch.save({"a": torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match="bare.pt: not a ghostdet training checkpoint"):
        slim_checkpoint(bare, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
