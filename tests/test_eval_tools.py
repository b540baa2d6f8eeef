"""The evaluation loop on real loaders (YOLO-format split, in-memory ground truth) and tools/eval.py end to end:
checkpoints and exported files through the same evaluator, the newest best.pt by default, nothing left by a failure."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import YOLO_SPLIT_IMAGES
from ghostdet.eval import COCOEvaluator, evaluate_model
from helpers import (assert_one_line_error, make_checkpoint, run_tool, run_tool_in_process, run_tools_concurrently,
                     yolo_data_cfg)



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

    dataset = build_dataset(yolo_data_cfg(yolo_split), split="val", imgsz=160, augment=False)
    assert dataset.category_ids is None  # YOLO data: the in-memory GT's category id is the class index
    coco_gt = dataset.coco_gt()
    assert len(coco_gt.getImgIds()) == YOLO_SPLIT_IMAGES
    loader = build_dataloader(dataset, batch_size=3, workers=0, shuffle=False)
    model = _OracleDetector(loader, num_classes=dataset.num_classes)
    result = evaluate_model(model, loader, coco_gt, dataset.category_ids, names=dataset.names, progress=False)
    assert result.metrics["AP"] == pytest.approx(1.0, abs=1e-6)
    assert result.num_images == YOLO_SPLIT_IMAGES
    assert {d["image_id"] for d in result.detections} <= set(coco_gt.getImgIds())
    # the same detections from a json file give the same numbers
    assert COCOEvaluator(coco_gt).evaluate(result.detections)["AP"] == result.metrics["AP"]


@pytest.mark.slow
def test_eval_tool_on_a_checkpoint_writes_outputs(project_root, yolo_split, tmp_path):
    names = (yolo_split / "classes.txt").read_text().splitlines()
    data_cfg = OmegaConf.to_container(yolo_data_cfg(yolo_split))
    weights = make_checkpoint(tmp_path / "weights" / "best.pt", names, imgsz=64, data_cfg=data_cfg)
    out = tmp_path / "eval_run"
    # no data= and no imgsz=: the checkpoint's training data (val split) and size are used.
    # conf=0: a random-weight model scores below the usual 0.001; every candidate must flow through
    proc = run_tool("eval.py", f"weights={weights}", "batch=4", "workers=0", "conf=0", "max_det=20",
                    "progress=false", f"hydra.run.dir={out}", cwd=project_root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in proc.stdout
    assert "AP50-95" in proc.stdout and "Speed:" in proc.stdout and "ms inference" in proc.stdout

    detections = json.loads((out / "detections.json").read_text())
    assert 0 < len(detections) <= YOLO_SPLIT_IMAGES * 20
    d = detections[0]
    assert set(d) == {"image_id", "category_id", "bbox", "score"} and 0 <= d["category_id"] < 80
    assert len(d["bbox"]) == 4 and d["bbox"][2] >= 0 and d["bbox"][3] >= 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["speed_ms_per_image"]) == {"preprocess", "inference", "postprocess"}
    assert summary["num_images"] == YOLO_SPLIT_IMAGES and summary["settings"]["imgsz"] == 64
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
    assert not (tmp_path / "run").exists()  # a failed evaluation leaves no run dir


def test_eval_without_weights_and_a_failed_eval_leave_nothing(project_root, yolo_split, tmp_path, monkeypatch, capsys):
    """No weights= and no runs/train: one line, no run dir. A bad imgsz or data root fails after Hydra made the run
    dir: it is removed again, and a hydra.run.dir that holds files is refused before anything is written."""
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_tool("eval.py", cwd=empty)
    assert_one_line_error(proc, "no weights given", "runs/train/*/*/weights/best.pt")
    assert list(empty.iterdir()) == []
    weights = make_checkpoint(tmp_path / "w" / "best.pt", ["a", "b"], imgsz=64)
    full = tmp_path / "full"
    full.mkdir()
    (full / "metrics.json").write_text("{}")
    for args, fragment in ((["imgsz=100", f"data.root={yolo_split}"], "100"),
                           ([f"data.root={tmp_path / 'nowhere'}"], "nowhere"),
                           ([f"data.root={yolo_split}", f"hydra.run.dir={full}"], "already holds files")):
        run_dir = [] if any(a.startswith("hydra.run.dir=") for a in args) else [f"hydra.run.dir={tmp_path / 'run'}"]
        code, _out, err = run_tool_in_process(project_root, "eval.py", f"weights={weights}", "data=yolo", *args,
                                              *run_dir, monkeypatch=monkeypatch, capsys=capsys)
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
        assert not (tmp_path / "run").exists()
    assert [p.name for p in full.iterdir()] == ["metrics.json"] and (full / "metrics.json").read_text() == "{}"


@pytest.mark.slow
def test_eval_takes_the_newest_best_pt_and_scores_its_exports_alike(yolo_split, tmp_path):
    """weights= omitted: the newest runs/train/*/*/weights/best.pt. weights=best.onnx / best_openvino/: the same
    evaluator through ONNX Runtime / OpenVINO, on the data of the best.pt beside them, with the checkpoint's mAP."""
    names = (yolo_split / "classes.txt").read_text().splitlines()
    data_cfg = OmegaConf.to_container(yolo_data_cfg(yolo_split))
    weights = make_checkpoint(tmp_path / "runs" / "train" / "d" / "t" / "weights" / "best.pt", names, imgsz=64,
                              data_cfg=data_cfg)
    # each command in its own process (OpenVINO does not share one with torch + ONNX Runtime), side by side
    for proc in run_tools_concurrently([("export.py", "--weights", weights, "--format", fmt, "--no-check")
                                        for fmt in ("onnx", "openvino")], cwd=tmp_path):
        assert proc.returncode == 0, proc.stderr[-2000:]
    common = ["batch=4", "workers=0", "conf=0", "max_det=20", "progress=false", "plots=false"]
    maps = {}
    evals = {"pt": [], "onnx": [f"weights={weights.with_suffix('.onnx')}"],
             "openvino": [f"weights={weights.parent / 'best_openvino'}", "precision=fp32"]}
    procs = run_tools_concurrently([("eval.py", *weights_arg, *common, f"hydra.run.dir={tmp_path / ('eval_' + name)}")
                                    for name, weights_arg in evals.items()], cwd=tmp_path)
    for name, proc in zip(evals, procs):
        assert proc.returncode == 0, proc.stderr[-2000:]
        if name == "pt":
            assert "using runs/train/d/t/weights/best.pt" in proc.stdout
        summary = json.loads((tmp_path / f"eval_{name}" / "metrics.json").read_text())
        assert summary["settings"]["runtime"].startswith({"pt": "pytorch", "onnx": "onnxruntime"}.get(name, name))
        maps[name] = summary["metrics"]["AP50"]
        assert summary["num_images"] == YOLO_SPLIT_IMAGES and summary["settings"]["imgsz"] == 64
    assert maps["onnx"] == pytest.approx(maps["pt"], abs=0.01) and maps["openvino"] == pytest.approx(maps["pt"], abs=0.01)
