"""tools/check_data.py end to end (a subprocess, like a user runs it)."""
from __future__ import annotations

import os
import subprocess
import sys


def run_check_data(project_root, shared_data, *overrides):
    env = dict(os.environ, GHOSTDET_SHARED_DATA=str(shared_data))
    return subprocess.run([sys.executable, "tools/check_data.py", *overrides], cwd=project_root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_check_data_on_coco128_renders_samples_and_exits_0(project_root, shared_data, tmp_path):
    out = tmp_path / "run"
    proc = run_check_data(project_root, shared_data, "data=coco128", "imgsz=256", "train_samples=4", "val_samples=2",
                          f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "train: 128/128 images used (2 background)" in proc.stdout and "929 boxes kept" in proc.stdout
    assert "person" in proc.stdout and "no problems found" in proc.stdout
    for name in ("train_samples.png", "val_samples.png", "problems.txt"):
        assert (out / name).is_file(), name
    assert (out / "train_samples.png").stat().st_size > 10_000


def test_check_data_on_an_empty_folder_fails_with_one_line(project_root, shared_data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_check_data(project_root, shared_data, "data=yolo", f"data.root={empty}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(empty) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # a failed check leaves no run dir (Hydra had made it, with .hydra/)


def test_check_data_lists_skipped_faults_and_exits_0(project_root, shared_data, tmp_path):
    from helpers import build_broken_yolo_folder

    build_broken_yolo_folder(tmp_path / "broken")
    out = tmp_path / "run"
    proc = run_check_data(project_root, shared_data, "data=yolo", f"data.root={tmp_path / 'broken'}", "data.val=images/train",
                          "imgsz=128", "train_samples=2", "val_samples=1", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8/12 images used" in proc.stdout and "problems (all in" in proc.stdout
    problems = (out / "problems.txt").read_text()
    assert "truncated.jpg: image skipped" in problems and "faults.txt:2: box dropped" in problems
    assert (out / "train_samples.png").is_file()
