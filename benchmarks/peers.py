"""The ultralytics peers of ghostdet's benchmarks, in one place: which models, how ultralytics is found, how each peer
is put in the form ultralytics exports, and the post-processing each tool runs after its runtime.

ultralytics is never a ghostdet dependency. The benchmark scripts find it, in this order: already importable; the
folder ``--ul-path`` (default ``/tmp/ul``, made by ``pip install --no-deps --target /tmp/ul ultralytics``); the
``site-packages`` of ``--ul-python`` (a separate interpreter that has it; appended to ``sys.path`` so this
interpreter's own torch/numpy still win). Training and scoring of the peers (``bench_learning.py``) run in a
subprocess: ``--ul-python`` when given, else this interpreter with ``--ul-path`` on ``PYTHONPATH``.

Peers (``PEERS``): ``yolo26n`` (``yolo26n.yaml``: NMS-free one-to-one head, no DFL; run NMS-free as ultralytics runs
it with ``nms=False``: top-k inside the graph, a confidence filter after it), ``yolo11n`` and ``yolov8n-ghost``
(one-to-many heads: decoded boxes + scores from the graph, ultralytics' own NMS after it), and ``yolo26n-nms``
(YOLO26n's one-to-many head + NMS, ultralytics 8.4's default when ``nms`` is not set; the same trained weights as
``yolo26n``: one training serves both).

Deploy form (``deploy_peer``) mirrors ``ultralytics.engine.exporter.Exporter`` for ONNX/OpenVINO: ``end2end`` chosen
before ``fuse()`` (fuse drops the unused head branch), every ``Detect`` head in export mode with a static shape,
``max_det`` clamped to the anchors, ``C2f`` blocks on ``forward_split``.

Post-processing on the host (``peer_postprocess``, ``ghostdet_postprocess``): each tool's own, at its own predict
defaults with ``conf`` 0.25: ultralytics ``nms.non_max_suppression`` (IoU 0.7, max_det 300; for an NMS-free graph
only the confidence filter) + ``ops.scale_boxes`` to the original photo; ghostdet ``models.postprocess`` (what
``Detector`` runs after its runtime: class-aware NMS, IoU 0.45, max_det 300, boxes clipped to the input) +
``unletterbox_boxes``.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = Path(os.environ.get("GHOSTDET_SHARED_DATA", ROOT.parent / "shared" / "data"))
DEFAULT_UL_PATH = os.environ.get("GHOSTDET_UL_PATH", "/tmp/ul")
INSTALL_HINT = ("install it outside ghostdet: pip install --no-deps --target /tmp/ul ultralytics (then --ul-path "
                "/tmp/ul, the default), or pass --ul-python PYTHON of an environment that has it")
CONF = 0.25  # the predict confidence of both tools (end-to-end latency)


@dataclass(frozen=True)
class Peer:
    name: str  # the command-line name
    cfg: str  # ultralytics' model yaml
    label: str  # in tables and plots
    nms_free: bool  # run the one-to-one head (top-k in the graph, no NMS)

    @property
    def train_key(self) -> str:
        """Peers with the same yaml share one training run (the dual head trains both branches)."""
        return Path(self.cfg).stem


PEERS = {p.name: p for p in (
    Peer("yolo26n", "yolo26n.yaml", "YOLO26n", True),
    Peer("yolo11n", "yolo11n.yaml", "YOLO11n", False),
    Peer("yolov8n-ghost", "yolov8n-ghost.yaml", "YOLOv8n-ghost", False),
    Peer("yolo26n-nms", "yolo26n.yaml", "YOLO26n-nms", False),
)}
DEFAULT_PEERS = ("yolo26n", "yolo11n", "yolov8n-ghost")


def add_ultralytics_args(p) -> None:
    """``--ul-path`` / ``--ul-python`` on an argparse parser."""
    p.add_argument("--ul-path", default=DEFAULT_UL_PATH,
                   help="folder with ultralytics installed by 'pip install --no-deps --target DIR ultralytics' "
                        f"(default {DEFAULT_UL_PATH}; env GHOSTDET_UL_PATH)")
    p.add_argument("--ul-python", default=os.environ.get("UL_PYTHON"),
                   help="python of a separate environment with ultralytics (trains/scores the peers; its "
                        "site-packages serve the latency half when --ul-path has no ultralytics)")


def peer(name: str) -> Peer:
    if name not in PEERS:
        raise SystemExit(f"error: unknown peer {name!r}; choose from {', '.join(PEERS)}")
    return PEERS[name]


# ------------------------------------------------------------------------------------------------ finding ultralytics
def _quiet_env() -> None:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no downloads, no update checks
    os.environ.setdefault("YOLO_VERBOSE", "False")


def ensure_ultralytics(ul_path: str | None = DEFAULT_UL_PATH, ul_python: str | None = None) -> str:
    """Make ``import ultralytics`` work in this process (see the module docstring) and return its version; exits
    with one line saying how to install it when it cannot."""
    _quiet_env()
    try:
        import ultralytics

        return ultralytics.__version__
    except ImportError:
        pass
    if ul_path and (Path(ul_path) / "ultralytics").is_dir():
        sys.path.insert(0, str(Path(ul_path).resolve()))
    elif ul_python:
        site = subprocess.run([ul_python, "-c", "import os, ultralytics; "
                               "print(os.path.dirname(os.path.dirname(ultralytics.__file__)))"],
                              capture_output=True, text=True)
        if site.returncode == 0 and site.stdout.strip():
            sys.path.append(site.stdout.strip())
    try:
        import ultralytics
    except ImportError as e:
        raise SystemExit(f"error: ultralytics is not importable ({e}); {INSTALL_HINT}") from None
    return ultralytics.__version__


def ul_interpreter(ul_path: str | None, ul_python: str | None) -> tuple[str, dict]:
    """The python that trains/scores the peers and the environment it needs: ``--ul-python`` as it is, else this
    interpreter with ``--ul-path`` first on PYTHONPATH. Checked once; exits with the install hint when it cannot
    import ultralytics."""
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    python = ul_python or sys.executable
    if not ul_python and ul_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(ul_path).resolve()), env.get("PYTHONPATH")) if p)
    check = subprocess.run([python, "-c", "import ultralytics; print(ultralytics.__version__)"], env=env,
                           capture_output=True, text=True)
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"error: {python} cannot import ultralytics ({last}); {INSTALL_HINT}")
    return python, env


# ---------------------------------------------------------------------------------------------------------- models
def load_peer_weights(path: str | os.PathLike) -> torch.nn.Module:
    """An ultralytics training checkpoint's model (EMA weights), float, eval mode (ultralytics must be importable:
    its checkpoints are pickles of its classes)."""
    ckpt = torch.load(str(path), map_location="cpu", weights_only=False)
    model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
    if model is None:
        raise SystemExit(f"error: {path}: no 'ema' or 'model' in this ultralytics checkpoint")
    return model.float().eval()


def deploy_peer(name: str, imgsz: int, num_classes: int = 80, weights: str | os.PathLike | None = None
                ) -> torch.nn.Module:
    """Peer ``name`` in the form ultralytics exports it at ``imgsz`` (random weights from its yaml, or ``weights``):
    one-to-one head selected for NMS-free peers, fused, head in static export mode. Output: ``(1, 4 + nc, A)``
    xywh boxes + class scores, or ``(1, max_det, 6)`` ``[x1, y1, x2, y2, score, class]`` for an NMS-free peer."""
    from ultralytics.nn.modules import C2f, Detect
    from ultralytics.nn.tasks import DetectionModel

    spec = peer(name)
    model = load_peer_weights(weights) if weights else DetectionModel(spec.cfg, nc=num_classes, verbose=False)
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    if spec.nms_free:  # Exporter: model.end2end = (nms is False); the one-to-many branch is dropped by fuse()
        model.end2end = True
    elif isinstance(model.model[-1], Detect) and getattr(model.model[-1], "one2one_cv2", None) is not None:
        model.end2end = False  # keep the one-to-many branch (ultralytics' default nms=None)
    model = model.fuse(verbose=False)
    anchors = sum((imgsz // int(s)) ** 2 for s in model.stride.tolist())
    for m in model.modules():
        if isinstance(m, Detect):
            m.dynamic, m.export, m.format = False, True, "onnx"
            m.max_det = min(300, anchors)
            m.agnostic_nms, m.xyxy, m.shape = False, False, None
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    if bool(getattr(model, "end2end", False)) != spec.nms_free:
        raise SystemExit(f"error: {name}: ultralytics {__import__('ultralytics').__version__} did not select the "
                         f"{'one-to-one' if spec.nms_free else 'one-to-many'} head")
    return model


def peer_num_classes(model: torch.nn.Module) -> int:
    return int(model.model[-1].nc)


# ------------------------------------------------------------------------------------------ photos, post-processing
@dataclass
class Photo:
    """One real photo letterboxed for a model input: ``batch`` 1x3xHxW float32 0-1 RGB (the input every runtime
    takes), with the geometry to map boxes back to the photo."""
    file: str
    batch: np.ndarray
    ratio: float
    pad: tuple[float, float]
    orig_hw: tuple[int, int]

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(self.batch.shape[-2:])


def photo_files(val_files: Sequence[str] = (), count: int = 8) -> list[str]:
    """``dog.jpg`` from the shared data, then val photos (the data set's, else raccoon's val list): ``count`` in all."""
    files = [str(SHARED / "images" / "dog.jpg")] if (SHARED / "images" / "dog.jpg").is_file() else []
    if not val_files:
        ids = SHARED / "raccoon" / "ImageSets" / "Main" / "val.txt"
        if ids.is_file():
            val_files = [str(SHARED / "raccoon" / "JPEGImages" / f"{i.strip()}.jpg")
                         for i in ids.read_text().split() if i.strip()]
    files += [f for f in val_files if Path(f).is_file()]
    if not files:
        raise SystemExit(f"error: no photos for end-to-end timing under {SHARED} (set GHOSTDET_SHARED_DATA)")
    return files[:count]


def load_photos(files: Sequence[str], imgsz: int) -> list[Photo]:
    """ghostdet's reader + letterbox (pad 114, centred: the same geometry as ultralytics' LetterBox for a static
    square input) for every file at ``imgsz``."""
    from ghostdet.data.image_io import read_image, to_chw_batch
    from ghostdet.data.letterbox import letterbox

    photos = []
    for f in files:
        image = read_image(f)
        padded, ratio, pad = letterbox(image, imgsz)
        photos.append(Photo(str(f), to_chw_batch([padded]), ratio, pad, tuple(image.shape[:2])))
    return photos


def _detector_defaults() -> dict:
    """conf/iou/max_det of ghostdet's ``Detector`` (read from its signature, so the benchmark follows the library)."""
    import inspect

    out = {"conf": CONF, "iou": 0.45, "max_det": 300}
    try:
        from ghostdet.inference import Detector

        params = inspect.signature(Detector.__init__).parameters
        out.update({k: params[k].default for k in ("iou", "max_det") if k in params
                    and params[k].default is not inspect.Parameter.empty})
    except Exception:  # the inference package mid-refactor: keep the documented defaults
        pass
    return out


def ghostdet_postprocess() -> Callable:
    """``post(outputs, photo)`` for a ghostdet graph's ``(boxes, scores)``: ``ghostdet.models.postprocess`` at the
    Detector's defaults with conf 0.25 on one PyTorch thread (boxes clipped to the input first, as Detector does), then back to the
    photo's pixels."""
    from ghostdet.data.letterbox import unletterbox_boxes
    from ghostdet.models.postprocess import postprocess
    from ghostdet.utils.timing import torch_threads

    s = _detector_defaults()

    def post(outputs, photo: Photo):
        boxes, scores = outputs[0], outputs[1]
        with torch_threads(1):  # as the Detector runs it after a runtime other than PyTorch
            kept = postprocess(boxes, scores, CONF, s["iou"], s["max_det"], clip_shape=photo.input_hw)
        return [(unletterbox_boxes(k["boxes"], photo.ratio, photo.pad, photo.orig_hw), k["scores"], k["labels"])
                for k in kept]

    post.settings = f"ghostdet postprocess conf {CONF} iou {s['iou']} max_det {s['max_det']}"
    return post


def peer_postprocess(name: str) -> Callable:
    """``post(outputs, photo)`` for peer ``name``'s graph output: ultralytics' own ``non_max_suppression`` at its
    predict defaults (conf 0.25, IoU 0.7, max_det 300; ``end2end`` = confidence filter only) + ``scale_boxes``."""
    from ultralytics.cfg import DEFAULT_CFG
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    nms_free, iou, max_det = peer(name).nms_free, float(DEFAULT_CFG.iou), int(DEFAULT_CFG.max_det)

    def post(outputs, photo: Photo):
        pred = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
        pred = pred if isinstance(pred, torch.Tensor) else torch.from_numpy(np.asarray(pred))
        dets = non_max_suppression(pred, CONF, iou, max_det=max_det, end2end=nms_free)
        for d in dets:
            d[:, :4] = scale_boxes(photo.input_hw, d[:, :4], photo.orig_hw)
        return dets

    post.settings = (f"ultralytics {'top-k (in graph) + conf filter' if nms_free else 'NMS'} conf {CONF}"
                     + ("" if nms_free else f" iou {iou}") + f" max_det {max_det}")
    return post


def end_to_end(run: Callable, post: Callable | None, photos: Sequence[Photo]) -> Callable[[], object]:
    """A timing callable: each call takes the next photo (cycling), runs the runtime on it and post-processes the
    result (``post`` None: forward + decode only)."""
    cycle = itertools.cycle(photos)
    if post is None:
        return lambda: run(next(cycle).batch)

    def call():
        photo = next(cycle)
        return post(run(photo.batch), photo)

    return call


def detections_per_photo(run: Callable, post: Callable, photos: Sequence[Photo]) -> float:
    """Mean detections kept per photo: what the post-processing had to handle (a sanity figure for the table)."""
    counts = []
    for photo in photos:
        first = post(run(photo.batch), photo)[0]
        counts.append(len(first[1]) if isinstance(first, tuple) else len(first))
    return float(np.mean(counts))
