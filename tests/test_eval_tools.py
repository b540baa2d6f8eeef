"""The evaluation loop on real loaders (YOLO-format split, in-memory ground truth) and tools/eval.py end to end."""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from ghostdet.eval import COCOEvaluator, evaluate_model

NUM_IMAGES = 8


@pytest.fixture(scope="module")
def yolo_split(coco128, tmp_path_factory) -> Path:
    """A YOLO-format folder (images/val, labels/val, classes.txt) with the first coco128 images, one a background image."""
    root = tmp_path_factory.mktemp("yolo_split")
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    stems = sorted(p.stem for p in (coco128 / "images" / "train2017").glob("*.jpg"))[:NUM_IMAGES - 1] + ["000000000250"]
    for stem in stems:
        os.symlink(coco128 / "images" / "train2017" / f"{stem}.jpg", root / "images" / "val" / f"{stem}.jpg")
        label = coco128 / "labels" / "train2017" / f"{stem}.txt"
        if label.exists():  # 000000000250 is a background image: no label file
            shutil.copy(label, root / "labels" / "val" / label.name)
    shutil.copy(coco128 / "classes.txt", root / "classes.txt")
    return root


def _yolo_data_cfg(root: Path):
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "data" / "yolo.yaml")
    cfg.root = str(root)
    cfg.cache = False
    return cfg


class _OracleDetector(torch.nn.Module):
    """Returns, batch by batch, the loader's own targets (input pixels) as detections: a perfect detector."""

    def __init__(self, loader, num_classes: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.num_classes = num_classes
        self.replies = []
        for images, targets, _metas, _ignore in loader:
            per_image = []
            for i in range(len(images)):
                t = targets[targets[:, 0] == i]
                per_image.append({"boxes": t[:, 2:6], "scores": torch.ones(len(t)), "labels": t[:, 1].long()})
            self.replies.append(per_image)

    def predict(self, images, conf=0.25, iou=0.45, max_det=300):
        return self.replies.pop(0)


def test_yolo_split_evaluated_through_builder_and_loader(yolo_split):
    """Loader letterbox -> predictions in input pixels -> unletterbox -> COCO results vs the in-memory GT: AP 1."""
    from ghostdet.data import build_dataloader, build_dataset

    dataset = build_dataset(_yolo_data_cfg(yolo_split), split="val", imgsz=160, augment=False)
    assert dataset.category_ids is None  # YOLO data: the in-memory GT's category id is the class index
    coco_gt = dataset.coco_gt()
    assert len(coco_gt.getImgIds()) == NUM_IMAGES
    loader = build_dataloader(dataset, batch_size=3, workers=0, shuffle=False)
    model = _OracleDetector(loader, num_classes=dataset.num_classes)
    result = evaluate_model(model, loader, coco_gt, dataset.category_ids, names=dataset.names, progress=False)
    assert result.metrics["AP"] == pytest.approx(1.0, abs=1e-6)
    assert result.num_images == NUM_IMAGES
    assert {d["image_id"] for d in result.detections} <= set(coco_gt.getImgIds())
    # the same detections from a json file give the same numbers
    assert COCOEvaluator(coco_gt).evaluate(result.detections)["AP"] == result.metrics["AP"]


def _tiny_model_cfg() -> dict:
    """configs/model/ghost_yolo.yaml at GhostNet width 0.25 and a 32-channel neck: the real detector, CPU-test sized."""
    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "model" / "ghost_yolo.yaml")
    cfg.backbone.width = 0.25
    cfg.neck_channels = 32
    return OmegaConf.to_container(cfg)


def make_checkpoint(path: Path, names: list[str], imgsz: int = 64, data_cfg=None) -> Path:
    from ghostdet.models import build_model

    from ghostdet.utils.checkpoint import save_checkpoint

    cfg = _tiny_model_cfg()
    torch.manual_seed(0)
    model = build_model(OmegaConf.create(cfg), num_classes=len(names))
    return save_checkpoint({"model": model.state_dict(), "ema": None, "epoch": 1,
                            "config": {"model": cfg, "imgsz": imgsz, "data": data_cfg}, "names": names, "category_ids": None,
                            "metrics": {}, "ghostdet_version": "test"}, path)


def run_tool(project_root: Path, tool: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """The tool as a user runs it: a fresh process from the project root."""
    return subprocess.run([sys.executable, str(project_root / "tools" / tool), *args], cwd=project_root,
                          capture_output=True, text=True, timeout=timeout)


def run_tool_in_process(project_root: Path, tool: str, *args: str, monkeypatch, capsys) -> tuple[int, str, str]:
    """The tool's Hydra main called in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    import importlib.util

    monkeypatch.chdir(project_root)
    monkeypatch.syspath_prepend(str(project_root / "tools"))
    monkeypatch.setattr(sys, "argv", [str(project_root / "tools" / tool), *args])
    # named __main__ so Hydra resolves config_path from the file, as when run as a script (whose last line calls main)
    spec = importlib.util.spec_from_file_location("__main__", project_root / "tools" / tool)
    code = 0
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow
def test_eval_tool_on_a_checkpoint_writes_outputs(project_root, yolo_split, tmp_path):
    names = (yolo_split / "classes.txt").read_text().splitlines()
    data_cfg = OmegaConf.to_container(_yolo_data_cfg(yolo_split))
    weights = make_checkpoint(tmp_path / "weights" / "best.pt", names, imgsz=64, data_cfg=data_cfg)
    out = tmp_path / "eval_run"
    # no data= and no imgsz=: the checkpoint's training data (val split) and size are used.
    # conf=0: a random-weight model scores below the usual 0.001; every candidate must flow through
    proc = run_tool(project_root, "eval.py", f"weights={weights}", "batch=4", "workers=0", "conf=0", "max_det=20",
                    "progress=false", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in proc.stdout
    assert "AP50-95" in proc.stdout and "Speed:" in proc.stdout and "ms inference" in proc.stdout

    detections = json.loads((out / "detections.json").read_text())
    assert 0 < len(detections) <= NUM_IMAGES * 20
    d = detections[0]
    assert set(d) == {"image_id", "category_id", "bbox", "score"} and 0 <= d["category_id"] < 80
    assert len(d["bbox"]) == 4 and d["bbox"][2] >= 0 and d["bbox"][3] >= 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["speed_ms_per_image"]) == {"preprocess", "inference", "postprocess"}
    assert summary["num_images"] == NUM_IMAGES and summary["settings"]["imgsz"] == 64
    assert 0.0 <= summary["metrics"]["AP"] <= 1.0 and "per_class" in summary["metrics"]
    assert (out / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("kind", ["missing", "booby_trapped", "not_a_checkpoint", "no_data_anywhere"])
def test_eval_tool_rejects_bad_weights_with_one_line(project_root, tmp_path, kind, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    weights = tmp_path / "best.pt"
    if kind == "booby_trapped":  # a pickle that runs code on a plain torch.load
        with open(weights, "wb") as f:
            pickle.dump({"model": _Payload(marker)}, f, protocol=2)
    elif kind == "not_a_checkpoint":
        torch.save({"weights": torch.zeros(3)}, weights)
    elif kind == "no_data_anywhere":  # a valid checkpoint that stores no data config, and no data= given
        make_checkpoint(weights, ["a", "b"])
    data = [] if kind == "no_data_anywhere" else ["data=coco128"]
    code, _out, err = run_tool_in_process(project_root, "eval.py", f"weights={weights}", *data,
                                          f"hydra.run.dir={tmp_path / 'run'}", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(weights) in lines[0]
    assert not marker.exists()  # the payload never ran
