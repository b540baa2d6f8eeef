"""Train a Ghost-YOLO detector: `ghostdet train model=ghost_yolo` or `python tools/train.py model=ghost_yolo` (Hydra;
see configs/train.yaml).

Examples:
    python tools/train.py                                   # shapes demo on CPU, a few minutes
    python tools/train.py data=coco128 epochs=50 imgsz=320
    python tools/train.py resume=runs/train/2026-11-22/08-00-00/weights/last.pt
    python tools/train.py data=yolo data.root=/data/my_set weights=runs/train/2026-11-22/08-00-00/weights/best.pt
    torchrun --nproc_per_node 2 tools/train.py data=coco device=cuda   # DDP, batch is per process

The run dir is chosen before Hydra runs (:func:`train_run_dir`), so that it is created exclusively and a command
that fails before its first checkpoint leaves nothing behind.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ghostdet.cli.common import (check_checkpoints_before_hydra, config_dir, refuse_unknown_keys,
                                 rewrite_data_yaml_argv, run_tool, setup_logging)
from ghostdet.engine import train
from ghostdet.engine.distributed import env_world
from ghostdet.engine.outputs import check_weights_and_resume
from ghostdet.engine.outputs import given as _given
from ghostdet.engine.resume import RESUME_OVERRIDABLE, find_resume_checkpoint, is_no_resume, run_dir_of_checkpoint
from ghostdet.engine.run_dir import check_new_run_dir, has_checkpoint
from ghostdet.models import import_plugins
from ghostdet.utils.atomic import missing_folders, new_numbered_dir
from ghostdet.utils.errors import ConfigError


@dataclass
class RunDir:
    """The run dir of one ``ghostdet train`` command and what the command created for it."""

    path: Path
    output_subdir: str | None  # where Hydra writes its config: .hydra, .hydra/resume<N> (None: nowhere, ranks > 0)
    created: list[Path]  # folders this command made, the run's own first, then its parents innermost first
    resuming: bool = False
    scratch: bool = False  # a rank > 0 of a DDP run: a temporary dir, removed at the end

    def hydra_overrides(self) -> list[str]:
        subdir = "null" if self.output_subdir is None else _quoted(self.output_subdir)
        return [f"hydra.run.dir={_quoted(str(self.path))}", f"hydra.output_subdir={subdir}"]

    def finish(self, succeeded: bool) -> None:
        """After the command: a scratch dir goes; a failed command removes what it created unless the run has a
        checkpoint to resume (a failed resume: its .hydra/resume<N> only)."""
        if self.scratch:
            shutil.rmtree(self.path, ignore_errors=True)
        elif succeeded or (not self.resuming and has_checkpoint(self.path)):
            return
        elif self.resuming:
            for folder in self.created:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            if self.path not in self.created:  # the user's folder, empty before this command: empty again
                for entry in list(self.path.iterdir()) if self.path.is_dir() else []:
                    shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            for folder in self.created:
                shutil.rmtree(folder, ignore_errors=True) if folder == self.path else _rmdir_if_empty(folder)


def train_run_dir(args: list[str], now: datetime | None = None) -> RunDir:
    """Where ``ghostdet train`` writes, chosen (and created) before Hydra runs: the one place that decides it.

    ``resume=...``: the run's own dir (refused while a live run holds it; Hydra's config goes to a new
    ``.hydra/resume<N>``). ``hydra.run.dir=DIR``: DIR, which must be new or empty. ``name=NAME``:
    ``<project>/NAME``, or ``NAME2``, ``NAME3`` ... when it exists (ultralytics' project/name; ``project`` defaults
    to ``runs_root``). Else Hydra's layout ``<project>/<date>/<time>``, created exclusively: ``<time>_2``, ``_3`` ...
    when a run of the same second has it. Ranks > 0 of a DDP run: a scratch dir (they write into rank 0's)."""
    values = _argv_values(args)
    check_weights_and_resume(values)  # before a resumed run's .hydra/resume<N> is made
    rank = env_world()[0]
    if rank > 0:
        path = Path(tempfile.mkdtemp(prefix=f"ghostdet-rank{rank}-"))
        return RunDir(path, None, [path], scratch=True)
    given, resume = values.get("hydra.run.dir"), values.get("resume")
    runs_root = values.get("runs_root") or str(OmegaConf.load(config_dir() / "train.yaml").runs_root)
    if not is_no_resume(resume):
        run = run_dir_of_checkpoint(find_resume_checkpoint(resume, runs_root))
        if given and Path(given).resolve() != run:
            raise ConfigError(f"hydra.run.dir={given}: a resumed run continues in its own folder ({run}); "
                              "leave hydra.run.dir out")
        subdir = new_numbered_dir(run / ".hydra", "resume")  # resume, resume2, ...: earlier configs stay
        return RunDir(run, str(subdir.relative_to(run)), [subdir], resuming=True)
    project, run_name = values.get("project"), values.get("name")
    if given and (_given(project) or _given(run_name)):
        raise ConfigError(f"hydra.run.dir={given} with project=/name=: give one way of naming the run dir")
    if given:
        path = Path(given)
        check_new_run_dir(path, allowed=())
        created = missing_folders(path)
        path.mkdir(parents=True, exist_ok=True)
        return RunDir(path, ".hydra", created)
    root = Path(project) if _given(project) else Path(runs_root)
    if _given(run_name):
        if Path(run_name).name != run_name or run_name in (".", ".."):
            raise ConfigError(f"name={run_name}: must be a folder name (no '/'); put the parent folder in project=")
        created = missing_folders(root)
        path = new_numbered_dir(root, run_name)  # exclusive: name, name2, name3 ...
        return RunDir(path, ".hydra", [path, *created])
    now = now or datetime.now()
    base, name = root / now.strftime("%Y-%m-%d"), now.strftime("%H-%M-%S")
    created = missing_folders(base)
    base.mkdir(parents=True, exist_ok=True)
    try:
        (base / name).mkdir()  # exclusive: two runs started in the same second get two folders
        path = base / name
    except FileExistsError:
        path = new_numbered_dir(base, f"{name}_2")
    return RunDir(path, ".hydra", [path, *created])


def command_line_overrides(cfg: DictConfig, task_overrides: list[str]) -> dict:
    """The top-level keys given on the command line (Hydra's ``overrides.task``), for ``Trainer(resume_overrides=)``:
    the ones in ``RESUME_OVERRIDABLE`` with their composed values, the others as typed (to warn about)."""
    keys = {}
    for item in task_overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key != "resume" and "=" in item:
            keys[key] = cfg[key] if key in RESUME_OVERRIDABLE else item.split("=", 1)[1]
    return keys


def _argv_values(args: list[str]) -> dict[str, str]:
    """``key=value`` arguments (``+key=``, ``++key=`` too) as a dict; quotes around a value removed."""
    values = {}
    for arg in args:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("'\"")
    return values


def _quoted(value: str) -> str:
    """A value for Hydra's override grammar (paths with spaces, commas or brackets included)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _rmdir_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty (another run wrote there meanwhile) or already gone


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
@run_tool
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    setup_logging()
    rank = env_world()[0]
    if rank > 0:
        logging.getLogger().setLevel(logging.WARNING)
    run_dir = HydraConfig.get().runtime.output_dir
    handler = None
    if rank == 0:
        handler = logging.FileHandler(os.path.join(run_dir, "train.log"))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    try:
        import_plugins(cfg.get("plugins"))  # the user's own modules (never names read from a checkpoint)
        metrics = train(cfg, run_dir, resume_overrides=command_line_overrides(cfg, HydraConfig.get().overrides.task))
    finally:
        if handler is not None:  # closed before a failed run's folder is removed
            logging.getLogger().removeHandler(handler)
            handler.close()
    if rank == 0 and metrics:
        print(f"best mAP50 {metrics['mAP50']:.4f}  mAP50-95 {metrics['mAP50-95']:.4f}  ({run_dir})")


def main() -> None:
    """``ghostdet train`` / ``python tools/train.py``: the arguments are Hydra overrides read from ``sys.argv``."""
    rewrite_data_yaml_argv()  # data=my_data.yaml (ultralytics / Roboflow) -> data=yolo data.root=...
    refuse_unknown_keys("train")  # epoch=3: "did you mean epochs?" instead of Hydra's "+epoch=3" that nothing reads
    check_checkpoints_before_hydra(("resume", "weights"))  # a refused file leaves no run dir behind
    args = sys.argv[1:]
    if any(arg.startswith("-") for arg in args):  # --help, --cfg job, -m ...: Hydra prints or sweeps, trains nothing
        hydra_main()
        return
    run = run_tool(train_run_dir)(args)
    sys.argv[1:] = [a for a in args if not a.lstrip("+").startswith(("hydra.run.dir=", "hydra.output_subdir="))]
    sys.argv += run.hydra_overrides()
    succeeded = False
    try:
        hydra_main()
        succeeded = True
    finally:
        run.finish(succeeded)


if __name__ == "__main__":
    main()
