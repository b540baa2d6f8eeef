"""The timing helper and tools/benchmark.py on a tiny size (figures are printed, never asserted)."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from helpers import make_checkpoint, run_tool_in_process, tiny_model_cfg, yolo_data_cfg

from ghostdet.eval.benchmark import benchmark_model, onnxruntime_available
from ghostdet.utils.timing import compare_latency, measure_latency, set_threads


def test_measure_latency_warms_up_then_times_repeats():
    calls = []
    stats = measure_latency(lambda: calls.append(1), warmup=3, repeats=5)
    assert len(calls) == 8
    assert stats["repeats"] == 5 and stats["min"] <= stats["median"] <= stats["max"]
    with pytest.raises(ValueError):
        measure_latency(lambda: None, repeats=0)


def test_compare_latency_interleaves_rounds_and_gives_per_round_ratios():
    order = []
    result = compare_latency({"a": lambda: order.append("a"), "b": lambda: order.append("b")},
                             rounds=3, warmup=1, repeats=2, baseline="a")
    assert order == (["a"] * 3 + ["b"] * 3) * 3  # a round times each callable in turn, then the next round
    assert len(result["a"]["rounds"]) == len(result["b"]["rounds"]) == 3
    assert result["a"]["ratio"] == 1.0 and result["b"]["ratio"] > 0
    slow = compare_latency({"fast": lambda: None, "slow": lambda: sum(range(20000))}, rounds=2, repeats=3,
                           baseline="fast")
    assert slow["slow"]["ratio"] > 1 and slow["slow"]["median"] > slow["fast"]["median"]


def test_set_threads_is_explicit_and_reported():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads(None) >= 1  # every CPU this process may use
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_benchmark_tool_writes_markdown_and_json(project_root, yolo_split, tmp_path, monkeypatch, capsys):
    names = (yolo_split / "classes.txt").read_text().splitlines()
    weights = make_checkpoint(tmp_path / "best.pt", names)
    model_yaml = tmp_path / "tiny_ghost.yaml"
    model_yaml.write_text(yaml.safe_dump(tiny_model_cfg()))
    out = tmp_path / "bench"
    before = torch.get_num_threads()
    try:
        code, stdout, err = run_tool_in_process(
            project_root, "benchmark.py", f"models=[{model_yaml},{weights}]", "imgsz=64", "batch_sizes=[1,2]",
            "warmup=1", "repeats=2", "threads=1", "modes=[eager,fused]", "data=yolo", f"data.root={yolo_split}", "data.cache=false",
            "eval.workers=0", "eval.batch=4", "eval.conf=0", "eval.max_det=50", f"hydra.run.dir={out}",
            monkeypatch=monkeypatch, capsys=capsys)
    finally:
        torch.set_num_threads(before)
    assert code == 0, err[-2000:]
    report = json.loads((out / "benchmark.json").read_text())
    assert report["environment"]["threads"] == 1 and report["settings"]["imgsz"] == 64
    config_row, ckpt_row = report["results"]
    assert config_row["name"] == "tiny_ghost" and ckpt_row["name"] == str(weights)
    assert config_row["params"] == ckpt_row["params"] > 0 and config_row["gflops"] > 0
    assert 0 < config_row["params_fused"] <= config_row["params"]  # BN folded into the convolutions
    modes = ["eager", "fused"]  # ONNX Runtime: test below (one export is the slow part)
    for row in (config_row, ckpt_row):
        assert sorted(row["latency"]) == sorted(modes)
        for mode in modes:
            assert set(row["latency"][mode]) == {"1", "2"}  # batch 1 and batch N
            assert row["latency"][mode]["2"]["per_image"] == pytest.approx(row["latency"][mode]["2"]["median"] / 2)
    assert config_row["metrics"] is None  # random weights: no mAP for a config
    assert set(ckpt_row["speed"]) == {"preprocess", "inference", "postprocess"}
    # the benchmark's mAP is the evaluation's: the same checkpoint, data and settings through ghostdet.eval directly
    # (conf 0 so that this random-weight model has detections to score at all)
    from ghostdet.data import build_dataloader, build_dataset
    from ghostdet.eval import evaluate_model
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    dataset = build_dataset(yolo_data_cfg(yolo_split), split="val", imgsz=64, augment=False)
    model, _ = build_model_from_checkpoint(weights)
    expected = evaluate_model(model.eval(), build_dataloader(dataset, batch_size=4, workers=0, shuffle=False),
                              dataset.coco_gt(), dataset.category_ids, names=dataset.names, conf=0.0, max_det=50,
                              progress=False).metrics
    assert expected["AP50"] > 0
    assert ckpt_row["metrics"]["AP"] == pytest.approx(expected["AP"], abs=1e-9)
    assert ckpt_row["metrics"]["AP50"] == pytest.approx(expected["AP50"], abs=1e-9)

    markdown = (out / "benchmark.md").read_text()
    table = [line for line in markdown.split("\n\n")[0].splitlines() if line.startswith("|")]
    assert len(table) == 4  # header, separator, two models
    # with data=: each mode's own mAP next to its latency, for the checkpoint (configs have random weights)
    assert set(ckpt_row["mode_metrics"]) == set(modes) and config_row["mode_metrics"] == {}
    assert ckpt_row["mode_metrics"]["eager"]["mAP50-95"] == pytest.approx(ckpt_row["metrics"]["AP"])
    per_mode = [line for line in markdown.split("mAP of each mode")[1].splitlines() if line.startswith("|")]
    assert len(per_mode) == 2 + 2 * len(modes) and "| PyTorch fused |" in per_mode[-1]
    assert "PyTorch fused b2 (ms/img)" in table[0] and "mAP50-95" in table[0]
    assert "1 threads" in markdown and "tiny_ghost" in stdout


@pytest.mark.slow
@pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed (pip install ghostdet[export])")
def test_benchmark_model_in_onnxruntime_uses_the_exported_deploy_graph():
    from ghostdet.models import build_model
    from omegaconf import OmegaConf

    model = build_model(OmegaConf.create(tiny_model_cfg()), num_classes=3)
    res = benchmark_model(model, imgsz=64, batch_sizes=[2], modes=["onnxruntime"], warmup=0, repeats=1, threads=1)
    stats = res["latency"]["onnxruntime"][2]
    assert stats["repeats"] == 1 and stats["per_image"] == pytest.approx(stats["median"] / 2)
    assert res["skipped"] == {} and res["params"] > 0


def test_benchmark_tool_rejects_unknown_model(project_root, tmp_path, monkeypatch, capsys):
    code, _out, err = run_tool_in_process(project_root, "benchmark.py", "models=[no_such_model]",
                                          f"hydra.run.dir={tmp_path}", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("error: no_such_model: not a checkpoint")
