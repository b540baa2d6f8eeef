"""Reliability fixes: no boxes on a cached stand-in image, one GPU per torchrun rank, best.pt only from evaluated
epochs, one definition of "no resume", and the declared torch floor."""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ghostdet.data import build_dataset
from ghostdet.engine import Trainer, is_no_resume
from ghostdet.utils.checkpoint import load_checkpoint
from ghostdet.utils.device import select_device
from ghostdet.utils.errors import ConfigError
from helpers import compose_train
from helpers import tiny_overrides as tiny  # the few-second shapes run test_train.py uses

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


# ------------------------------------------------------------------------------------- 1. RAM cache
def _jpeg(seed: int, h: int = 80, w: int = 100) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _yolo_folder(root: Path, n: int = 3) -> dict:
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(n):
        (images / f"im{i}.jpg").write_bytes(_jpeg(i))
        (labels / f"im{i}.txt").write_text("0 0.5 0.5 0.4 0.4\n1 0.3 0.3 0.2 0.2\n")
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    return {"format": "yolo", "root": str(root), "train": "images/train", "val": "images/train"}


@pytest.mark.parametrize("augment", [True, False])
def test_image_that_fails_to_decode_while_caching_never_comes_back_with_boxes(tmp_path, caplog, augment):
    cfg = _yolo_folder(tmp_path)
    ds = build_dataset(cfg, "train", imgsz=64, augment=augment, cache=False,
                       aug_cfg={"mosaic": 0.0, "fliplr": 0.0, "translate": 0.0, "scale": 0.0,
                                "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0})
    bad = next(i for i, r in enumerate(ds.records) if r.file.endswith("im1.jpg"))
    assert len(ds.records[bad].boxes) == 2  # scanned while it was fine
    (tmp_path / "images" / "train" / "im1.jpg").write_bytes(b"\xff\xd8 broken since the scan")
    with caplog.at_level(logging.WARNING, logger="ghostdet"):
        assert ds.cache_in_ram()
    assert "im1.jpg: not an image" in caplog.text and "an empty image without boxes stands in" in caplog.text
    for i in range(len(ds)):
        sample = ds[i]
        if i == bad:
            assert (sample["image"] == 114).all()
            assert len(sample["boxes"]) == len(sample["labels"]) == 0, "grey stand-in served with the real boxes"
        else:
            assert len(sample["boxes"]) == len(sample["labels"]) == 2
    if augment:
        img, boxes, labels = ds.load_resized(bad)  # what mosaic/mixup read
        assert (img == 114).all() and len(boxes) == len(labels) == 0
        assert len(ds.load_resized((bad + 1) % len(ds))[1]) == 2  # the other images are still cached with their boxes


# ------------------------------------------------------------------------------------- 2. device per rank
@pytest.fixture
def four_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize("spec", ["cuda:0", "cuda", "auto", "0", 0, torch.device("cuda", 0)])
def test_cuda0_under_torchrun_means_this_ranks_gpu(four_gpus, spec, caplog):
    with caplog.at_level(logging.INFO, logger="ghostdet"):
        for local_rank in range(4):
            assert select_device(spec, local_rank, world_size=4) == torch.device("cuda", local_rank)
    assert "LOCAL_RANK 3 uses cuda:3" in caplog.text
    assert select_device(spec) == torch.device("cuda", 0)  # a plain run: GPU 0


def test_explicit_gpu_index_under_torchrun(four_gpus, monkeypatch):
    assert select_device("cuda:2") == torch.device("cuda", 2)  # a plain run takes the GPU asked for
    assert select_device("cuda:2", 0, world_size=2) == torch.device("cuda", 2)  # one process per machine
    with pytest.raises(ConfigError, match=r"device=cuda:2 under a distributed launch .*use device=cuda"):
        select_device("cuda:2", 1, world_size=2)
    with pytest.raises(ConfigError, match=r"only 4 CUDA device\(s\) \(LOCAL_RANK=5"):
        select_device("cuda", 5, world_size=8)
    # each process restricted to its own GPU: that GPU is cuda:0 on every rank
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert select_device("cuda:0", 3, world_size=4) == torch.device("cuda", 0)
    assert select_device("cuda", 2, world_size=4) == torch.device("cuda", 0)


def test_trainer_passes_its_rank_to_select_device(monkeypatch, tmp_path):
    import ghostdet.engine.trainer as trainer_module

    seen = []

    def spy(spec, local_rank=0, world_size=1):
        seen.append((spec, local_rank, world_size))
        raise ConfigError("stop here")

    monkeypatch.setattr(trainer_module, "select_device", spy)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="stop here"):
        Trainer(compose_train(["device=cuda:0"]), tmp_path / "run")
    assert seen == [("cuda:0", 1, 2)]


# ------------------------------------------------------------------------------------- 3./4. trainer runs
@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shapes") / "data"


def _watch_epochs(trainer: Trainer, scripted_maps: dict | None = None) -> list[dict]:
    """After every epoch: whether it was evaluated and what weights/best.pt holds. ``scripted_maps``
    (epoch -> mAP50-95) replaces the real evaluation's numbers, to choose which epoch is best."""
    seen, best = [], trainer.weights_dir / "best.pt"
    end_epoch, evaluate = trainer._end_epoch, trainer.evaluate
    state = {"epoch": 0}

    def scripted_evaluate():
        metrics = evaluate()
        if scripted_maps is not None:
            metrics = {**metrics, "mAP50-95": scripted_maps[state["epoch"] + 1]}
        return metrics

    def watched(epoch, losses, metrics, seconds):
        end_epoch(epoch, losses, metrics, seconds)
        ckpt = load_checkpoint(best) if best.exists() else None
        seen.append({"epoch": epoch + 1, "evaluated": metrics is not None,
                     "best": None if ckpt is None else (ckpt["epoch"], ckpt["best_metrics"].get("epoch"),
                                                        ckpt["metrics"].get("epoch"))})
        state["epoch"] = epoch + 1

    trainer._end_epoch, trainer.evaluate = watched, scripted_evaluate
    return seen


def test_best_pt_only_from_evaluated_epochs(shapes_root, tmp_path):
    trainer = Trainer(compose_train(tiny(shapes_root, epochs=2, eval_interval=2)), tmp_path / "two")
    seen = _watch_epochs(trainer)
    trainer.fit()
    assert seen == [{"epoch": 1, "evaluated": False, "best": None},  # never evaluated: no best.pt yet
                    {"epoch": 2, "evaluated": True, "best": (2, 2, 2)}]
    best = load_checkpoint(trainer.weights_dir / "best.pt")
    assert best["best_metrics"]["epoch"] == 2 and best["best_metrics"]["mAP50-95"] == best["best_fitness"]


def test_best_pt_keeps_the_best_evaluated_epoch_when_the_last_is_worse(shapes_root, tmp_path):
    # eval_interval=2 with 3 epochs: evaluated at 2 and at the last epoch, 3 (worse, so best.pt stays at 2)
    trainer = Trainer(compose_train(tiny(shapes_root, epochs=3, eval_interval=2)), tmp_path / "three")
    seen = _watch_epochs(trainer, scripted_maps={2: 0.5, 3: 0.25})
    trainer.fit()
    assert seen == [{"epoch": 1, "evaluated": False, "best": None},
                    {"epoch": 2, "evaluated": True, "best": (2, 2, 2)},
                    {"epoch": 3, "evaluated": True, "best": (2, 2, 2)}]
    last = load_checkpoint(trainer.weights_dir / "last.pt")
    assert last["epoch"] == 3 and last["metrics"]["epoch"] == 3 and last["best_metrics"]["epoch"] == 2
    assert trainer.best_metrics["epoch"] == 2 and trainer.best_metrics["mAP50-95"] == 0.5


# ------------------------------------------------------------------------------------- 4. "no resume"
@pytest.mark.parametrize("value", [None, False, "", "null", "None", "none", "NULL", "false", "False", " None "])
def test_no_resume_values(value):
    assert is_no_resume(value)


@pytest.mark.parametrize("value", [True, "true", "True", "runs/train/x/weights/last.pt", "None.pt", 0, "0"])
def test_resume_values(value):
    assert not is_no_resume(value)


def test_train_tool_run_dir_uses_the_same_definition(tmp_path, monkeypatch):
    from ghostdet.cli import train as tool  # what tools/train.py and `ghostdet train` run
    from ghostdet.engine import resume

    # the tool chooses its run dir with the library's is_no_resume: every "no resume" spelling is a fresh run
    assert tool.is_no_resume is resume.is_no_resume is is_no_resume
    monkeypatch.chdir(tmp_path)
    for value in ("None", "none", "null", "", "false"):
        run = tool.train_run_dir([f"resume={value}"])
        assert not run.resuming and run.output_subdir == ".hydra" and run.path.parts[:2] == ("runs", "train")


def test_trainer_given_resume_none_string_trains_from_scratch(shapes_root, tmp_path):
    cfg = compose_train(tiny(shapes_root, epochs=1, resume="None"))
    assert cfg.resume == "None"  # what `resume=None` on the command line gives
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.resume_path is None and trainer.start_epoch == 0
    trainer.fit()
    assert load_checkpoint(tmp_path / "run" / "weights" / "last.pt")["epoch"] == 1


# ------------------------------------------------------------------------------------- 5. torch floor
def _declared_floor(package: str) -> tuple[int, int]:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(rf'"{package}>=(\d+)\.(\d+)', text)
    assert match, f"pyproject.toml declares no {package}>= floor"
    return int(match.group(1)), int(match.group(2))


def test_declared_torch_floor_covers_the_apis_used():
    # torch.amp.GradScaler("cuda") and torch.compiler.is_compiling() need 2.3+, torch.onnx.export(dynamo=True) 2.5+,
    # and on torch 2.5.1 the dynamic-shape export (tests/test_export.py) fails: 2.6 is the oldest that passes the suite
    assert _declared_floor("torch") >= (2, 6)
    assert _declared_floor("torchvision") >= (0, 21)  # torchvision 0.21 is built for torch 2.6
    installed = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    assert installed >= _declared_floor("torch"), f"torch {torch.__version__} is below the declared floor"


def test_ci_floor_environment_pins_the_declared_floor():
    pins = dict(re.findall(r"^(torch|torchvision)==(\d+\.\d+)\.\*$", (ROOT / ".ci" / "min-constraints.txt").read_text(),
                           re.M))
    for package in ("torch", "torchvision"):
        assert pins.get(package) == "%d.%d" % _declared_floor(package), f".ci/min-constraints.txt: {package}"
    run = (ROOT / ".ci" / "run").read_text()
    assert "-c .ci/min-constraints.txt" in run and ".venv-min" in run
