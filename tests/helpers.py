"""Helpers shared by several test modules (test modules do not import each other's)."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


# ------------------------------------------------------ training (test_train, test_resume, test_reliability)
def tiny_overrides(data_root: Path, **extra) -> list[str]:
    """A few-second run: 8 generated shapes images at 64 px, batch 4, loading in-process, deterministic."""
    values = {
        "data": "shapes", "data.root": data_root, "data.num_train": 8, "data.num_val": 4, "data.image_size": 128,
        "imgsz": 64, "batch": 4, "workers": 0, "epochs": 2, "device": "cpu", "deterministic": True, "progress": False,
        "close_mosaic": 1, "schedule.warmup_epochs": 0.5, "schedule.min_warmup_iters": 0, "tensorboard": False,
        "model.backbone.width": 0.5,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def assert_same_tensors(a, b, where="") -> None:
    """Every tensor in two nested checkpoint structures is bit-identical."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


# ------------------------------------------------------------------ faulty data (test_data_faults, test_data_tools)
# label lines of faults.jpg (100x80 image, 2 classes) and what happens to each
FAULTY_LINES = [
    ("0 0.5 0.5 0.2 0.2", None),  # line 1: good
    ("7 0.5 0.5 0.2 0.2", "class out of range"),
    ("0 nan 0.5 0.2 0.2", "non-finite"),
    ("0 0.5 0.5 inf 0.2", "non-finite"),
    ("a b c d e", "malformed"),
    ("0 0.5 0.5 0.2", "malformed"),
    ("0 1.5 1.5 0.2 0.2", "outside image"),
    ("1 0.95 0.5 0.3 0.2", None),  # line 8: partly outside, clipped and kept
    ("0 0.5 0.5 0.0 0.2", "zero area"),
    ("0 0.5 0.5 0.2 0.2", "duplicate"),
    ("1.5 0.5 0.5 0.2 0.2", "malformed"),
    ("", None),  # blank lines are ignored
    ("-1 0.3 0.3 0.1 0.1", "class out of range"),
]


def jpeg_bytes(h=80, w=100, seed=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def build_broken_yolo_folder(root: Path) -> dict:
    images, labels = root / "images" / "train", root / "labels" / "train"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    good_line = "0 0.5 0.5 0.3 0.3\n"
    (images / "good.jpg").write_bytes(jpeg_bytes())
    (labels / "good.txt").write_text(good_line)
    # unreadable images (with labels, which must not count)
    (images / "random.jpg").write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (images / "text.jpg").write_text("this is not an image\n")
    (images / "empty.jpg").write_bytes(b"")
    full = jpeg_bytes(seed=2)
    (images / "truncated.jpg").write_bytes(full[: len(full) * 6 // 10])
    for stem in ("random", "text", "empty", "truncated"):
        (labels / f"{stem}.txt").write_text(good_line)
    # unusual but valid image modes
    Image.fromarray(np.full((80, 100), 128, np.uint8), "L").save(images / "gray.png")
    Image.fromarray(np.full((80, 100, 4), 90, np.uint8), "RGBA").save(images / "rgba.png")
    Image.fromarray(np.full((80, 100, 3), 50, np.uint8)).convert("P").save(images / "palette.png")
    Image.fromarray(np.full((80, 100), 40000, np.uint16)).save(images / "deep16.png")
    for stem in ("gray", "rgba", "palette", "deep16"):
        (labels / f"{stem}.txt").write_text(good_line)
    # label faults, backgrounds
    (images / "faults.jpg").write_bytes(jpeg_bytes(seed=3))
    (labels / "faults.txt").write_text("\n".join(line for line, _ in FAULTY_LINES) + "\n")
    (images / "nolabel.jpg").write_bytes(jpeg_bytes(seed=4))
    (images / "emptylabel.jpg").write_bytes(jpeg_bytes(seed=5))
    (labels / "emptylabel.txt").write_text("")
    (images / "notes.txt").write_text("ignored: not an image suffix")
    (labels / "orphan.txt").write_text(good_line)  # e.g. its image was renamed
    (root / "data.yaml").write_text("names:\n  0: cat\n  1: dog\n")
    return {"format": "yolo", "root": str(root), "train": "images/train", "val": "images/train"}


# ------------------------------------------------------------------ plots (test_train_engine, test_eval)
def capture_figures(monkeypatch) -> list:
    """Every matplotlib figure saved from now on (still inspectable after ``plt.close``)."""
    from matplotlib.figure import Figure

    saved, original = [], Figure.savefig

    def savefig(fig, *args, **kwargs):
        saved.append(fig)
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def png_size_and_spread(path: Path) -> tuple[tuple[int, int], float]:
    """A PNG's (width, height) and the standard deviation of its grey levels (0 for a blank image)."""
    with Image.open(path) as img:
        assert img.format == "PNG", path
        return img.size, float(np.asarray(img.convert("L"), dtype=np.float32).std())


# ------------------------------------------------------- running the tools (detect, export, eval, benchmark, ...)
def run_tool(tool: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / tool), *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def run_tools_concurrently(calls: list[tuple], cwd: Path, timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run several ``(tool, *args)`` invocations at once (each is mostly interpreter start-up and imports); ``timeout``
    per process (an int8 export on a busy machine wants more than the default)."""
    procs = [subprocess.Popen([sys.executable, str(ROOT / "tools" / tool), *map(str, args)], cwd=cwd,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for tool, *args in calls]
    done = []
    for call, proc in zip(calls, procs):
        stdout, stderr = proc.communicate(timeout=timeout)
        done.append(subprocess.CompletedProcess(call, proc.returncode, stdout, stderr))
    return done


def run_main_in_process(tool: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """``ghostdet.cli.<tool>.main`` (what ``tools/<tool>.py`` runs) called in this process, in ``cwd``, with ``args`` as
    its command line: no interpreter start-up and torch import. Returns a CompletedProcess (exit code, stdout,
    stderr) for the same assertions as ``run_tool``'s. The working folder, ``sys.argv`` and the root logger (the tool
    adds its console handler) are restored afterwards."""
    import contextlib
    import importlib
    import logging
    import os

    main = importlib.import_module(f"ghostdet.cli.{tool}").main
    argv = [str(ROOT / "tools" / f"{tool}.py"), *map(str, args)]
    saved_cwd, saved_argv = os.getcwd(), sys.argv
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = list(argv)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = main()
        code = result if isinstance(result, int) else 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.chdir(saved_cwd)
        sys.argv = saved_argv
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(argv[1:], code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ------------------------------------------------------------------ the model of the briefly trained checkpoints
# (conftest's coco128 one, the raccoon one below): GhostNet width 0.5, a 32-channel neck, one head conv
HALF_WIDTH_MODEL = {
    "name": "ghost_yolo",
    "backbone": {"name": "ghostnet", "width": 0.5, "features_only": True},
    "neck_channels": 32,
    "head_convs": 1,
}


# ------------------------------------------------------------------ a tiny real checkpoint (eval, benchmark)
def tiny_model_cfg() -> dict:
    """configs/model/ghost_yolo.yaml at GhostNet width 0.25 and a 32-channel neck: the real detector, CPU-test sized."""
    cfg = OmegaConf.load(CONFIG_DIR / "model" / "ghost_yolo.yaml")
    cfg.backbone.width = 0.25
    cfg.neck_channels = 32
    return OmegaConf.to_container(cfg)


def yolo_data_cfg(root: Path):
    """configs/data/yolo.yaml pointed at ``root`` (e.g. the ``yolo_split`` fixture), without a scan cache."""
    cfg = OmegaConf.load(CONFIG_DIR / "data" / "yolo.yaml")
    cfg.root = str(root)
    cfg.cache = False
    return cfg


def make_checkpoint(path: Path, names: list[str], imgsz: int = 64, data_cfg=None) -> Path:
    from ghostdet.models import build_model

    from ghostdet.utils.checkpoint import save_checkpoint

    cfg = tiny_model_cfg()
    torch.manual_seed(0)
    model = build_model(OmegaConf.create(cfg), num_classes=len(names))
    return save_checkpoint({"model": model.state_dict(), "ema": None, "epoch": 1,
                            "config": {"model": cfg, "imgsz": imgsz, "data": data_cfg}, "names": names, "category_ids": None,
                            "metrics": {}, "ghostdet_version": "test"}, path)


def run_tool_in_process(project_root: Path, tool: str, *args: str, monkeypatch, capsys) -> tuple[int, str, str]:
    """The tool's Hydra main called in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    import importlib.util

    monkeypatch.chdir(project_root)
    monkeypatch.syspath_prepend(str(project_root / "tools"))
    monkeypatch.setattr(sys, "argv", [str(project_root / "tools" / tool), *args])
    # named __main__ so Hydra resolves config_path from the file, as when run as a script (whose last line calls main)
    spec = importlib.util.spec_from_file_location("__main__", project_root / "tools" / tool)
    code = 0
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------ a small model trained on raccoon (quantize, edge exports)
# A half-width Ghost-YOLO whose backbone keeps its initial weights and whose neck + head are fitted to the 160 raccoon
# train photos at 160 px (80 AdamW steps on cached backbone features, about a minute on 2 busy cores): val mAP50-95
# about 0.18, mAP50 about 0.56, enough for an int8 loss to show. Built once per session by conftest's
# ``raccoon_checkpoint`` fixture.
RACCOON_IMGSZ = 160
RACCOON_MODEL = HALF_WIDTH_MODEL


def raccoon_data(root: Path) -> dict:
    return {"format": "voc", "root": str(root), "train": "train", "val": "val", "names": ["raccoon"], "cache": False}


def make_raccoon_checkpoint(raccoon: Path, out: Path, steps: int = 80) -> Path:
    """The small raccoon model (above), saved at ``out`` in the trainer's checkpoint layout with its data config (so
    ``--int8`` without ``--data`` finds the training data); an existing ``out`` is returned as it is."""
    from ghostdet.data import build_dataset
    from ghostdet.models import build_model
    from ghostdet.models.loss import DetectionLoss
    from ghostdet.utils.checkpoint import save_checkpoint

    if out.is_file():
        return out
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        data = raccoon_data(raccoon)
        dataset = build_dataset(OmegaConf.create(data), split="train", imgsz=RACCOON_IMGSZ, augment=False, cache=False)
        model = build_model(OmegaConf.create(RACCOON_MODEL), num_classes=1)
        images, targets = [], []
        for i in range(len(dataset)):
            sample = dataset[i]
            images.append(sample["image"].transpose(2, 0, 1))
            targets.append(np.concatenate([np.full((len(sample["boxes"]), 1), i), sample["labels"][:, None],
                                           sample["boxes"]], 1))
        x = torch.from_numpy(np.stack(images)).float() / 255
        t = torch.from_numpy(np.concatenate(targets)).float()
        model.eval()
        with torch.no_grad():
            features = model.backbone((x - model.mean) / model.std)
        loss_fn = DetectionLoss(model)
        params = list(model.neck.parameters()) + list(model.head.parameters())
        optimizer = torch.optim.AdamW(params, lr=1e-2)
        model.neck.train()
        model.head.train()
        generator = torch.Generator().manual_seed(0)
        for _ in range(steps):
            idx = torch.randperm(len(x), generator=generator)[:32]
            keep = torch.isin(t[:, 0].long(), idx)
            remap = torch.full((len(x),), -1, dtype=torch.long)
            remap[idx] = torch.arange(len(idx))
            batch_targets = t[keep].clone()
            batch_targets[:, 0] = remap[batch_targets[:, 0].long()].float()
            loss, _ = loss_fn(model.head(model.neck([f[idx] for f in features])), batch_targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():  # exact BN statistics of the final weights
            for m in list(model.neck.modules()) + list(model.head.modules()):
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.reset_running_stats()
                    m.momentum = None
            model.head(model.neck(features))
        model.eval()
    finally:
        torch.set_num_threads(threads)
    save_checkpoint({"model": model.state_dict(), "ema": None, "names": ["raccoon"], "category_ids": None, "epoch": 0,
                     "config": {"model": RACCOON_MODEL, "imgsz": RACCOON_IMGSZ, "data": data},
                     "model_spec": RACCOON_MODEL, "ghostdet_version": "test"}, out)
    return out
