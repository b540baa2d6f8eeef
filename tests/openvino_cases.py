"""OpenVINO export and backend: tools/export.py --format openvino checks its own output; the IR's detections equal
the checkpoint's (fp32) or match them by IoU (bf16); detect.py runs the folder; broken folders fail with one line.

This file runs in a pytest process of its own (test_openvino.py), so the tools' mains run in that process too
(``run_main_in_process``: no further interpreter start-ups); the checkpoint is the parent session's
(GHOSTDET_TEST_DETECT_MODEL, see conftest.trained_checkpoint)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openvino", reason="openvino not installed (pip install 'ghostdet[openvino]')")

from conftest import IMGSZ  # noqa: E402
from conftest import PHOTO_STEMS  # noqa: E402
from helpers import assert_one_line_error, run_main_in_process  # noqa: E402

from ghostdet.inference.openvino import cpu_supports_bf16  # noqa: E402

BF16 = cpu_supports_bf16()
needs_bf16 = pytest.mark.skipif(not BF16, reason="this CPU does not report BF16 to OpenVINO (needs AVX512-BF16 or AMX)")


@pytest.fixture(scope="module")
def exported_openvino(trained_checkpoint, shared_data, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("openvino") / "best_openvino"
    proc = run_main_in_process("export", "--weights", trained_checkpoint, "--format", "openvino", "--out", out,
                               "--precision", "auto", "--source", shared_data / "images" / "dog.jpg", cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out, proc


@pytest.fixture(scope="module")
def photos(coco128) -> list[Path]:
    return [coco128 / "images" / "train2017" / f"{stem}.jpg" for stem in PHOTO_STEMS]


def test_export_writes_an_fp32_ir_with_ghostdet_metadata_and_checks_it(exported_openvino):
    import openvino as ov

    out, proc = exported_openvino
    assert {p.name for p in out.iterdir()} == {"model.xml", "model.bin", "metadata.json"}
    assert "checked in fp32 against PyTorch on" in proc.stdout and "dog.jpg" in proc.stdout
    assert ("checked in bf16 against PyTorch" in proc.stdout) == BF16
    assert "OpenVINO latency" in proc.stdout and "MB" in proc.stdout
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta["names"]) == 80 and meta["names"][0] == "person" and meta["category_ids"][-1] == 90
    assert meta["imgsz"] == [IMGSZ, IMGSZ]
    model = ov.Core().read_model(str(out / "model.xml"))
    assert json.loads(model.get_rt_info("ghostdet").astype(str))["names"] == meta["names"]  # also in the IR itself
    assert [o.get_any_name() for o in model.outputs] == ["boxes", "scores"]
    assert list(model.inputs[0].get_partial_shape().to_shape()) == [1, 3, IMGSZ, IMGSZ]
    # compress_to_fp16=False: every weight constant is stored as f32
    consts = [op for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_output_size() == 1
              and op.get_output_partial_shape(0).is_static and op.get_output_partial_shape(0).rank.get_length() == 4]
    assert consts and all(str(op.get_output_element_type(0)) == "<Type: 'float32'>" for op in consts)


def test_openvino_fp32_detections_equal_checkpoint_detections(trained_checkpoint, exported_openvino, photos):
    from ghostdet import Detector
    from ghostdet.export import compare_detections

    from_pt = Detector.from_checkpoint(trained_checkpoint, conf=0.05)
    from_ov = Detector.from_openvino(exported_openvino[0], precision="fp32", threads=2, conf=0.05)
    assert from_ov.backend.kind == "openvino" and from_ov.backend.precision == "fp32"
    assert from_ov.names == from_pt.names and from_ov.category_ids == from_pt.category_ids
    assert from_ov.imgsz == from_pt.imgsz == (IMGSZ, IMGSZ)
    total = 0
    for a, b in zip(from_pt.predict(photos), from_ov.predict(photos)):
        count_pt, count_ov, box_diff = compare_detections({"boxes": a.boxes, "labels": a.labels},
                                                          {"boxes": b.boxes, "labels": b.labels})
        assert abs(count_pt - count_ov) <= int(0.02 * count_pt), (a.file, count_pt, count_ov)
        assert box_diff <= 1.0, (a.file, box_diff)
        if count_pt == count_ov:
            np.testing.assert_allclose(np.sort(b.scores), np.sort(a.scores), atol=1e-3)
        total += count_pt
    assert total > 0
    # raw outputs on one letterboxed batch, at the ONNX test's tolerances
    batch = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), dtype=np.float32)
    boxes, scores = from_ov.backend(batch)
    ref_boxes, ref_scores = from_pt.backend(batch)
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-2, rtol=0)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=0)


@needs_bf16
def test_openvino_bf16_detections_match_checkpoint_by_iou(trained_checkpoint, exported_openvino, photos):
    from ghostdet import Detector
    from ghostdet.export.verify import match_fraction

    from_pt = Detector.from_checkpoint(trained_checkpoint, conf=0.05)
    auto = Detector.from_file(exported_openvino[0] / "model.xml", precision="auto")
    assert auto.backend.precision == "bf16" and "BF16" in auto.backend.precision_reason
    from_bf16 = Detector.from_openvino(exported_openvino[0], precision="bf16", conf=0.05)
    n_pt = n_bf16 = matched = 0
    for a, b in zip(from_pt.predict(photos), from_bf16.predict(photos)):
        n_pt, n_bf16 = n_pt + len(a.boxes), n_bf16 + len(b.boxes)
        matched += match_fraction({"boxes": a.boxes, "labels": a.labels}, {"boxes": b.boxes, "labels": b.labels}, 0.9) * len(a.boxes)
    assert n_pt > 0 and abs(n_pt - n_bf16) <= max(1, int(0.1 * n_pt)), (n_pt, n_bf16)
    assert matched >= 0.9 * n_pt, (matched, n_pt)


def test_metadata_from_rt_info_alone_and_backend_by_path(exported_openvino, tmp_path):
    from ghostdet import Detector

    copy = tmp_path / "copy_openvino"
    shutil.copytree(exported_openvino[0], copy)
    (copy / "metadata.json").unlink()  # the IR's rt_info carries the same record
    det = Detector.from_file(copy, precision="fp32")
    assert det.backend.kind == "openvino" and det.names[0] == "person" and det.category_ids[-1] == 90
    assert Detector.from_file(copy / "model.xml", precision="fp32").imgsz == (IMGSZ, IMGSZ)
    from ghostdet.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="fixed 256x256 input"):
        Detector.from_file(copy, imgsz=320, precision="fp32")


def test_verification_reports_a_model_that_disagrees(trained_checkpoint, exported_openvino):
    from ghostdet.export import check_image, prepare_for_export, verify_export
    from ghostdet.utils.checkpoint import build_model_from_checkpoint
    from ghostdet.utils.errors import ExportMismatchError, GhostdetError

    model, _ = build_model_from_checkpoint(trained_checkpoint)
    prepared = prepare_for_export(model)
    batch, _ = check_image(None, (IMGSZ, IMGSZ))
    assert verify_export(prepared, exported_openvino[0], "openvino", batch, runs=1, precision="fp32").ok
    with torch.no_grad():  # a different model than the one exported
        for p in prepared.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    check = verify_export(prepared, exported_openvino[0], "openvino", batch, runs=1, precision="fp32")
    assert not check.ok and check.problems
    assert issubclass(ExportMismatchError, GhostdetError)


def test_detect_tool_runs_the_folder_and_a_broken_folder_fails_with_one_line(exported_openvino, photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos[:3]:
        shutil.copy(photo, folder / photo.name)
    garbage = tmp_path / "garbage_openvino"
    garbage.mkdir()
    (garbage / "model.xml").write_text("not an IR\n")
    (garbage / "model.bin").write_bytes(b"\0" * 64)
    precision = "bf16" if BF16 else "fp32"
    threads = torch.get_num_threads()  # --threads sets PyTorch's for the process: this one, here
    try:
        ok = run_main_in_process("detect", folder, "--weights", f"{exported_openvino[0]}/", "--precision", precision,
                                 "--threads", "1", "--out", tmp_path / "run", cwd=tmp_path)
    finally:
        torch.set_num_threads(threads)
    broken = run_main_in_process("detect", photos[0], "--weights", garbage, cwd=tmp_path)
    assert ok.returncode == 0 and "Traceback" not in ok.stderr, ok.stderr
    assert f"OpenVINO precision {precision} (asked for)" in ok.stdout and f"(openvino {precision})" in ok.stdout
    assert len(json.loads((tmp_path / "run" / "predictions.json").read_text())) == 3
    assert len(list((tmp_path / "run").glob("*.jpg"))) == 3
    assert_one_line_error(broken, "garbage_openvino", "not an OpenVINO IR")


def test_missing_or_broken_ir_folders_raise_one_line_checkpoint_errors(exported_openvino, tmp_path):
    from ghostdet import Detector
    from ghostdet.utils.errors import CheckpointError

    truncated = tmp_path / "truncated_openvino"
    shutil.copytree(exported_openvino[0], truncated)
    with open(truncated / "model.bin", "r+b") as f:
        f.truncate(1000)
    no_bin = tmp_path / "nobin_openvino"
    shutil.copytree(exported_openvino[0], no_bin)
    (no_bin / "model.bin").unlink()
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "missing_openvino": "no such OpenVINO IR folder",
        tmp_path / "missing.xml": "no such OpenVINO model file",
        truncated: "not a loadable OpenVINO model",
        no_bin: "model.bin is missing",
        tmp_path / "empty": "no model.xml in this folder",
    }
    for path, fragment in cases.items():
        with pytest.raises(CheckpointError) as info:
            Detector.from_file(path)
        message = str(info.value)
        assert fragment in message and path.name in message and "\n" not in message, message


def test_benchmark_openvino_modes_time_the_exported_graph_or_say_why_not():
    from omegaconf import OmegaConf

    from ghostdet.eval.benchmark import benchmark_model, benchmark_rows
    from ghostdet.models import build_model

    from conftest import MODEL_CONFIG

    model = build_model(OmegaConf.create(MODEL_CONFIG), num_classes=3)
    res = benchmark_model(model, imgsz=64, batch_sizes=[1], modes=["openvino", "openvino-bf16"], warmup=0, repeats=1,
                          threads=1)
    assert res["latency"]["openvino"][1]["median"] > 0
    if BF16:
        assert res["latency"]["openvino-bf16"][1]["median"] > 0
    else:
        assert "BF16" in res["skipped"]["openvino-bf16"]
    headers, _ = benchmark_rows([dict(res, name="m", imgsz=64)], [1])
    assert "OpenVINO b1 (ms)" in headers


def test_nms_graph_converts_checks_and_detects_like_the_checkpoint(trained_checkpoint, shared_data, photos, tmp_path):
    """--format openvino --nms: the NMS ONNX converts (NonMaxSuppression, TopK, ScatterND), the export's check against
    postprocess passes, and Detector on the folder gives the checkpoint's detections (fp32)."""
    import openvino as ov

    from ghostdet import Detector
    from ghostdet.export.verify import match_fraction

    out = tmp_path / "best_nms_openvino"
    proc = run_main_in_process("export", "--weights", trained_checkpoint, "--format", "openvino", "--nms", "--conf",
                               "0.01", "--max-det", "10", "--out", out, "--source", shared_data / "images" / "dog.jpg",
                               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "checked in fp32 against PyTorch + postprocess (conf 0.01, iou 0.45, max_det 10)" in proc.stdout
    model = ov.Core().read_model(str(out / "model.xml"))
    assert [o.get_any_name() for o in model.outputs] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert {"NonMaxSuppression", "TopK"} <= {op.get_type_name() for op in model.get_ops()}
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["nms"] is True and (meta["conf"], meta["iou"], meta["max_det"]) == (0.01, 0.45, 10)
    det = Detector.from_file(out, precision="fp32")
    assert det.backend.nms and (det.conf, det.max_det) == (0.01, 10) and det.names[0] == "person"
    from_pt = Detector.from_checkpoint(trained_checkpoint, conf=0.01, max_det=10)
    for a, b in zip(from_pt.predict(photos), det.predict(photos)):
        n = len(a.boxes)
        assert abs(n - len(b.boxes)) <= 1, (a.file, n, len(b.boxes))
        # up to one near-tied candidate may differ (channels_last PyTorch vs the IR rounding, at conf 0.01)
        matched = match_fraction({"boxes": a.boxes, "labels": a.labels}, {"boxes": b.boxes, "labels": b.labels}, 0.99)
        assert round(matched * n) >= n - 1, (a.file, a.labels, b.labels)


def test_benchmark_openvino_int8_mode_quantizes_with_nncf_and_reports_its_calibration():
    pytest.importorskip("nncf", reason="nncf not installed (pip install 'ghostdet[openvino]')")
    from omegaconf import OmegaConf

    from ghostdet.eval.benchmark import benchmark_model, mode_rows, openvino_int8_ir, openvino_ir
    from ghostdet.export.quantize import RuntimeModel, float_tail_openvino, synthetic_calibration
    from ghostdet.models import build_model

    from conftest import MODEL_CONFIG

    model = build_model(OmegaConf.create(MODEL_CONFIG), num_classes=3)
    scores = []
    res = benchmark_model(model, imgsz=64, batch_sizes=[1], modes=["openvino", "openvino-int8"], warmup=0, repeats=1,
                          threads=1, evaluate=lambda m: scores.append(m(torch.zeros(2, 3, 64, 64))) or
                          {"mAP50-95": 0.0, "mAP50": 0.0})
    assert res["latency"]["openvino-int8"][1]["median"] > 0 and "synthetic" in res["calibration"]
    assert set(res["mode_metrics"]) == {"openvino", "openvino-int8"}
    assert all(boxes.shape == (2, 84, 4) and s.shape == (2, 84, 3) for boxes, s in scores)  # chunked to batch 1
    _, rows = mode_rows([dict(res, name="m", imgsz=64)], [1])
    assert [r[1] for r in rows] == ["OpenVINO", "OpenVINO int8"]
    # the quantized IR: FakeQuantize nodes, none feeding the decode tail (found from the graph)
    x = torch.zeros(1, 3, 64, 64)
    fp32 = openvino_ir(model, x)
    _, tail = float_tail_openvino(fp32)
    int8 = openvino_int8_ir(fp32, synthetic_calibration((64, 64), 4))
    ops = {op.get_friendly_name(): op for op in int8.get_ordered_ops()}
    assert sum(op.get_type_name() == "FakeQuantize" for op in ops.values()) > 20
    for name in tail:
        if name in ops:
            inputs = [ops[name].input_value(i).get_node().get_type_name() for i in range(ops[name].get_input_size())]
            assert "FakeQuantize" not in inputs, (name, inputs)
    assert isinstance(RuntimeModel(lambda b: (b, b), 3), torch.nn.Module)


# ------------------------------------------------------- issue 23: atomic IR folders, one metadata reader, raw checks
@pytest.fixture(scope="module")
def tiny_model():
    from omegaconf import OmegaConf

    from ghostdet.models import build_model
    from helpers import tiny_model_cfg

    return build_model(OmegaConf.create(tiny_model_cfg()), num_classes=3).eval()


def test_a_failed_openvino_export_leaves_the_old_ir_whole(tiny_model, tmp_path, monkeypatch):
    """The old IR stays until the new one is complete (it used to be deleted before the new one was written)."""
    import hashlib

    import ghostdet.export.openvino as ov_export

    def digest(folder):
        return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}

    out = ov_export.export_openvino(tiny_model, tmp_path / "best_openvino", 64, names=["a", "b", "c"])
    before = digest(out)
    real = ov_export.write_openvino_folder

    def broken(ir, meta, folder):
        real(ir, meta, folder)  # the new model.xml/bin are written, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ov_export, "write_openvino_folder", broken)
    with pytest.raises(KeyboardInterrupt):
        ov_export.export_openvino(tiny_model, out, 64, names=["x", "y", "z"])
    assert digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["best_openvino"]


def test_the_openvino_backend_refuses_a_malformed_record_in_one_line(tiny_model, tmp_path):
    from ghostdet.export.openvino import export_openvino
    from test_exported_metadata import refuse_malformed_records

    source = export_openvino(tiny_model, tmp_path / "src" / "best_openvino", 64, names=["a", "b", "c"])
    refuse_malformed_records(source, tmp_path)


def test_an_openvino_nms_graph_is_checked_on_its_raw_outputs(tiny_model, tmp_path, shared_data):
    from ghostdet.export import check_image, prepare_for_export, verify_export
    from ghostdet.export.openvino import export_openvino

    path = export_openvino(tiny_model, tmp_path / "best_nms_openvino", 64, nms=True, conf=0.99, max_det=10)
    batch, _ = check_image(shared_data / "images" / "dog.jpg", (64, 64))
    prepared = prepare_for_export(tiny_model)
    check = verify_export(prepared, path, "openvino", batch, conf=0.99, max_det=10, runs=1)
    assert check.ok and check.nms and check.anchors == 84 and check.detections_torch == check.detections_export == 0
    with torch.no_grad():
        for p in prepared.head.parameters():
            p.add_(0.5 * torch.randn_like(p))
    check = verify_export(prepared, path, "openvino", batch, conf=0.99, max_det=10, runs=1)
    assert not check.ok and any(p.startswith("raw") for p in check.problems), check.problems
