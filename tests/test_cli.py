"""The `ghostdet` command (ghostdet/cli): its commands, its errors, the tools/ scripts that call it, where the configs are
found, and the package list that ships them. The installed wheel end to end is tests/test_wheel.py."""
from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ghostdet.cli import ALIASES, COMMANDS, main
from helpers import ROOT

TOOLS = {"train": "train", "eval": "eval", "detect": "detect", "export": "export", "benchmark": "benchmark",
         "check-data": "check_data"}  # command -> tools/<name>.py


def ghostdet(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``ghostdet ARGS`` in a fresh process, as ``python -m ghostdet.cli`` (the console script's function)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "ghostdet.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_every_tool_is_a_command_with_a_module():
    assert {name: module for name, (module, _what) in COMMANDS.items()} == TOOLS
    for module in TOOLS.values():
        assert importlib.util.find_spec(f"ghostdet.cli.{module}") is not None, module


def test_help_lists_every_command_and_an_unknown_one_is_a_one_line_error(tmp_path):
    shown = ghostdet("--help", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    listed = [line.split()[0] for line in shown.stdout.splitlines() if line.startswith("  ")]
    assert listed == list(TOOLS)
    unknown = ghostdet("trian", "model=ghost_yolo", cwd=tmp_path)
    lines = [line for line in unknown.stderr.splitlines() if line.strip()]
    assert unknown.returncode == 2 and len(lines) == 1, unknown.stderr
    assert lines[0].startswith("error: unknown command 'trian'") and "train" in lines[0]
    bare = ghostdet(cwd=tmp_path)
    assert bare.returncode == 2 and "commands:" in bare.stderr
    assert list(tmp_path.iterdir()) == []


def test_val_and_predict_are_eval_and_detect(monkeypatch, capsys):
    """The names ultralytics users type: ``ghostdet val`` = eval, ``ghostdet predict`` = detect."""
    assert ALIASES == {"val": "eval", "predict": "detect"}
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # main() sets sys.argv for the tool it runs
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ghostdet detect") and "--save-txt" in out
    with pytest.raises(SystemExit):
        main(["val", "wieghts=best.pt"])  # refused before Hydra: the eval tool's own check ran
    assert "did you mean weights?" in capsys.readouterr().err
    assert "aliases: val = eval, predict = detect" in ghostdet("--help", cwd=ROOT).stdout


def test_tool_scripts_are_thin_and_call_the_package(project_root):
    for command, name in TOOLS.items():
        path = project_root / "tools" / f"{name}.py"
        tree = ast.parse(path.read_text())
        imported = [(node.module, [a.name for a in node.names]) for node in ast.walk(tree)
                    if isinstance(node, ast.ImportFrom)]
        assert (f"ghostdet.cli.{name}", ["main"]) in imported, (path, imported)
        assert len(tree.body) <= 8, f"{path}: a tool script only calls ghostdet.cli.{name}.main"


def test_nothing_in_the_library_imports_the_cli(project_root):
    for path in (project_root / "ghostdet").rglob("*.py"):
        if "cli" in path.relative_to(project_root / "ghostdet").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "ghostdet.cli" or n.startswith("ghostdet.cli.") for n in names), path


def test_the_configs_of_a_checkout_are_its_top_level_configs(project_root):
    from ghostdet.cli.common import config_dir

    assert config_dir().resolve() == (project_root / "configs").resolve()
    assert not (project_root / "ghostdet" / "configs").exists()  # one copy


def test_the_package_list_is_the_ghostdet_tree_plus_the_configs(project_root):
    tomllib = pytest.importorskip("tomllib")
    setuptools = pytest.importorskip("setuptools")
    tool = tomllib.loads((project_root / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = setuptools.find_packages(str(project_root), include=["ghostdet", "ghostdet.*"])
    assert sorted(tool["packages"]) == sorted(found + ["ghostdet.configs"])
    assert tool["package-dir"] == {"ghostdet.configs": "configs"}


def test_check_data_command_from_another_directory_writes_under_it(tmp_path):
    """Default paths are relative to the working directory: the shapes set in ./data/shapes, the run in ./runs."""
    proc = ghostdet("check-data", "data.num_train=4", "data.num_val=2", "imgsz=64", "train_samples=1",
                    "val_samples=0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no problems found" in proc.stdout
    assert (tmp_path / "data" / "shapes" / "annotations" / "instances_train.json").is_file()
    assert len(list((tmp_path / "runs" / "check_data").glob("*/*/train_samples.png"))) == 1
