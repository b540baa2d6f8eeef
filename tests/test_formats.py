"""The one format table (issue 24): tools/export.py --format, Detector.from_file, the benchmark's modes and the docs
table all read it; a runtime whose package or module is missing is one line naming the extra to install."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from ghostdet.export.formats import (EXPORT_FORMATS, FORMATS, format_for_path, get_format, markdown_table, module_of,
                                     run_export)
from ghostdet.utils.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_the_tools_the_benchmark_and_the_docs_read_the_table():
    from ghostdet.cli.export import parse_args
    from ghostdet.eval.benchmark import LABELS, MODES

    for name in EXPORT_FORMATS:
        assert parse_args(["--format", name]).format == name
    assert {"onnx", "openvino", "torchscript", "ncnn", "mnn", "litert"} <= set(EXPORT_FORMATS)
    for row in FORMATS:
        for mode in row.modes():
            assert mode in MODES and LABELS[mode].startswith(row.runtime)
    docs = (ROOT / "docs" / "inference.md").read_text()
    assert markdown_table() in docs, "docs/inference.md's format table is not ghostdet.export.formats.markdown_table()"


def test_new_runtimes_are_one_row_pointing_at_their_modules():
    rows = {name: get_format(name) for name in ("ncnn", "mnn", "litert")}
    assert rows["ncnn"].suffix == "_ncnn_model" and rows["ncnn"].is_dir
    assert (rows["mnn"].suffix, rows["litert"].suffix) == (".mnn", ".tflite")
    for name, row in rows.items():
        assert row.exporter == f"ghostdet.export.{name}" and row.backend == f"ghostdet.inference.backends.{name}"


@pytest.mark.parametrize("path, name", [
    ("runs/best.onnx", "onnx"), ("runs/best_int8.onnx", "onnx"), ("runs/best_openvino", "openvino"),
    ("runs/best_int8_openvino/", "openvino"), ("runs/x/model.xml", "openvino"), ("runs/best_ncnn_model", "ncnn"),
    ("runs/best.mnn", "mnn"), ("runs/best_fp16.tflite", "litert"), ("runs/best.torchscript", "torchscript"),
    ("runs/best.pt", "pytorch"), ("runs/last.pth", "pytorch"),
])
def test_a_path_names_its_format(path, name):
    assert format_for_path(path).name == name


def test_a_folder_is_told_by_what_it_holds(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "model.ncnn.param").write_text("7767517\n")
    assert format_for_path(tmp_path / "a").name == "ncnn"
    (tmp_path / "b").mkdir()  # anything else is taken as an IR folder, whose loader says what is missing
    assert format_for_path(tmp_path / "b").name == "openvino"


def test_default_names_never_collide():
    from ghostdet.export.publish import default_output, int8_path_for

    weights = Path("runs/w/best.pt")
    names = {default_output(weights, f, nms=n, half=h) for f in ("onnx", "torchscript") for n in (0, 1) for h in (0, 1)}
    assert len(names) == 8
    assert default_output(weights, "onnx", half=True).name == "best_fp16.onnx"  # --half never writes best.onnx
    assert default_output(weights, "torchscript", half=True).name == "best_fp16.torchscript"
    assert default_output(weights, "openvino", nms=True).name == "best_nms_openvino"
    assert default_output(weights, "ncnn").name == "best_ncnn_model"
    assert int8_path_for("runs/best.onnx", "onnx").name == "best_int8.onnx"
    assert int8_path_for("runs/best_openvino", "openvino").name == "best_int8_openvino"
    assert int8_path_for("runs/best.mnn", "mnn").name == "best_int8.mnn"


def test_a_missing_runtime_package_or_module_is_one_line(monkeypatch, tmp_path):
    from ghostdet import Detector
    import ghostdet.export.formats as formats

    real = importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec", lambda name, *a: None if name == "MNN" else real(name, *a))
    model = tmp_path / "best.mnn"
    model.write_bytes(b"\0" * 16)
    with pytest.raises(ConfigError) as info:
        Detector.from_file(model)
    assert "pip install 'ghostdet[mnn]'" in str(info.value) and "\n" not in str(info.value)
    unbuilt = dataclasses.replace(get_format("mnn"), backend="ghostdet.inference.backends.no_such_runtime")
    with pytest.raises(ConfigError, match="no ghostdet.inference.backends.no_such_runtime module"):
        module_of(unbuilt, "backend")


def test_torchscript_is_exported_but_never_loaded_by_detector(tmp_path):
    from ghostdet import Detector

    path = tmp_path / "best.torchscript"
    path.write_bytes(b"PK")
    with pytest.raises(ConfigError, match="not loaded by Detector"):
        Detector.from_file(path)


def test_an_option_the_format_cannot_do_is_refused_before_writing(tmp_path):
    from omegaconf import OmegaConf

    from ghostdet.models import build_model
    from helpers import tiny_model_cfg

    model = build_model(OmegaConf.create(tiny_model_cfg()), num_classes=2)
    for fmt, option in (("openvino", {"half": True}), ("torchscript", {"nms": True})):
        with pytest.raises(ConfigError, match=f"--{next(iter(option))} is not available for --format {fmt}"):
            run_export(get_format(fmt), model, tmp_path / f"x{get_format(fmt).suffix}", 64, **option)
    assert list(tmp_path.iterdir()) == []


def test_backend_module_scores_any_backend_even_after_the_torch_backend_is_imported():
    """BackendModule (the evaluator's view of an export) once broke when ``backends.torch`` rebound the package's
    ``torch`` name; a fixed-batch backend gets chunks of its batch, the last one padded."""
    import numpy as np
    import torch

    import ghostdet.inference.backends.torch  # noqa: F401
    from ghostdet.inference.backends import BackendModule

    seen = []

    def run(batch):
        seen.append(len(batch))
        return np.ones((len(batch), 5, 4), np.float32), np.zeros((len(batch), 5, 2), np.float32)

    boxes, scores = BackendModule(run, 2, fixed_batch=2)(torch.zeros(3, 3, 8, 8))
    assert boxes.shape == (3, 5, 4) and scores.shape == (3, 5, 2) and seen == [2, 2]
