"""One metadata schema and one validated reader for every exported file (issue 23 §5): malformed records are one-line
CheckpointErrors, through the reader and through Detector on real ONNX and OpenVINO exports; onnx is never loaded
with external data, and its floor is past CVE-2024-27318."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ghostdet.utils.errors import CheckpointError
from ghostdet.utils.exported import SCHEMA, build_metadata, parse_metadata

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"names": ["cat", "dog", "person"], "category_ids": [17, 18, 1], "imgsz": [64, 64], "nms": True, "conf": 0.25,
        "iou": 0.45, "max_det": 100}
BAD = [  # (change to the good record, fragment of the one-line error)
    ({"category_ids": ["a", "b", "c"]}, "'category_ids' must be a list of integers"),
    ({"category_ids": "17,18,1"}, "'category_ids' must be a list of integers"),
    ({"category_ids": [17, 18]}, "2 category ids for 3 class names"),
    ({"conf": "high"}, "'conf' must be a number in [0, 1)"),
    ({"conf": 1.5}, "'conf' must be a number in [0, 1)"),
    ({"iou": -1}, "'iou' must be a number in [0, 1]"),
    ({"max_det": 0}, "'max_det' must be an integer >= 1"),
    ({"names": "person", "category_ids": None}, "'names' must be a non-empty list of class names, not str"),
    ({"names": [["cat"], "dog", "x"]}, "'names' holds something other than names"),
    ({"imgsz": [64]}, "'imgsz' must be [height, width]"),
    ({"nms": "yes"}, "'nms' must be true or false"),
]


@pytest.mark.parametrize("change, fragment", BAD)
def test_a_malformed_record_is_a_one_line_checkpoint_error(change, fragment):
    with pytest.raises(CheckpointError) as info:
        parse_metadata(json.dumps({**GOOD, **change}), "best.onnx")
    message = str(info.value)
    assert fragment in message and message.startswith("best.onnx: ") and "\n" not in message
    assert "re-export" in message


def test_names_must_match_the_class_count_the_graph_outputs():
    assert parse_metadata(json.dumps(GOOD), "m", num_classes=3)["names"] == GOOD["names"]
    with pytest.raises(CheckpointError, match="names 3 classes but the model outputs 80"):
        parse_metadata(json.dumps(GOOD), "m", num_classes=80)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        parse_metadata("{names: [", "m")


def test_the_reader_normalises_what_it_accepts():
    meta = parse_metadata({"names": {"0": "a", "1": "b"}, "imgsz": 320, "conf": 0, "max_det": 10.0}, "m")
    assert meta["names"] == ["a", "b"] and meta["imgsz"] == [320, 320] and meta["conf"] == 0.0 and meta["max_det"] == 10
    assert parse_metadata(None, "m") == {} and parse_metadata("", "m") == {}
    record = build_metadata(["a"], (64, 96), fmt="onnx", precision="fp32", ghostdet_version="x")
    assert record["imgsz"] == [64, 96] and record["format"] == "onnx" and "conf" not in record


def test_every_schema_key_is_documented():
    docs = (ROOT / "docs" / "inference.md").read_text()
    missing = [key for key in SCHEMA if f"`{key}`" not in docs]
    assert not missing, f"docs/inference.md does not describe the metadata keys {missing}"


def test_onnx_floor_is_past_cve_2024_27318():
    text = (ROOT / "pyproject.toml").read_text()
    floors = re.findall(r'"onnx>=([0-9.]+)"', text)
    assert floors and all(tuple(map(int, f.split("."))) >= (1, 16) for f in floors), floors


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny 3-class model exported to ONNX (the OpenVINO case is in openvino_cases.py: its own process)."""
    from omegaconf import OmegaConf

    from ghostdet.export.onnx import export_onnx
    from ghostdet.models import build_model
    from helpers import tiny_model_cfg

    model = build_model(OmegaConf.create(tiny_model_cfg()), num_classes=3).eval()
    return export_onnx(model, tmp_path_factory.mktemp("meta") / "best.onnx", 64, names=["cat", "dog", "person"])


REFUSED = [BAD[0], BAD[3], BAD[7], ({"names": ["cat"]}, "names 1 classes but the model outputs 3")]


def refuse_malformed_records(source: Path, tmp_path: Path) -> None:
    """Every malformed record written into a copy of ``source`` makes Detector.from_file fail in one line (shared
    with openvino_cases.py)."""
    import shutil

    from ghostdet import Detector
    from ghostdet.export.formats import format_for_path, module_of

    for change, fragment in REFUSED:
        copy = tmp_path / source.name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy)
        module_of(format_for_path(copy)).write_metadata(copy, dict(GOOD, nms=False, **change))
        with pytest.raises(CheckpointError) as info:
            Detector.from_file(copy)
        assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)
        shutil.rmtree(copy) if copy.is_dir() else copy.unlink()


def test_the_onnx_backend_refuses_a_malformed_record_in_one_line(exported, tmp_path):
    refuse_malformed_records(exported, tmp_path)
