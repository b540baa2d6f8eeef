"""Training outputs never replace a file that existed before the run (issue 23 §2, §7): run dirs are created
exclusively, a non-empty one is refused unless the run resumes it, a live run holds a lock in ``weights/`` that
resume respects, and a train command that fails leaves no run dir behind. The tool runs in this process
(``ghostdet.cli.train.main`` with ``sys.argv``), as ``ghostdet train`` runs it."""
from __future__ import annotations

import logging
import sys
from datetime import datetime
from pathlib import Path

import pytest

from ghostdet.cli import train as train_tool
from ghostdet.engine import Trainer, find_resume_checkpoint, state
from ghostdet.engine.run_dir import lock_holder
from ghostdet.utils.checkpoint import save_checkpoint
from ghostdet.utils.errors import ConfigError
from helpers import compose_train, tiny_overrides


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def run_train_tool(monkeypatch, capsys, cwd: Path, *args) -> tuple[int, str]:
    """``ghostdet train ARGS`` in ``cwd``: (exit status, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["ghostdet-train", *map(str, args)])
    capsys.readouterr()
    root = logging.getLogger()
    handlers, level, code = list(root.handlers), root.level, 0
    try:
        train_tool.main()
    except SystemExit as e:
        code = e.code
    finally:  # the tool's console handler writes to this test's captured stderr: not beyond it
        for handler in set(root.handlers) - set(handlers):
            root.removeHandler(handler)
        root.setLevel(level)
    return code, capsys.readouterr().err


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_runs_started_in_the_same_second_get_two_run_dirs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    now = datetime(2026, 1, 2, 10, 0, 0)
    dirs = [train_tool.train_run_dir([], now=now).path for _ in range(3)]
    day = Path("runs/train/2026-01-02")
    assert dirs == [day / "10-00-00", day / "10-00-00_2", day / "10-00-00_3"]
    assert all(d.is_dir() and not any(d.iterdir()) for d in dirs)
    assert train_tool.train_run_dir(["runs_root=elsewhere"], now=now).path == Path("elsewhere/2026-01-02/10-00-00")


@pytest.mark.parametrize("bad", ["data=yolo data.root={tmp}/no_such_folder", "imgsz=100", "epochs=0", "batch=0",
                                 "schedule.name=step", "epoch=3"])
def test_a_failed_train_leaves_no_run_dir(tmp_path, monkeypatch, capsys, bad):
    code, err = run_train_tool(monkeypatch, capsys, tmp_path, *bad.format(tmp=tmp_path).split(), "device=cpu")
    assert code == 1 and "Traceback" not in err
    if bad != "epoch=3":  # a mistyped key: Hydra's (or the key check's) message
        assert err.strip().splitlines()[-1].startswith("error: "), err
    assert not (tmp_path / "runs").exists(), sorted(map(str, tmp_path.rglob("*")))


def test_train_refuses_a_run_dir_that_is_not_empty(shapes_root, tmp_path, monkeypatch, capsys):
    old = tmp_path / "old_run"
    (old / "weights").mkdir(parents=True)
    (old / "weights" / "last.pt").write_bytes(b"an earlier run's weights")
    (old / "results.csv").write_text("epoch\n1\n")
    before = all_files(old)
    code, err = run_train_tool(monkeypatch, capsys, tmp_path, f"hydra.run.dir={old}", "epochs=1", "device=cpu")
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: run dir") and "not empty" in lines[0]
    assert all_files(old) == before and not (old / ".hydra").exists()
    # the library refuses it too (the tool's own .hydra/ and train.log aside), and changes nothing
    with pytest.raises(ConfigError, match="is not empty .*resume="):
        Trainer(compose_train(tiny_overrides(shapes_root)), old)
    assert all_files(old) == before
    fresh = tmp_path / "tool_made"
    (fresh / ".hydra").mkdir(parents=True)
    (fresh / "train.log").write_text("")
    Trainer(compose_train(tiny_overrides(shapes_root)), fresh).close()


def test_a_live_run_is_locked_and_resume_refuses_it(shapes_root, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs" / "train"
    live = Trainer(compose_train(tiny_overrides(shapes_root, epochs=3)), runs / "2026-01-01" / "10-00-00")
    last = save_checkpoint(state.state_dict(live, 1), live.weights_dir / "last.pt")  # as after its first epoch
    assert lock_holder(live.weights_dir).startswith("pid ")
    with pytest.raises(ConfigError, match="still training .*pid"):
        Trainer(compose_train(tiny_overrides(shapes_root, resume=str(last))), tmp_path / "x")
    with pytest.raises(ConfigError, match="still training"):
        find_resume_checkpoint(True, runs)
    with pytest.raises(ConfigError, match="is not empty"):
        Trainer(compose_train(tiny_overrides(shapes_root)), live.run_dir)  # a second trainer in the same dir
    for resume in ("true", last):  # the tool: one line, before Hydra writes anything into the run
        code, err = run_train_tool(monkeypatch, capsys, tmp_path, f"resume={resume}")
        lines = err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and "still training" in lines[0], err
    assert not (live.run_dir / ".hydra").exists()
    live.close()  # the run ends: its lock goes, and it can be resumed
    assert lock_holder(live.weights_dir) is None and not (live.weights_dir / "train.lock").exists()
    resumed = Trainer(compose_train(tiny_overrides(shapes_root, resume="true", runs_root=runs)), tmp_path / "x")
    assert resumed.run_dir == live.run_dir.resolve() and resumed.start_epoch == 1
    assert lock_holder(resumed.weights_dir)
    resumed.close()


def test_resume_continues_in_its_own_dir_and_keeps_earlier_hydra_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    last = tmp_path / "runs" / "train" / "2026-01-01" / "10-00-00" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    first = train_tool.train_run_dir([f"resume={last}"])
    second = train_tool.train_run_dir(["resume=true"])
    assert first.path == second.path == last.parent.parent.resolve() and first.resuming
    assert (first.output_subdir, second.output_subdir) == (".hydra/resume", ".hydra/resume2")
    assert f"hydra.run.dir='{first.path}'" in first.hydra_overrides()
    with pytest.raises(ConfigError, match="continues in its own folder"):
        train_tool.train_run_dir([f"resume={last}", f"hydra.run.dir={tmp_path / 'other'}"])
