"""Every shell command and Python snippet of README.md and docs/*.md runs (issue 26: docs whose every command runs).

The blocks are collected by tests/doc_snippets.py (what counts as a command, and the ``<!-- doc-test: ... -->``
markers a doc puts above a block that cannot run here: a GPU, several GPUs, ultralytics, a phone). Each command or
snippet is one test, named FILE:LINE, run in order in one sandbox working directory (``sandbox`` below), so a
command can use what an earlier one wrote (an export, a run), as a reader following the page would.

A command runs as the doc prints it, with exactly three kinds of change, all in this file:

- PLACEHOLDERS: the reader's own folders (``/data/my_set``, ``/path/to/...``, ``<date>/<time>``) become sandbox
  folders of the same layout, built from the real test data.
- SHORTEN: the long runs (training for tens of epochs at 320-640 px, benchmarks of several models, int8
  calibration on 300 images, coco128 scans) get overrides appended that make them small; the tools take the last
  value of a repeated key or option, so the rest of the command is what is tested.
- resume: a resumed run continues for one more epoch than its checkpoint has done (every sandbox run is finished).

A command the doc prints twice runs once (same text after these changes, same sandbox): the second one reports the
first one's result. Plain `python SCRIPT ...` / `ghostdet ...` commands and the Python snippets run in forked
children of one process that imported torch & co. once (tests/doc_snippets.py, `serve`); the rest runs in bash.

Marked slow: it runs ~80 tools (several minutes on 2 cores), like the other tool tests that train.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from doc_snippets import Snippet, collect_all, install_free, plain_invocation
from helpers import ROOT

pytestmark = pytest.mark.slow

SNIPPETS = collect_all(ROOT)
RUN = "runs/train/2026-11-22/08-00-00"  # the run the docs name (raccoon); the sandbox trains it first
SHAPES_RUN = "runs/train/shapes"        # docs/eval.md's <run>: a ghost_yolo trained on the shapes data
TIMEOUT = 240

# ------------------------------------------------------------------------------------------------ placeholders
# (pattern, replacement): the reader's own paths -> sandbox folders built by `sandbox` (userdata/...)
PLACEHOLDERS = [
    (r"<date>/<time>", RUN.removeprefix("runs/train/")),
    (r"<run>", SHAPES_RUN),
    (r"(?<=[\s=\[\"'])/data/", "userdata/"),        # /data/my_set, /data/coco, /data/VOCdevkit, /data/my_labelimg_set
    (r"(?<=[\s=\[\"'])/path/to/", "userdata/"),     # /path/to/my_yolo_dataset
]

# ------------------------------------------------------------------------------------------------ shortening
# (pattern the command matches, what is appended). Training: one epoch at 64 px in batches of 64 (a CPU training
# step costs ~2 s at any small size, so fewer, larger batches: 2-3 steps for coco128 or raccoon); the benchmarks
# time one run per mode at 64 px; int8 calibrates on 8 images. Nothing else about a command changes.
TRAIN = r"(tools/train\.py|ghostdet train)\b"
SHORTEN = [
    (TRAIN, "epochs=1 imgsz=64 batch=64 workers=0 progress=false tensorboard=false"),
    (r"(tools/eval\.py|ghostdet eval)\b", "imgsz=64 workers=0 progress=false"),
    (r"tools/benchmark\.py", "imgsz=64 batch_sizes=[1] warmup=0 repeats=1 calib_images=8 eval.workers=0"),
    # a benchmark that names no modes: eager, fused and ONNX Runtime (each OpenVINO conversion takes ~20 s here;
    # docs/inference.md's benchmark names all six modes and runs them)
    (r"tools/benchmark\.py(?!.*\bmodes=)", "modes=[eager,fused,onnxruntime]"),
    (r"(tools/check_data\.py)", "imgsz=64 train_samples=2 val_samples=2"),
    (r"(tools/export\.py|ghostdet export).*--int8", "--calib-images 8"),
    (r"benchmarks/bench_detect\.py", "--limit 4 --calib-images 4"),
]


def fill_placeholders(text: str) -> str:
    for pattern, value in PLACEHOLDERS:
        text = re.sub(pattern, value, text)
    return text


def rewrite(command: str, cwd: Path) -> str:
    """The command as the test runs it: placeholders filled, long runs shortened (module docstring)."""
    command = fill_placeholders(install_free(command))
    code, hash_, comment = command.partition(" #")  # appended arguments go before a trailing comment
    resume = re.search(r"\bresume=(\S+)", code)
    if resume:
        code += f" epochs={resumed_epochs(resume.group(1), cwd)}"
    else:
        for pattern, extra in SHORTEN:
            if re.search(pattern, code):
                code = f"{code.rstrip()} {extra}"
    return code + hash_ + comment


def resumed_epochs(value: str, cwd: Path) -> int:
    """resume=: one epoch more than the checkpoint it continues has done."""
    import torch

    from ghostdet.engine.resume import find_resume_checkpoint

    here = os.getcwd()
    os.chdir(cwd)
    try:
        path = find_resume_checkpoint(value)
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"]) + 1
    finally:
        os.chdir(here)


# ------------------------------------------------------------------------------------------------ the sandbox
def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


def _raccoon_boxes(raccoon: Path, image_id: str) -> tuple[int, int, list[list[float]]]:
    """(width, height, [[x1, y1, x2, y2], ...]) of a raccoon photo, from its VOC xml."""
    import xml.etree.ElementTree as ET

    xml = ET.parse(raccoon / "Annotations" / f"{image_id}.xml").getroot()
    size = xml.find("size")
    boxes = [[float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")] for o in xml.iter("object")]
    return int(size.find("width").text), int(size.find("height").text), boxes


def _yolo_set(raccoon: Path, root: Path, splits: dict[str, list[str]]) -> None:
    """The reader's YOLO folder (images/<split>, labels/<split>, data.yaml): raccoon photos, class raccoon."""
    for split, ids in splits.items():
        (root / "labels" / split).mkdir(parents=True)
        for i in ids:
            _link(raccoon / "JPEGImages" / f"{i}.jpg", root / "images" / split / f"{i}.jpg")
            w, h, boxes = _raccoon_boxes(raccoon, i)
            (root / "labels" / split / f"{i}.txt").write_text("".join(
                f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n"
                for x1, y1, x2, y2 in boxes))
    (root / "data.yaml").write_text(f"path: .\ntrain: images/{list(splits)[0]}\nval: images/{list(splits)[-1]}\n"
                                    "names: [raccoon]\n")


def _coco_set(raccoon: Path, root: Path, splits: dict[str, list[str]]) -> None:
    """The reader's COCO folder (<split>/, annotations/instances_<split>.json): raccoon photos, category raccoon."""
    (root / "annotations").mkdir(parents=True)
    for split, ids in splits.items():
        images, annotations = [], []
        for n, i in enumerate(ids, 1):
            _link(raccoon / "JPEGImages" / f"{i}.jpg", root / split / f"{i}.jpg")
            w, h, boxes = _raccoon_boxes(raccoon, i)
            images.append({"id": n, "file_name": f"{i}.jpg", "width": w, "height": h})
            annotations += [{"id": len(annotations) + 1, "image_id": n, "category_id": 1, "iscrowd": 0,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)} for x1, y1, x2, y2 in boxes]
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "raccoon"}]}))


def _voc_years(raccoon: Path, root: Path, lists: dict[str, dict[str, list[str]]]) -> None:
    """VOCdevkit/VOC2007, VOC2012 from raccoon photos, their boxes labelled `dog` (a VOC class)."""
    for year, splits in lists.items():
        devkit = root / f"VOC{year}"
        for ids in splits.values():
            for i in ids:
                if not (devkit / "JPEGImages" / f"{i}.jpg").exists():
                    _link(raccoon / "JPEGImages" / f"{i}.jpg", devkit / "JPEGImages" / f"{i}.jpg")
                    xml = (raccoon / "Annotations" / f"{i}.xml").read_text().replace("<name>raccoon</name>", "<name>dog</name>")
                    (devkit / "Annotations").mkdir(parents=True, exist_ok=True)
                    (devkit / "Annotations" / f"{i}.xml").write_text(xml)
        (devkit / "ImageSets" / "Main").mkdir(parents=True)
        for split, ids in splits.items():
            (devkit / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _video(path: Path, frames: int = 3) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, (128, 96))
    for i in range(frames):
        writer.write(np.full((96, 128, 3), 40 * i, np.uint8))
    writer.release()


class Runner:
    """Runs commands and snippets: plain ones in the warm fork server, the rest in bash; identical commands once."""

    def __init__(self, cwd: Path, logs: Path):
        self.cwd, self.logs, self.done = cwd, logs, {}
        self.server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "doc_snippets.py")], cwd=cwd, env=_env(),
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.server.stdout.readline()).get("ready")

    def close(self):
        self.server.stdin.close()
        self.server.wait(timeout=60)

    def _serve(self, request: dict) -> subprocess.CompletedProcess:
        n = len(list(self.logs.iterdir())) // 2
        out, err = self.logs / f"{n}.out", self.logs / f"{n}.err"
        request = {**request, "cwd": str(self.cwd), "out": str(out), "err": str(err), "timeout": TIMEOUT}
        self.server.stdin.write(json.dumps(request) + "\n")
        self.server.stdin.flush()
        rc = json.loads(self.server.stdout.readline())["rc"]
        return subprocess.CompletedProcess(request, rc, out.read_text(), err.read_text())

    def python(self, code: str) -> subprocess.CompletedProcess:
        return self._serve({"kind": "python", "code": code, "env": {}})

    def shell(self, command: str) -> subprocess.CompletedProcess:
        if command in self.done:
            return self.done[command]
        plain = plain_invocation(command)
        if plain:
            done = self._serve(plain)
        else:
            done = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=_env(), capture_output=True, text=True,
                                  timeout=TIMEOUT)
        self.done[command] = done
        return done


def _env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # python, ghostdet
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory, shared_data, coco128, raccoon):
    """A working directory laid out as the docs assume: the checkout's tools/configs/benchmarks, the shared data
    at ../shared/data, the generated shapes set (16 train / 8 val images: it is generated only where it is missing),
    photos and a video under the names the docs use, the reader's datasets under userdata/, a
    stand-in for the authors' RepGhostNet weights file (random weights, the authors' keys), and
    the run the docs name (runs/train/2026-11-22/08-00-00: 1 epoch at 64 px on 16 raccoon photos, 8 to validate)
    with its best.pt also in the working directory, and before it a shapes run (runs/train/shapes). Yields the
    Runner of that directory."""
    base = tmp_path_factory.mktemp("docs")
    main = base / "main"
    for name in ("tools", "configs", "benchmarks"):
        _link(ROOT / name, main / name)
    _link(shared_data, base / "shared" / "data")
    photos = sorted((coco128 / "images" / "train2017").glob("*.jpg"))
    dog = shared_data / "images" / "dog.jpg"
    shutil.copy(dog, main / "photo.jpg")
    shutil.copy(dog, main / "a.jpg")
    for folder, files in (("photos", photos[:2]), ("my photos", photos[2:4]), ("images", photos[4:6]), ("dir", photos[6:7])):
        for f in files:
            _link(f, main / folder / f.name)
    import cv2

    (main / "shots").mkdir()
    cv2.imwrite(str(main / "shots" / "shot1.png"), cv2.imread(str(photos[7])))
    _video(main / "clip.mp4")

    # the reader's own data: raccoon photos (the one class of the docs' best.pt) in each layout
    user = main / "userdata"
    ids = [f"raccoon-{i}" for i in range(1, 25)]
    _yolo_set(raccoon, user / "my_set", {"train2017": ids[:12], "val2017": ids[12:18]})
    _link(user / "my_set", user / "my_yolo_dataset")
    _coco_set(raccoon, user / "coco", {"train2017": ids[:12], "val2017": ids[12:18]})
    _voc_years(raccoon, user / "VOCdevkit", {"2007": {"trainval": ids[:8], "test": ids[8:14]},
                                               "2012": {"trainval": ids[14:22]}})
    for i in ids[:10]:
        _link(raccoon / "JPEGImages" / f"{i}.jpg", user / "my_labelimg_set" / f"{i}.jpg")
        _link(raccoon / "Annotations" / f"{i}.xml", user / "my_labelimg_set" / f"{i}.xml")

    import torch

    from ghostdet.models import RepGhostNet

    torch.manual_seed(0)  # a stand-in for the authors' file docs/backbones.md loads (same keys and shapes)
    torch.save(RepGhostNet(width=1.0).state_dict(), main / "repghostnet_1_0x_142M_74.22.pth.tar")

    splits = {name: (raccoon / "ImageSets" / "Main" / f"{name}.txt").read_text().split() for name in ("train", "val")}
    (user / "raccoon_train16.txt").write_text("\n".join(splits["train"][:16]) + "\n")
    (user / "raccoon_val8.txt").write_text("\n".join(splits["val"][:8]) + "\n")

    from ghostdet.data import generate_shapes

    generate_shapes(main / "data" / "shapes", num_train=16, num_val=8, image_size=320, seed=0)  # the default data

    runner = Runner(main, base / "logs")
    (base / "logs").mkdir()
    shapes = runner.shell(f"python tools/train.py epochs=1 imgsz=64 batch=16 workers=0 progress=false tensorboard=false "
                          f"hydra.run.dir={SHAPES_RUN}")
    assert shapes.returncode == 0, shapes.stderr[-3000:]
    train = runner.shell(f"python tools/train.py data=voc data.root=../shared/data/raccoon data.train={user}/raccoon_train16.txt "
                         f"data.val={user}/raccoon_val8.txt epochs=1 imgsz=64 batch=8 workers=0 progress=false "
                         f"tensorboard=false hydra.run.dir={RUN}")
    assert train.returncode == 0, train.stderr[-3000:]
    shutil.copy(main / RUN / "weights" / "best.pt", main / "best.pt")
    yield runner
    runner.close()


# ------------------------------------------------------------------------------------------------ the tests
_BY_NAME = {s.name: s for s in SNIPPETS if s.name}


def _python_source(snippet: Snippet) -> str:
    parts = [_BY_NAME[n].code for n in snippet.needs] + [snippet.code]
    return fill_placeholders("\n".join(parts))


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_doc_snippet_runs(snippet: Snippet, sandbox: Path):
    if snippet.skip:
        pytest.skip(f"{snippet.id}: {snippet.skip}")
    if snippet.lang == "python":
        first = snippet.code.splitlines()[0]
        target = re.fullmatch(r"#\s*(\S+\.py)", first.strip())
        if target:  # a module the page asks you to write (e.g. my_pkg/backbones.py): written, then run
            (sandbox.cwd / target.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (sandbox.cwd / target.group(1)).write_text(snippet.code)
        what = _python_source(snippet)
        done = sandbox.python(what)
    else:
        what = rewrite(snippet.code, sandbox.cwd)
        done = sandbox.shell(what)
    assert done.returncode == 0, (f"{snippet.id} failed (exit {done.returncode}):\n{what}\n--- stdout:\n"
                                  f"{done.stdout[-2000:]}\n--- stderr:\n{done.stderr[-4000:]}")


def test_every_block_is_collected():
    """The collector finds the blocks (a renamed tag or a broken fence would silently drop commands)."""
    files = {s.file for s in SNIPPETS}
    assert {"README.md", "docs/training.md", "docs/inference.md", "docs/eval.md", "docs/data.md"} <= files
    assert sum(s.lang == "python" for s in SNIPPETS) >= 10 and sum(s.lang == "shell" for s in SNIPPETS) >= 60
    assert all(_BY_NAME.get(n) for s in SNIPPETS for n in s.needs), "a doc-test: needs names no block"
