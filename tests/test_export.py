"""ONNX / TorchScript export: tools/export.py checks its own output; ONNX detections equal the checkpoint's."""
from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import IMGSZ, PHOTO_STEMS
from helpers import assert_one_line_error, run_main_in_process, run_tool


@pytest.fixture(scope="session")
def exported_onnx(trained_checkpoint, coco128, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    proc = run_tool("export.py", "--weights", trained_checkpoint, "--format", "onnx", "--out", out,
                    "--source", coco128 / "images" / "train2017" / "000000000009.jpg", cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_export_tool_checks_against_pytorch_and_reports(exported_onnx):
    path, proc = exported_onnx
    assert path.is_file()
    assert "checked against PyTorch on" in proc.stdout and "000000000009.jpg" in proc.stdout
    assert "MB" in proc.stdout and "ONNX Runtime latency" in proc.stdout
    import onnx

    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, IMGSZ, IMGSZ]
    meta = json.loads({p.key: p.value for p in model.metadata_props}["ghostdet"])
    assert len(meta["names"]) == 80 and meta["names"][0] == "person" and meta["category_ids"][-1] == 90
    # no BatchNorm left: the exporter folded it into the convs before exporting
    assert not [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    # without --nms the graph stays NMS-free (tests/test_export_nms.py has the --nms export)
    assert not [n for n in model.graph.node if n.op_type in ("NonMaxSuppression", "TopK")] and meta["nms"] is False


def test_onnx_detections_equal_checkpoint_detections(trained_checkpoint, exported_onnx, coco128):
    from ghostdet import Detector
    from ghostdet.export import compare_detections

    from_pt = Detector.from_checkpoint(trained_checkpoint, conf=0.05)
    from_onnx = Detector.from_onnx(exported_onnx[0], conf=0.05)
    assert from_onnx.names == from_pt.names and from_onnx.category_ids == from_pt.category_ids
    assert from_onnx.imgsz == from_pt.imgsz == (IMGSZ, IMGSZ)
    photos = [coco128 / "images" / "train2017" / f"{stem}.jpg" for stem in PHOTO_STEMS]
    total = 0
    for a, b in zip(from_pt.predict(photos), from_onnx.predict(photos)):
        count_pt, count_onnx, box_diff = compare_detections(
            {"boxes": a.boxes, "labels": a.labels}, {"boxes": b.boxes, "labels": b.labels})
        assert abs(count_pt - count_onnx) <= int(0.02 * count_pt), (a.file, count_pt, count_onnx)
        assert box_diff <= 1.0, (a.file, box_diff)
        total += count_pt
    assert total > 0


def test_onnx_bad_inputs_fail_with_one_line(exported_onnx, coco128, tmp_path):
    photo = coco128 / "images" / "train2017" / "000000000009.jpg"
    garbage = tmp_path / "model.onnx"
    garbage.write_bytes(os.urandom(4096))
    cases = {  # the tools' mains, in this process
        ("detect", photo, "--weights", exported_onnx[0], "--imgsz", "320"): (f"fixed {IMGSZ}x{IMGSZ} input", "--dynamic"),
        ("detect", photo, "--weights", garbage): ("model.onnx", "not a loadable ONNX model"),
        ("export", "--weights", tmp_path / "nothing.pt"): ("nothing.pt", "no such checkpoint file"),
    }
    for (tool, *args), fragments in cases.items():
        assert_one_line_error(run_main_in_process(tool, *args, cwd=tmp_path), *fragments)


@pytest.mark.slow
def test_dynamic_onnx_runs_any_batch_and_size(trained_checkpoint, tmp_path):
    import onnxruntime as ort

    from ghostdet.export import export_onnx, prepare_for_export
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(trained_checkpoint)
    path = export_onnx(model, tmp_path / "dynamic.onnx", IMGSZ, dynamic=True, names=meta["names"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fused = prepare_for_export(model)
    for shape in [(2, 3, 320, 192), (1, 3, 128, 416)]:
        x = torch.rand(shape)
        boxes, scores = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            ref_boxes, ref_scores = fused.decode(fused(x))
        assert boxes.shape == tuple(ref_boxes.shape) and scores.shape == tuple(ref_scores.shape)
        np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-2)
        np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-4)


def test_torchscript_export_matches_pytorch(trained_checkpoint, tmp_path):
    from ghostdet.export import export_torchscript, prepare_for_export
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    model, meta = build_model_from_checkpoint(trained_checkpoint)
    path = export_torchscript(model, tmp_path / "model.torchscript", IMGSZ, names=meta["names"], category_ids=meta["category_ids"])
    extra = {"ghostdet.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but still the C++ deployment path
        scripted = torch.jit.load(str(path), _extra_files=extra)
    assert json.loads(extra["ghostdet.json"])["names"][0] == "person"
    fused = prepare_for_export(model)
    x = torch.rand(2, 3, 192, 320)  # another batch and size than traced
    with torch.no_grad():
        boxes, scores = scripted(x)
        ref_boxes, ref_scores = fused.decode(fused(x))
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-2, rtol=0)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=0)


def docs_decoder() -> dict:
    """The numpy decoder exactly as docs/inference.md shows it (between its markers), executed."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "inference.md").read_text()
    block = text.split("<!-- numpy-decoder -->", 1)[1].split("<!-- /numpy-decoder -->", 1)[0]
    code = block.split("```python", 1)[1].rsplit("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "docs/inference.md", "exec"), namespace)
    return namespace


def test_the_documented_numpy_decoder_gives_detectors_detections(exported_onnx, coco128, shared_data):
    """Issue 24 item 7: the docs' decode + NMS (numpy, ONNX Runtime, no ghostdet) against Detector on real photos."""
    import onnxruntime as ort

    from ghostdet import Detector
    from ghostdet.data.image_io import read_image

    docs = docs_decoder()
    session = ort.InferenceSession(str(exported_onnx[0]), providers=["CPUExecutionProvider"])
    detector = Detector.from_onnx(exported_onnx[0], conf=0.05)
    total = 0
    for photo in [shared_data / "images" / "dog.jpg", coco128 / "images" / "train2017" / f"{PHOTO_STEMS[0]}.jpg"]:
        rgb = read_image(photo)
        x, ratio, pad = docs["letterbox"](rgb, (IMGSZ, IMGSZ))
        boxes, scores = session.run(["boxes", "scores"], {"images": x})
        b, s, c = docs["decode"](boxes[0], scores[0], x.shape[2:], conf=0.05)
        b = docs["to_original"](b, ratio, pad, rgb.shape[:2])
        ref = detector.predict(rgb)[0]
        assert len(b) == len(ref.boxes), photo
        np.testing.assert_allclose(b, ref.boxes, atol=1e-3)
        np.testing.assert_allclose(s, ref.scores, atol=1e-6)
        assert c.tolist() == ref.labels.tolist()
        total += len(b)
    assert total > 0


def test_file_backend_postprocess_runs_on_one_torch_thread(exported_onnx, coco128, monkeypatch):
    """After another runtime returns, its worker threads still spin; PyTorch ops on 2 threads then wait for a core
    (ONNX Runtime, 2 cores: post-processing 6.9-7.5 ms instead of 0.3 ms, docs/detector.md). The Detector runs the
    post-processing of a file backend on one PyTorch thread and gives the caller's setting back."""
    import ghostdet.models.postprocess as post
    from ghostdet import Detector
    from ghostdet.utils.timing import torch_threads

    seen = []
    original = post.postprocess

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    monkeypatch.setattr(post, "postprocess", spy)
    with torch_threads(2):  # a 2-core user's default
        result = Detector.from_onnx(exported_onnx[0], conf=0.05).predict(
            coco128 / "images" / "train2017" / "000000000009.jpg")
        assert seen == [1] and torch.get_num_threads() == 2 and len(result) == 1
