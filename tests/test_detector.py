"""Ghost-YOLO detector: shapes, post-processing, BN folding / re-parameterization, budget, Hydra configs,
and a real learning test on coco128 images."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from ghostdet.models import build_model
from torchvision.ops import box_iou

from ghostdet.data.letterbox import letterbox, letterbox_boxes
from ghostdet.models import GhostNet, GhostYOLO, reparameterize
from ghostdet.models.loss import DetectionLoss
from ghostdet.models.postprocess import postprocess
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.flops import count_params_macs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
MODEL_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml"))


def compose_model_config(name: str, overrides=()):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[f"model={name}", *overrides]).model


def small_detector(num_classes=5, **kwargs):
    return GhostYOLO(GhostNet(width=0.5, features_only=True), num_classes=num_classes, neck_channels=32,
                     head_convs=1, **kwargs)


def randomize_batchnorm(model: nn.Module):
    """Non-trivial BN statistics and affine parameters, so folding them is actually exercised."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ---------------------------------------------------------------- shapes / decode
@pytest.mark.parametrize("hw", [(320, 320), (320, 512), (96, 64)])
def test_output_shapes(hw):
    model = small_detector(num_classes=5).eval()
    h, w = hw
    with torch.no_grad():
        raw = model(torch.rand(2, 3, h, w))
        assert [tuple(r.shape) for r in raw] == [(2, 4 * 16 + 5, h // s, w // s) for s in (8, 16, 32)]
        boxes, scores = model.decode(raw)
    anchors = sum((h // s) * (w // s) for s in (8, 16, 32))
    assert boxes.shape == (2, anchors, 4) and scores.shape == (2, anchors, 5)
    assert 0 <= scores.min() and scores.max() <= 1
    assert torch.all(boxes[..., 2:] >= boxes[..., :2])
    # all-zero logits: scores sigmoid(0) = 0.5; every DFL side the mean bin, (0 + ... + 15) / 16 = 7.5 strides,
    # around its anchor: the first P3 anchor (4, 4) at stride 8, the first P5 anchor (16, 16) at stride 32
    boxes, scores = model.decode([torch.zeros_like(r) for r in raw])
    assert torch.all(scores == 0.5)
    p5_first = (h // 8) * (w // 8) + (h // 16) * (w // 16)
    torch.testing.assert_close(boxes[:, 0], torch.tensor([[4 - 60.0, 4 - 60.0, 4 + 60.0, 4 + 60.0]] * 2))
    torch.testing.assert_close(boxes[:, p5_first], torch.tensor([[16 - 240.0, 16 - 240.0, 16 + 240.0, 16 + 240.0]] * 2))


def test_decode_maps_distances_to_input_pixels():
    model = small_detector(num_classes=2).eval()
    h, w = 64, 96
    raw = [torch.zeros(1, 4 * 16 + 2, h // s, w // s) for s in (8, 16, 32)]
    # all bin logits equal except one: put the mass on bin 2 for every side of the second P5 anchor
    raw[2][0, [2, 18, 34, 50], 0, 1] = 50.0
    boxes, _ = model.decode(raw)
    p5_first = (h // 8) * (w // 8) + (h // 16) * (w // 16)
    # anchor centre (1.5, 0.5) * 32 = (48, 16); distance 2 * 32 = 64 on each side
    torch.testing.assert_close(boxes[0, p5_first + 1], torch.tensor([-16.0, -48.0, 112.0, 80.0]))


@pytest.mark.parametrize("num_classes,reg_max", [(1, 16), (3, 8)])
def test_decode_gives_the_boxes_the_loss_trains(num_classes, reg_max):
    # decode works channels-first for speed; the loss reads flatten() + distances(): both must give the same boxes
    from ghostdet.models.boxes import dist2bbox
    from ghostdet.models.heads.yolo_head import YOLOHead

    head = YOLOHead([16, 16, 16], num_classes, reg_max=reg_max).eval()
    torch.manual_seed(0)
    raw = [torch.randn(2, 4 * reg_max + num_classes, 64 // s, 96 // s) * 3 for s in (8, 16, 32)]
    boxes, scores = head.decode(raw)
    box_logits, cls_logits = head.flatten(raw)
    points, stride = head.anchors(raw)
    torch.testing.assert_close(boxes, dist2bbox(head.distances(box_logits), points) * stride, rtol=0, atol=1e-3)
    torch.testing.assert_close(scores, cls_logits.sigmoid())


def test_input_size_must_be_a_multiple_of_32():
    model = small_detector()
    with pytest.raises(ConfigError, match="multiple of 32"):
        model(torch.rand(1, 3, 100, 128))


def test_backbone_without_out_channels_is_a_config_error():
    with pytest.raises(ConfigError, match="out_channels"):
        GhostYOLO(nn.Conv2d(3, 8, 3), num_classes=3)


def test_predict_returns_per_image_dicts_and_keeps_training_mode():
    model = small_detector(num_classes=3).train()
    out = model.predict(torch.rand(2, 3, 64, 64), conf=0.0, iou=1.0, max_det=7)  # untrained: no NMS
    assert model.training
    assert len(out) == 2
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape == (7, 4) and det["labels"].dtype == torch.int64
        assert det["boxes"].min() >= 0 and det["boxes"][:, [0, 2]].max() <= 64
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])


# ---------------------------------------------------------------- post-processing
def test_nms_is_class_aware():
    boxes = torch.tensor([[[10.0, 10, 50, 50], [12, 12, 52, 52], [11, 11, 51, 51], [100, 100, 140, 140]]])
    scores = torch.zeros(1, 4, 3)
    scores[0, 0, 0] = 0.9  # class 0
    scores[0, 1, 0] = 0.8  # class 0, overlaps box 0 -> suppressed
    scores[0, 2, 1] = 0.7  # class 1, overlaps box 0 -> kept
    scores[0, 3, 2] = 0.1  # below conf
    det = postprocess(boxes, scores, conf=0.25, iou=0.45)[0]
    assert det["labels"].tolist() == [0, 1]
    torch.testing.assert_close(det["scores"], torch.tensor([0.9, 0.7]))
    torch.testing.assert_close(det["boxes"], boxes[0, [0, 2]])
    # class filter, max_det, numpy input (ONNX Runtime outputs) and a single image without batch axis
    assert postprocess(boxes, scores, conf=0.25, classes=[1])[0]["labels"].tolist() == [1]
    assert postprocess(boxes.numpy(), scores.numpy(), conf=0.05, max_det=1)[0]["labels"].tolist() == [0]
    assert len(postprocess(boxes[0], scores[0], conf=0.05)[0]["boxes"]) == 3
    with pytest.raises(ConfigError):
        postprocess(boxes, scores, classes=[3])


def test_multi_label_keeps_every_class_above_conf():
    boxes = torch.tensor([[[0.0, 0, 10, 10]]])
    scores = torch.tensor([[[0.6, 0.5, 0.01]]])
    assert postprocess(boxes, scores, conf=0.25)[0]["labels"].tolist() == [0]
    assert postprocess(boxes, scores, conf=0.25, multi_label=True)[0]["labels"].tolist() == [0, 1]
    empty = postprocess(torch.zeros(2, 0, 4), torch.zeros(2, 0, 3))
    assert len(empty) == 2 and empty[0]["boxes"].shape == (0, 4)


# ---------------------------------------------------------------- fuse / reparameterize
@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_fuse_and_reparameterize_keep_outputs(name):
    model = build_model(compose_model_config(name), num_classes=7)
    randomize_batchnorm(model)
    model.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        reference = model.decode(model(x))
        deployed = copy.deepcopy(model)
        reparameterize(deployed)
        deployed.fuse()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.neck.modules())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.head.modules())
        fused = deployed.decode(deployed(x))
    assert (reference[0] - fused[0]).abs().max() < 1e-3  # pixels
    assert (reference[1] - fused[1]).abs().max() < 1e-3
    raw_ref, raw_fused = model(x), deployed(x)
    assert max((a - b).abs().max() for a, b in zip(raw_ref, raw_fused)) < 1e-3


# ---------------------------------------------------------------- budget / configs
def test_ghost_yolo_budget():
    model = build_model(compose_model_config("ghost_yolo"), num_classes=80)
    params, macs = count_params_macs(model, (1, 3, 640, 640))
    assert params <= 4.0e6
    assert 2 * macs / 1e9 <= 4.0


@pytest.mark.parametrize("name,params_m,gflops", [("gghost_yolo", 1.80, 3.72), ("gghost_yolo_lite", 1.60, 2.74)])
def test_the_readme_model_table_figures(name, params_m, gflops):
    # the README's model table (80 classes, training form, 640)
    params, macs = count_params_macs(build_model(compose_model_config(name), num_classes=80), (1, 3, 640, 640))
    assert round(params / 1e6, 2) == params_m and round(2 * macs / 1e9, 2) == gflops


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_configs_instantiate_and_predict(name):
    reference = compose_model_config(name)
    scalable = "width" in reference.backbone  # G-Ghost RegNet scales by variant instead
    cfg = compose_model_config(name, ["model.neck_channels=64"] + (["model.backbone.width=1.3"] if scalable else []))
    model = build_model(cfg, num_classes=4)
    assert isinstance(model, GhostYOLO) and model.num_classes == 4 and model.strides == (8, 16, 32)
    assert model.neck.out_channels == [64, 64, 64]
    if scalable:  # the width override reaches the backbone
        assert model.backbone.out_channels != build_model(reference, num_classes=4).backbone.out_channels
    out = model.predict(torch.rand(1, 3, 96, 128), conf=0.0, iou=1.0, max_det=5)
    assert len(out) == 1 and out[0]["boxes"].shape == (5, 4) and int(out[0]["labels"].max()) < 4


def test_fpn_only_switch():
    model = build_model(compose_model_config("ghost_yolo", ["model.fpn_only=true"]), num_classes=3)
    assert not hasattr(model.neck, "bottom_up")
    raw = model(torch.rand(1, 3, 64, 64))
    assert [r.shape[-1] for r in raw] == [8, 4, 2]


# ---------------------------------------------------------------- learning
OVERFIT_IMAGES = (34, 42, 36, 72)  # 6 boxes of 5 classes; the labels are coco128's YOLO files


def load_yolo_batch(coco128: Path, ids, size: int):
    images, targets = [], []
    for batch_idx, image_id in enumerate(ids):
        stem = f"{image_id:012d}"
        image = cv2.cvtColor(cv2.imread(str(coco128 / "images" / "train2017" / f"{stem}.jpg")), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        labels = np.loadtxt(coco128 / "labels" / "train2017" / f"{stem}.txt", ndmin=2, dtype=np.float32)
        cx, cy, bw, bh = labels[:, 1] * w, labels[:, 2] * h, labels[:, 3] * w, labels[:, 4] * h
        xyxy = np.stack((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), 1)
        image, ratio, pad = letterbox(image, size)
        boxes = letterbox_boxes(xyxy, ratio, pad)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        targets.append(np.concatenate((np.full((len(boxes), 1), batch_idx), labels[:, :1], boxes), 1))
    return torch.stack(images), torch.from_numpy(np.concatenate(targets)).float()


@pytest.mark.slow
def test_overfits_a_batch_of_real_images(coco128):
    images, targets = load_yolo_batch(coco128, OVERFIT_IMAGES, 320)
    model = small_detector(num_classes=80)
    loss_fn = DetectionLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    history = []
    for _ in range(150):
        loss, _ = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(float(loss.detach()))
    # steadily down: the mean over each stretch of 15 steps is below the previous one's, overall by > 5x
    windows = [float(np.mean(history[i:i + 15])) for i in (0, 45, 90, 135)]
    assert all(b < a for a, b in zip(windows, windows[1:])), windows
    assert windows[-1] < windows[0] / 5, windows

    detections = model.predict(images, conf=0.25, iou=0.45)
    for batch_idx, det in enumerate(detections):
        gt = targets[targets[:, 0] == batch_idx]
        assert len(det["boxes"]), f"image {OVERFIT_IMAGES[batch_idx]}: no detections"
        ious = box_iou(gt[:, 2:], det["boxes"])
        same_class = gt[:, 1:2].long() == det["labels"][None]
        best = (ious * same_class).max(1).values
        assert torch.all(best > 0.5), f"image {OVERFIT_IMAGES[batch_idx]}: best IoU per box {best.tolist()}"


def test_pretrained_backbone_override_loads_imagenet_weights(tmp_path):
    # an ImageNet-classifier GhostNet saved by its own key names, loaded through the Hydra override
    imagenet = GhostNet(width=1.0, num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "ghostnet_1x.pth")
    cfg = compose_model_config("ghost_yolo", [f"model.backbone.pretrained={tmp_path / 'ghostnet_1x.pth'}"])
    model = build_model(cfg, num_classes=3)
    loaded = model.backbone.state_dict()
    assert loaded and all(torch.equal(v, imagenet.state_dict()[k]) for k, v in loaded.items())


@pytest.mark.parametrize("imgsz,hint", [(500, "use 480 or 512"), ((100, 128), "use (96, 128) or (128, 128)")])
def test_detector_refuses_input_sizes_off_the_stride_like_the_trainer(imgsz, hint):
    # one rule for training, inference and export: refuse and name the nearest sizes (no silent rounding)
    from ghostdet.export.onnx import export_onnx
    from ghostdet.inference import Detector

    model = small_detector().eval()
    with pytest.raises(ConfigError, match=re.escape(hint)):
        Detector.from_model(model, imgsz=imgsz)
    with pytest.raises(ConfigError, match=re.escape(hint)):
        export_onnx(model, "/nonexistent/never-written.onnx", imgsz=imgsz)
    assert Detector.from_model(model, imgsz=(96, 128)).imgsz == (96, 128)


def test_memory_format_policy_lives_in_the_model():
    # one policy (GhostYOLO.use_channels_last): the trainer and the PyTorch Detector only call it
    model = small_detector()
    seen = []
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    x = torch.rand(2, 3, 64, 64)
    model.train()(x)
    model.eval()(x)  # CPU inference: NHWC without being asked
    model.use_channels_last().train()(x)
    assert seen == [False, True, True]
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_the_readme_build_model_example_builds_a_detector():
    """README / docs/models.md: a detector spec whose backbone omits features_only (it defaults to true inside a
    detector; a backbone built alone keeps its own default)."""
    import torch

    from ghostdet.models import build_model

    model = build_model({"name": "ghost_yolo", "backbone": {"name": "ghostnet", "width": 1.0}}, num_classes=3).eval()
    out = model.predict(torch.rand(1, 3, 128, 128), conf=0.25, iou=0.45)
    assert len(out) == 1 and set(out[0]) == {"boxes", "scores", "labels"}
