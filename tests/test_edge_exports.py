"""ncnn, MNN and LiteRT exports (ghostdet.export.ncnn / mnn / litert, their backends) on a small model trained on
raccoon: export + check against PyTorch on a real photo (tools/export.py), then tools/detect.py with the exported
file against the checkpoint (count and IoU per image), the backend contract, and the int8 gate of MNN and LiteRT.

One checkpoint (``raccoon_checkpoint``, conftest.py: trained once per session, shared with test_quantize.py) and one
set of exports, made by tools/export.py side by side in a module fixture (each export its own process); detect and
the export tool's refusals run their tool's main in this process. A runtime whose package is missing is skipped with
the reason.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import run_main_in_process, run_tools_concurrently

pytestmark = pytest.mark.slow

CALIB = 48
PACKAGES = {"ncnn": ("ncnn", "pnnx", "onnx"), "mnn": ("MNN", "onnx"), "litert": ("ai_edge_litert", "litert_torch")}
FILES = {("ncnn", False): "best_ncnn_model", ("ncnn", True): "best_fp16_ncnn_model", ("mnn", False): "best.mnn",
         ("mnn", True): "best_fp16.mnn", ("litert", False): "best.tflite", ("litert", True): "best_fp16.tflite"}
INT8 = {"mnn": "best_int8.mnn", "litert": "best_int8.tflite"}
VAL_IMAGES = ("raccoon-1.jpg", "raccoon-12.jpg", "raccoon-40.jpg", "raccoon-77.jpg", "raccoon-150.jpg")


def _missing(fmt: str) -> list[str]:
    import importlib.util

    return [p for p in PACKAGES[fmt] if importlib.util.find_spec(p) is None]


def _skip_if_missing(fmt: str) -> None:
    missing = _missing(fmt)
    if missing:
        pytest.skip(f"{fmt}: {', '.join(missing)} not installed (pip install 'ghostdet[{fmt}]')")


@pytest.fixture(scope="module")
def exports(raccoon_checkpoint, raccoon, tmp_path_factory) -> dict:
    """tools/export.py for every installed format: fp32 (+ int8 with the gate where the format has int8) and --half,
    each in its own process, all at once. Returns {(fmt, half): (path, process)} and {fmt: (int8 path, process)}."""
    folder = tmp_path_factory.mktemp("edge")
    weights = folder / "best.pt"
    weights.write_bytes(raccoon_checkpoint.read_bytes())
    photo = raccoon / "JPEGImages" / VAL_IMAGES[0]
    calls, keys = [], []
    for fmt in PACKAGES:
        if _missing(fmt):
            continue
        int8 = ("--int8", "--data", "voc", "--data-root", raccoon, "--calib-images", CALIB) if fmt in INT8 else ()
        calls.append(("export.py", "--weights", weights, "--format", fmt, "--source", photo, *int8))
        keys.append((fmt, False))
        calls.append(("export.py", "--weights", weights, "--format", fmt, "--source", photo, "--half"))
        keys.append((fmt, True))
    procs = run_tools_concurrently(calls, folder, timeout=1500)
    return {"folder": folder, "weights": weights, "photo": photo,
            **{key: (folder / FILES[key], proc) for key, proc in zip(keys, procs)}}


def _export(exports: dict, fmt: str, half: bool):
    _skip_if_missing(fmt)
    path, proc = exports[(fmt, half)]
    assert proc.returncode == 0 or (fmt in INT8 and not half and "--max-map-drop" in proc.stderr), \
        f"{proc.args}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return path, proc


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("fmt", list(PACKAGES))
def test_export_is_checked_against_pytorch(exports, fmt, half):
    path, proc = _export(exports, fmt, half)
    assert path.exists()
    assert "checked against PyTorch on" in proc.stdout and exports["photo"].name in proc.stdout
    assert "Traceback" not in proc.stderr
    from ghostdet.inference.backends import read_file_metadata

    meta = read_file_metadata(path)
    assert meta["names"] == ["raccoon"] and meta["imgsz"] == [160, 160] and meta["format"] == fmt
    assert meta["precision"] == ("fp16" if half else "fp32") and meta["half"] is half


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("fmt", list(PACKAGES))
def test_backend_contract(exports, fmt, half):
    from ghostdet.export.calibration import images_to_batches
    from ghostdet.inference.backends import load_backend
    from ghostdet.inference.backends.torch import load as load_torch

    path, _ = _export(exports, fmt, half)
    backend = load_backend(path, threads=1)
    assert backend.kind == fmt and backend.nms is False and backend.num_classes == 1
    assert backend.fixed_imgsz == (160, 160) and backend.meta["names"] == ["raccoon"]
    assert backend.precision == ("fp16" if half else "fp32")
    images = [exports["photo"].parent / name for name in VAL_IMAGES[:2]]
    batch = np.concatenate(images_to_batches(images, (160, 160)))
    if backend.fixed_batch:  # LiteRT: the file's batch (Detector pads a short batch)
        batch = batch[: backend.fixed_batch]
    boxes, scores = backend(batch)
    assert boxes.dtype == scores.dtype == torch.float32 and boxes.device.type == "cpu"
    assert boxes.shape == (len(batch), 525, 4) and scores.shape == (len(batch), 525, 1)
    assert 0 <= float(scores.min()) and float(scores.max()) <= 1
    ref_boxes, ref_scores = load_torch(exports["weights"])(batch)
    tol = 2.0 if half else 0.05
    assert float((boxes - ref_boxes).abs().max()) < tol * 10 and float((scores - ref_scores).abs().max()) < tol / 10


def _detect(weights: Path, sources: list[Path], out: Path) -> subprocess.CompletedProcess:
    return run_main_in_process("detect", *sources, "--weights", weights, "--out", out, "--no-save", "--conf", "0.3",
                               cwd=out.parent)


@pytest.fixture(scope="module")
def torch_detections(exports, raccoon) -> dict:
    sources = [raccoon / "JPEGImages" / name for name in VAL_IMAGES]
    proc = _detect(exports["weights"], sources, exports["folder"] / "detect_pt")
    assert proc.returncode == 0, proc.stderr
    return {Path(r["file"]).name: r for r in json.loads((exports["folder"] / "detect_pt" / "predictions.json").read_text())}


@pytest.mark.parametrize("half", [False, True], ids=["fp32", "fp16"])
@pytest.mark.parametrize("fmt", list(PACKAGES))
def test_detect_tool_agrees_with_pytorch(exports, torch_detections, raccoon, fmt, half):
    from torchvision.ops import box_iou

    path, _ = _export(exports, fmt, half)
    out = exports["folder"] / f"detect_{fmt}_{'fp16' if half else 'fp32'}"
    proc = _detect(path, [raccoon / "JPEGImages" / name for name in VAL_IMAGES], out)
    assert proc.returncode == 0, proc.stderr
    found = {Path(r["file"]).name: r for r in json.loads((out / "predictions.json").read_text())}
    assert set(found) == set(torch_detections)
    min_iou = 0.9 if half else 0.98
    total = 0
    for name, ref in torch_detections.items():
        got = found[name]["detections"]
        assert len(got) == len(ref["detections"]), (name, got, ref["detections"])
        total += len(got)
        if got:
            a = torch.tensor([d["bbox"] for d in ref["detections"]])
            b = torch.tensor([d["bbox"] for d in got])
            assert float(box_iou(a, b).max(1).values.min()) >= min_iou, name
    assert total > 0  # the trained model finds raccoons in these photos


@pytest.mark.parametrize("fmt", list(INT8))
def test_int8_gate(exports, fmt):
    """int8 is kept only within --max-map-drop (1 point) of the fp32 export; both mAPs are printed either way."""
    path, proc = _export(exports, fmt, False)
    maps = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in ("fp32", "int8"):
            maps[parts[0]] = (float(parts[1]), float(parts[2]))
    assert set(maps) == {"fp32", "int8"}, proc.stdout
    drop = 100 * (maps["fp32"][0] - maps["int8"][0])
    int8 = path.with_name(INT8[fmt])
    if proc.returncode == 0:
        assert drop <= 1.0 + 1e-6 and int8.is_file()
        from ghostdet.inference.backends import load_backend

        backend = load_backend(int8)
        record = backend.meta["int8"]
        assert backend.precision == "int8" and record["runtime"] == fmt
        assert abs(record["map_drop_points"] - drop) < 0.01 and "decode tail" in record["float"]
        boxes, scores = backend(np.zeros((backend.fixed_batch or 1, 3, 160, 160), np.float32))
        assert boxes.shape[-1] == 4 and torch.isfinite(boxes).all()
    else:  # the gate refused: one error line, the last one (the progress log before it is also on stderr)
        assert drop > 1.0 and not int8.exists()
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        assert errors == lines[-1:] and "--max-map-drop" in errors[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize("fmt", list(PACKAGES))
def test_broken_files_are_one_line_errors(tmp_path, fmt):
    from ghostdet.inference.backends import load_backend
    from ghostdet.utils.errors import CheckpointError

    _skip_if_missing(fmt)
    target = {"ncnn": tmp_path / "x_ncnn_model", "mnn": tmp_path / "x.mnn", "litert": tmp_path / "x.tflite"}[fmt]
    with pytest.raises(CheckpointError, match="no such") as missing:
        load_backend(target)
    assert "\n" not in str(missing.value)
    if fmt == "ncnn":
        target.mkdir()
        (target / "model.ncnn.param").write_text("not a param file\n")
        (target / "model.ncnn.bin").write_bytes(b"\0" * 16)
    else:
        target.write_bytes(b"this is not a model file at all")
    with pytest.raises(CheckpointError) as broken:
        load_backend(target)
    assert "\n" not in str(broken.value) and "tools/export.py" in str(broken.value)


def test_ncnn_has_no_int8_and_says_why(exports):
    _skip_if_missing("ncnn")
    proc = run_main_in_process("export", "--weights", exports["weights"], "--format", "ncnn", "--int8", "--data", "voc",
                               cwd=exports["folder"])
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "int8" in proc.stderr and "ncnn" in proc.stderr
