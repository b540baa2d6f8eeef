"""Model files can never run code: the registry, plain-data specs, and hostile checkpoints through every path.

A checkpoint may only name registered ghostdet models with plain-value arguments. Each hostile file below is
refused by the Python API and by every tool with one line and exit 1, and nothing is created or changed:
the test lists the working folder and the marker paths the payloads aim at, before and after.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ghostdet.models import build_model, list_models, register_backbone, to_spec
from ghostdet.utils.checkpoint import build_model_from_checkpoint, save_checkpoint
from ghostdet.utils.errors import CheckpointError, ConfigError, GhostdetError
from helpers import run_main_in_process

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY = {"name": "ghost_yolo", "backbone": {"name": "ghostnet", "width": 0.25, "features_only": True},
        "neck_channels": 16, "head_convs": 1}
LEGACY_TINY = {"_target_": "ghostdet.models.detector.GhostYOLO",
               "backbone": {"_target_": "ghostdet.models.backbones.ghostnet.GhostNet", "width": 0.25,
                            "features_only": True},
               "neck_channels": 16, "head_convs": 1}


PLUGIN = '''
import torch.nn as nn
from ghostdet.models import register_backbone


@register_backbone("plugin_tiny_backbone")
class PluginTinyBackbone(nn.Module):
    def __init__(self, width: int = 8, features_only: bool = True):
        super().__init__()
        self.out_channels = [width, width, width]
        self.convs = nn.ModuleList(nn.Conv2d(3, width, 1, stride=s) for s in (8, 16, 32))

    def forward(self, x):
        return [conv(x) for conv in self.convs]
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A user's module that registers a backbone, importable as ``my_plugin_mod`` (imported once per session:
    registering the same name twice is refused)."""
    import importlib

    folder = tmp_path_factory.mktemp("plugin")
    (folder / "my_plugin_mod.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))
    try:
        yield folder, importlib.import_module("my_plugin_mod")
    finally:
        sys.path.remove(str(folder))


# ------------------------------------------------------------------------------------------------ registry
def test_every_part_is_registered_by_name():
    assert {"ghostnet", "repghostnet", "ghostnetv2", "gghost_regnet"} <= set(list_models("backbone"))
    assert list_models("neck") == ["ghost_pan"] and list_models("head") == ["yolo_head"]
    assert list_models("detector") == ["ghost_yolo"]


def test_build_model_from_a_plain_spec_and_overrides():
    model = build_model(TINY, num_classes=3).eval()
    assert type(model).__name__ == "GhostYOLO" and model.num_classes == 3
    assert type(model.backbone).__name__ == "GhostNet"
    out = model.predict(torch.rand(1, 3, 64, 64))
    assert set(out[0]) == {"boxes", "scores", "labels"}
    # the parts build on their own too
    neck = build_model({"name": "ghost_pan", "in_channels": [8, 16, 32], "channels": 16})
    assert neck.out_channels == [16, 16, 16]


def test_model_configs_are_specs_without_callables():
    from omegaconf import OmegaConf

    for path in sorted((PROJECT_ROOT / "configs" / "model").glob("*.yaml")):
        text = path.read_text()
        assert "_target_" not in text, path
        spec = to_spec(OmegaConf.load(path), path.name)
        assert spec["name"] == "ghost_yolo" and spec["backbone"]["name"] in list_models("backbone"), path


@pytest.mark.parametrize("spec, fragments", [
    ({"name": "nope"}, ["'nope' is not registered", "ghostnet", "plugins="]),
    ({**TINY, "neck_chanels": 8}, ["unknown argument(s) neck_chanels", "valid:", "neck_channels"]),
    ({**TINY, "backbone": {"name": "ghostnet", "widht": 1.0}}, ["model.backbone", "widht", "valid: width"]),
    ({**TINY, "backbone": {"name": "yolo_head"}}, ["'yolo_head' is a head, not a backbone", "ghostnet"]),
    ({"name": "yolo_head", "num_classes": 2}, ["missing a required argument: 'in_channels'"]),
    ({"backbone": {"name": "ghostnet"}}, ["needs 'name'"]),
    ({**TINY, "neck_channels": {"x": 1}}, ["model.neck_channels", "needs 'name'"]),
    ({**TINY, "_args_": [1]}, ["model._args_", "not allowed"]),
    ({**TINY, "strides": [8, 16, object()]}, ["model.strides[2]", "not a plain value"]),
])
def test_registry_errors_are_one_line_config_errors(spec, fragments):
    with pytest.raises(ConfigError) as err:
        build_model(spec, num_classes=2)
    msg = str(err.value)
    assert "\n" not in msg
    for fragment in fragments:
        assert fragment in msg, msg


def test_a_user_backbone_registers_itself_and_duplicates_are_refused(plugin_dir):
    import torch.nn as nn

    TinyBackbone = plugin_dir[1].PluginTinyBackbone
    model = build_model({"name": "ghost_yolo", "backbone": {"name": "plugin_tiny_backbone", "width": 8},
                         "neck_channels": 16}, num_classes=2)
    assert isinstance(model.backbone, TinyBackbone)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("plugin_tiny_backbone")(nn.Identity)
    # a user class is never reachable through an old-style _target_ path
    with pytest.raises(ConfigError, match="not a registered ghostdet model"):
        to_spec({"_target_": f"{TinyBackbone.__module__}.{TinyBackbone.__qualname__}"})


# ----------------------------------------------------------------------------------------- checkpoints
def _state(spec=TINY, nc=2):
    torch.manual_seed(0)
    return build_model(spec, num_classes=nc).state_dict()


def _write(path: Path, model_node, *, new_format: bool = True, train_config: dict | None = None) -> Path:
    config = dict(train_config or {"imgsz": 64})
    config["model"] = model_node
    ckpt = {"model": _state(), "ema": None, "names": ["a", "b"], "category_ids": None, "epoch": 1,
            "config": config, "ghostdet_version": "0.1.0", "optimizer": {}}
    if new_format:
        ckpt["model_spec"] = model_node
    save_checkpoint(ckpt, path)
    return path


def test_current_and_pre_registry_checkpoints_still_load(tmp_path):
    x = torch.rand(1, 3, 64, 64)
    reference = build_model(TINY, num_classes=2)
    reference.load_state_dict(_state())
    expected = reference.eval()(x)
    for name, node, new in (("new.pt", TINY, True), ("legacy.pt", LEGACY_TINY, False)):
        model, meta = build_model_from_checkpoint(_write(tmp_path / name, node, new_format=new))
        assert meta["spec"] == {**TINY, "backbone": {**TINY["backbone"], "pretrained": None}} or \
            meta["spec"]["backbone"]["name"] == "ghostnet"
        for a, b in zip(model(x), expected):
            torch.testing.assert_close(a, b)


def test_rebuilding_never_reads_the_pretrained_file_a_checkpoint_names(tmp_path):
    node = {**TINY, "backbone": {**TINY["backbone"], "pretrained": str(tmp_path / "missing.pth")}}
    model, meta = build_model_from_checkpoint(_write(tmp_path / "p.pt", node))
    assert meta["spec"]["backbone"]["pretrained"] is None


def _payloads(tmp_path: Path) -> dict:
    """Hostile model nodes, each aimed at a marker path of its own (none may ever exist)."""
    m = {k: tmp_path / "markers" / f"{k}.txt" for k in ("chain", "open", "write_text", "hub")}
    evil_pickle = pickle.dumps(print, protocol=0).decode("latin-1")
    return {
        "chain": ({"_target_": "builtins.tuple", "_args_": [[
            {"_target_": "pathlib.Path.write_text", "self": {"_target_": "pathlib.Path", "_args_": [str(m["chain"])]},
             "data": evil_pickle},
            {"_target_": "torch.load", "_args_": [str(m["chain"])], "weights_only": False}]]}, m["chain"]),
        "open": ({**LEGACY_TINY, "backbone": {"_target_": "builtins.open", "_args_": [str(m["open"]), "w"]}},
                 m["open"]),
        "write_text": ({**LEGACY_TINY, "backbone": {"_target_": "pathlib.Path.write_text",
                                                     "self": {"_target_": "pathlib.Path", "_args_": [str(m["write_text"])]},
                                                     "data": "x"}}, m["write_text"]),
        "hub": ({**LEGACY_TINY, "backbone": {"_target_": "torch.hub.load", "repo_or_dir": str(m["hub"].parent),
                                              "model": "x", "source": "local", "trust_repo": True}}, m["hub"]),
        "identity": ({**LEGACY_TINY, "backbone": {"_target_": "torch.nn.Identity"}}, None),
        "extra_keys": ({**TINY, "evil": "rm -rf /"}, None),
        "new_format_target": ({"name": "ghost_yolo", "backbone": {"_target_": "builtins.open",
                                                                   "_args_": [str(m["open"]), "w"]}}, m["open"]),
    }


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*"))}


def test_hostile_checkpoints_are_refused_by_the_api(tmp_path):
    from ghostdet import Detector

    (tmp_path / "markers").mkdir()
    for kind, (node, marker) in _payloads(tmp_path).items():
        for new in (True, False):
            path = _write(tmp_path / f"{kind}-{new}.pt", node, new_format=new)
            before = _snapshot(tmp_path)
            with pytest.raises(CheckpointError) as err:
                build_model_from_checkpoint(path)
            assert str(path) in str(err.value) and "\n" not in str(err.value), (kind, str(err.value))
            with pytest.raises(GhostdetError):
                Detector.from_checkpoint(path)
            assert _snapshot(tmp_path) == before, kind
            assert marker is None or not marker.exists(), kind


def _train_config(tmp_path: Path) -> dict:
    """A complete train config (configs/train.yaml composed), as the trainer stores it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["epochs=3", "imgsz=64", f"data.root={tmp_path / 'shapes'}"])
    return OmegaConf.to_container(cfg, resolve=True)


TOOL_CALLS = {  # tool -> its command line naming the checkpoint (train: resume= with a complete train config)
    "detect": lambda path, image: [image, "--weights", path],
    "eval": lambda path, image: [f"weights={path}"],
    "export": lambda path, image: ["--weights", path],
    "benchmark": lambda path, image: [f"models=[{path}]"],
    "train": lambda path, image: [f"resume={path}"],
}


def _hostile_files(tmp_path: Path) -> tuple[Path, Path, list]:
    """(work folder, photo, [(kind, marker, checkpoint)]): every payload written as a checkpoint of a complete train
    config in ``tmp_path / "work"``."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "markers").mkdir()
    image = work / "photo.jpg"
    import cv2
    import numpy as np

    cv2.imwrite(str(image), np.full((64, 64, 3), 127, np.uint8))
    train_cfg = _train_config(tmp_path)
    files = [(kind, marker, _write(work / f"{kind}.pt", node, new_format=kind.startswith("new"), train_config=train_cfg))
             for kind, (node, marker) in _payloads(tmp_path).items()]
    return work, image, files


def _assert_refused(proc: subprocess.CompletedProcess, kind: str, marker: Path | None) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, (kind, proc.args[0], proc.stderr)
    assert "Traceback" not in proc.stderr and len(lines) == 1 and lines[0].startswith("error: "), (kind, proc.stderr)
    assert "refused" in lines[0] or "unknown argument" in lines[0], (kind, proc.args[0], lines[0])
    assert marker is None or not marker.exists(), (kind, proc.args[0])


def test_hostile_checkpoints_are_refused_by_every_tool(tmp_path):
    """detect, eval, export, benchmark and train resume= (complete train config): exit 1, one line, nothing written.
    Each tool's main runs in this process (its command line, its working folder); the end-to-end test below runs two
    of them as scripts."""
    work, image, files = _hostile_files(tmp_path)
    before = _snapshot(tmp_path)
    for kind, marker, path in files:
        for tool, args in TOOL_CALLS.items():
            proc = run_main_in_process(tool, *args(path, image), cwd=work)
            _assert_refused(proc, kind, marker)
            assert _snapshot(tmp_path) == before, (kind, tool)


@pytest.mark.slow
def test_hostile_checkpoints_are_refused_by_the_tool_scripts(tmp_path):
    """End to end, as a user runs them: python tools/detect.py (argparse) and tools/train.py resume= (Hydra) on the
    payload that would chain a file write into an unsafe torch.load."""
    work, image, files = _hostile_files(tmp_path)
    kind, marker, path = next(f for f in files if f[0] == "chain")
    before = _snapshot(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [(tool, subprocess.Popen([sys.executable, str(PROJECT_ROOT / "tools" / f"{tool}.py"),
                                      *map(str, TOOL_CALLS[tool](path, image))], cwd=work, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for tool in ("detect", "train")]
    for tool, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        _assert_refused(subprocess.CompletedProcess([f"{tool}.py"], proc.returncode, stdout, stderr), kind, marker)
    assert _snapshot(tmp_path) == before


@pytest.mark.slow
def test_a_checkpoint_of_a_plugin_model_loads_only_when_the_user_imports_the_plugin(tmp_path, plugin_dir):
    spec = {"name": "ghost_yolo", "backbone": {"name": "plugin_tiny_backbone", "width": 8}, "neck_channels": 16}
    model = build_model(spec, num_classes=2)
    save_checkpoint({"model": model.state_dict(), "ema": None, "names": ["a", "b"], "config": {"imgsz": 64},
                     "model_spec": spec, "ghostdet_version": "0.1.0"}, tmp_path / "plugin.pt")
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "photo.jpg"), np.full((64, 64, 3), 127, np.uint8))
    env = {**os.environ, "PYTHONPATH": str(plugin_dir[0])}
    base = [sys.executable, str(PROJECT_ROOT / "tools" / "detect.py"), str(tmp_path / "photo.jpg"),
            "--weights", str(tmp_path / "plugin.pt"), "--out", str(tmp_path / "out")]
    refused = subprocess.run(base, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr
    assert "'plugin_tiny_backbone' is not registered" in lines[0] and "--plugins" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
    loaded = subprocess.run(base + ["--plugins", "my_plugin_mod"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert (tmp_path / "out" / "predictions.json").is_file()


def test_a_data_config_read_from_a_checkpoint_writes_nothing(tmp_path):
    """eval/resume read the stored data config read-only: no shapes set generated, no scan cache written."""
    from ghostdet.data import build_dataset
    from ghostdet.utils.errors import DataError

    with pytest.raises(DataError):
        build_dataset({"format": "shapes", "root": str(tmp_path / "shapes")}, split="val", imgsz=64, read_only=True)
    assert list(tmp_path.iterdir()) == []
