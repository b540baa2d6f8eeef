"""The wheel: built from this checkout, installed (no dependencies) into a fresh virtual environment outside it, and
the installed `ghostdet` command trains, detects and exports from a directory that is not the checkout.

No network: the wheel is built without build isolation (setuptools of this environment), and the fresh environment
reaches torch & co. through a .pth file naming this environment's site-packages, so nothing is reinstalled. Only a
.pth file's path lines are followed there (not that folder's own .pth files), so the editable install of this
environment does not leak in; the test checks that ghostdet and its configs come from the new environment.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from helpers import ROOT, tiny_overrides

pytestmark = pytest.mark.slow

# top-level entries of the checkout that are not sources of the wheel (environments, data, outputs, build leftovers)
NOT_COPIED = {".git", ".venv", ".venv-min", "venv", "data", "runs", "outputs", "build", "dist", ".pytest_cache"}


def _run(args, cwd: Path, env: dict, timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def build_wheel(tmp: Path) -> Path:
    """``pip wheel`` of a copy of the checkout (so no build/ or stale files of the checkout end up in it)."""
    pytest.importorskip("setuptools", reason="building the wheel without network needs setuptools in this environment")
    src = tmp / "src"
    src.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in NOT_COPIED or entry.name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, src / entry.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(entry, src / entry.name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", tmp / "dist", src], cwd=tmp, env=os.environ.copy())
    (wheel,) = (tmp / "dist").glob("ghostdet-*.whl")
    return wheel


def fresh_venv(tmp: Path, wheel: Path) -> tuple[Path, dict]:
    """A new virtual environment with the wheel installed and this environment's packages reachable: (bin, env)."""
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp, env=os.environ.copy())
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PATH=str(bindir) + os.pathsep + env.get("PATH", ""), VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1",
               PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))  # torch, hydra, pip, ...
    (site / "_ghostdet_test_deps.pth").write_text("".join(f"{path}\n" for path in ours))
    # --ignore-installed: the ghostdet of this environment (visible through the .pth) is neither used nor uninstalled
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel], tmp, env)
    return bindir, env


def test_the_installed_wheel_trains_detects_and_exports_from_any_directory(tmp_path):
    pytest.importorskip("onnxruntime", reason="ghostdet export checks the ONNX file with onnxruntime")
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("ghostdet/configs/train.yaml", "ghostdet/configs/model/ghost_yolo.yaml",
                 "ghostdet/configs/data/shapes.yaml", "ghostdet/cli/__init__.py", "ghostdet/cli/train.py"):
        assert name in names, name
    assert not [n for n in names if n.startswith(("configs/", "tools/", "tests/"))]

    bindir, env = fresh_venv(tmp_path, wheel)
    venv = bindir.parent
    work = tmp_path / "work"  # not the checkout: only the installed package can be found from here
    work.mkdir()
    where = _run([bindir / "python", "-c", "import ghostdet, ghostdet.cli.common as c; print(ghostdet.__file__); "
                  "print(c.config_dir())"], work, env).stdout.split()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv.resolve()), (path, "not from the new environment")
    assert Path(where[1]).name == "configs" and (Path(where[1]) / "train.yaml").is_file()
    assert "check-data" in _run([bindir / "ghostdet", "--help"], work, env).stdout

    # the default data root (data/shapes) and run dir (runs/train) are relative to the working directory
    overrides = [o for o in tiny_overrides(work / "unused", epochs=1) if not o.startswith("data.root=")]
    trained = _run([bindir / "ghostdet", "train", "model=ghost_yolo", *overrides], work, env)
    assert "best mAP50" in trained.stdout, trained.stdout[-2000:]
    assert (work / "data" / "shapes" / "annotations" / "instances_val.json").is_file()
    (best,) = glob.glob(str(work / "runs" / "train" / "*" / "*" / "weights" / "best.pt"))

    image = sorted((work / "data" / "shapes" / "images" / "val").glob("*.jpg"))[0]
    detected = _run([bindir / "ghostdet", "detect", image, "--weights", best], work, env)
    assert "results saved to" in detected.stdout, detected.stdout[-2000:]
    assert len(glob.glob(str(work / "runs" / "detect" / "*" / "predictions.json"))) == 1

    exported = _run([bindir / "ghostdet", "export", "--weights", best], work, env)
    assert "exported" in exported.stdout and Path(best).with_suffix(".onnx").is_file(), exported.stdout[-2000:]
