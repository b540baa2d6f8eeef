"""Exports never lose what was there (issue 23 §2/§7): every file and folder is staged beside its destination and
swapped in whole, --half does not take fp32's name, int8 staging creates the output's folder, and the export check
compares raw decoded outputs on a real photo (an NMS graph too), so it cannot pass on nothing. The OpenVINO cases
are in openvino_cases.py (their own process)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import make_checkpoint, run_main_in_process, tiny_model_cfg

pytestmark = pytest.mark.usefixtures("one_thread")
IMGSZ = 64


def digest(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path) if path.is_dir() else p.name): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def model():
    from omegaconf import OmegaConf

    from ghostdet.models import build_model

    return build_model(OmegaConf.create(tiny_model_cfg()), num_classes=3).eval()


def test_a_failed_onnx_export_leaves_the_old_file(model, tmp_path, monkeypatch):
    import onnx

    from ghostdet.export.onnx import export_onnx

    out = export_onnx(model, tmp_path / "best.onnx", IMGSZ)
    before = digest(out)

    def broken_save(proto, path, *a, **k):
        Path(path).write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(model, out, IMGSZ)
    assert digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["best.onnx"]


def test_half_gets_its_own_name_and_keeps_the_fp32_export(tmp_path):
    weights = make_checkpoint(tmp_path / "best.pt", ["a", "b", "c"])
    fp32 = tmp_path / "best.onnx"
    fp32.write_bytes(b"the fp32 export of an earlier run")
    proc = run_main_in_process("export", "--weights", weights, "--half", "--no-check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "best_fp16.onnx").is_file() and fp32.read_bytes() == b"the fp32 export of an earlier run"
    assert "best_fp16.onnx" in proc.stdout


def test_int8_is_staged_beside_an_output_whose_folder_does_not_exist_yet(model, tmp_path, monkeypatch):
    import ghostdet.export.accuracy as accuracy
    import ghostdet.export.onnx as onnx_export
    from ghostdet.export.calibration import synthetic_calibration
    from ghostdet.inference.backends.onnxruntime import read_metadata

    fp32 = onnx_export.export_onnx(model, tmp_path / "best.onnx", IMGSZ, names=["a", "b", "c"])
    out = tmp_path / "new" / "deeper" / "best_int8.onnx"
    staged_in = []
    real = onnx_export.quantize

    def recording(fp32_path, staged, images, **kw):
        staged_in.append(Path(staged))
        return real(fp32_path, staged, images, **kw)

    class Val:
        dataset = type("D", (), {"num_classes": 3})()
        description = "2 fake val images"

    monkeypatch.setattr(onnx_export, "quantize", recording)
    monkeypatch.setattr(accuracy, "calibration_images", lambda *a, **k: (synthetic_calibration((IMGSZ, IMGSZ), 4), "4 scenes"))
    monkeypatch.setattr(accuracy.ValSplit, "build", classmethod(lambda cls, *a, **k: Val()))
    monkeypatch.setattr(accuracy, "evaluate_runtime", lambda m, val: {"mAP50-95": 0.5, "mAP50": 0.7})
    result = accuracy.quantize_export(fp32, "onnx", {"root": "x"}, (IMGSZ, IMGSZ), out=out)
    assert result.ok and out.is_file() and staged_in[0].parent.parent == out.parent  # beside the output, same fs
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["int8"]["map_drop_points"] == 0 and meta["names"] == ["a", "b", "c"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["best_int8.onnx"]  # no staging left behind


def test_the_check_photo_is_real_unless_none_is_at_hand(tmp_path, monkeypatch, caplog, coco128, shared_data):
    from omegaconf import OmegaConf

    from ghostdet.cli.export import check_image_for

    data = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs" / "data" / "coco128.yaml")
    data.root = str(coco128)
    data.pop("defaults", None)
    batch, what = check_image_for(None, {"config": {"data": OmegaConf.to_container(data)}}, (IMGSZ, IMGSZ))
    assert what.endswith(".jpg") and str(coco128) in what and batch.shape == (1, 3, IMGSZ, IMGSZ)
    monkeypatch.setenv("GHOSTDET_SHARED_DATA", str(shared_data))
    _, what = check_image_for(None, {"config": {}}, (IMGSZ, IMGSZ))
    assert what.endswith("dog.jpg")  # the shared demo photo
    monkeypatch.setenv("GHOSTDET_SHARED_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    _, what = check_image_for(None, {"config": {}}, (IMGSZ, IMGSZ))
    assert "synthetic" in what and "checking on a synthetic scene" in caplog.text


def test_an_nms_graph_with_nothing_above_its_threshold_is_still_checked(model, tmp_path, shared_data):
    """conf 0.99 leaves no detection ("0 vs 0" used to pass): the decoded outputs feeding the graph's NMS are
    compared over every anchor, so a model that disagrees fails."""
    import copy

    from ghostdet.export import check_image, prepare_for_export, verify_export
    from ghostdet.export.onnx import export_onnx

    path = export_onnx(model, tmp_path / "best_nms.onnx", IMGSZ, nms=True, conf=0.99, max_det=10)
    batch, _ = check_image(shared_data / "images" / "dog.jpg", (IMGSZ, IMGSZ))
    prepared = prepare_for_export(model)
    check = verify_export(prepared, path, "onnx", batch, conf=0.99, max_det=10, runs=1)
    assert check.ok and check.nms and check.detections_torch == check.detections_export == 0
    assert check.anchors == 84 and check.max_box_diff < 1e-3 and check.max_score_diff < 1e-5
    other = copy.deepcopy(prepared)
    with torch.no_grad():
        for p in other.head.parameters():
            p.add_(0.5 * torch.randn_like(p))  # scores stay far below 0.99: no detection either way
    check = verify_export(other, path, "onnx", batch, conf=0.99, max_det=10, runs=1)
    assert not check.ok and any(p.startswith("raw") for p in check.problems), check.problems
    assert check.detections_torch == check.detections_export == 0


def test_export_tool_prints_what_it_compared(tmp_path):
    weights = make_checkpoint(tmp_path / "best.pt", ["a", "b", "c"])
    proc = run_main_in_process("export", "--weights", weights, "--out", tmp_path / "m.onnx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "decoded outputs over all 84 anchors" in proc.stdout and "top score" in proc.stdout
    meta = json.loads(__import__("onnx").load(str(tmp_path / "m.onnx")).metadata_props[0].value)
    assert meta["format"] == "onnx" and meta["precision"] == "fp32" and np.array(meta["imgsz"]).tolist() == [64, 64]
