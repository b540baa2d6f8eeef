"""What NMS inside the ONNX graph (``tools/export.py --nms``) costs against the NMS-free graph + Python postprocess.

    python benchmarks/bench_nms.py                                   # ghost_yolo (configs/model), random init, 640
    python benchmarks/bench_nms.py --imgsz 320 --threads 2 --confs 0.25,0.001
    python benchmarks/bench_nms.py --weights runs/train/.../weights/best.pt --source photo.jpg
    python benchmarks/bench_nms.py --test-model --confs 0.25,0.01,0.001   # the test suite's briefly trained model

Both graphs are exported from the same model (fixed size, batch 1) and run in ONNX Runtime (``ort_session``, the
session every benchmark uses) on one letterboxed image. Timed, interleaved (``compare_latency``), per ``--confs``:
  nms-free: session.run -> ``ghostdet.models.postprocess.postprocess`` (torchvision NMS) in Python;
  in-graph: session.run of the --nms graph (NonMaxSuppression + TopK inside);
  model only: session.run of the NMS-free graph (the floor both start from);
  and the NMS tail alone, on the decoded outputs: ``postprocess`` vs an ONNX graph of just ``end2end_nms``
  (``ghostdet.export.nms``), one ORT thread and one PyTorch thread (the columns least disturbed by a busy machine).
A random-init model scores every anchor near its prior (~0.01): at conf 0.25 nothing passes (the in-graph ops' fixed
cost of the in-graph ops). ``--test-model`` uses the test suite's model instead (``tests/conftest.py``:
GhostNet 0.5x, head fitted to 4 coco128 photos; built in a temporary folder in ~1 min), which scores real candidates,
on a coco128 photo (000000000009.jpg, bowls and broccoli) by default. Timings depend on the machine and its load (printed).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ghostdet.eval.benchmark import ort_session  # noqa: E402
from ghostdet.utils.timing import compare_latency, set_threads  # noqa: E402
from ghostdet.utils.device import cpu_name  # noqa: E402


def build(weights: str | None, imgsz: int):
    if weights:
        from ghostdet.utils.checkpoint import build_model_from_checkpoint

        return build_model_from_checkpoint(weights)[0]
    import torch
    from omegaconf import OmegaConf

    from ghostdet.models import build_model

    torch.manual_seed(0)
    return build_model(OmegaConf.load(ROOT / "configs" / "model" / "ghost_yolo.yaml"), num_classes=80).eval()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", help="a .pt checkpoint (default: configs/model/ghost_yolo.yaml, random init)")
    p.add_argument("--test-model", action="store_true", help="the test suite's briefly trained model (tests/conftest.py)")
    p.add_argument("--source", help="image to run on (default: the export check's synthetic scene)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    p.add_argument("--torch-threads", type=int, help="PyTorch threads for postprocess (default: --threads)")
    p.add_argument("--confs", default="0.25,0.001", help="score thresholds, comma-separated")
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads
    torch_threads = set_threads(args.torch_threads or args.threads)

    from ghostdet.export import check_image, export_onnx
    from ghostdet.models.postprocess import postprocess

    tmp_model = tempfile.TemporaryDirectory()
    if args.test_model:
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import make_trained_checkpoint, shared_data_dir

        args.weights = str(make_trained_checkpoint(shared_data_dir() / "coco128", Path(tmp_model.name)))
        args.source = args.source or str(shared_data_dir() / "coco128" / "images" / "train2017" / "000000000009.jpg")
    model = build(args.weights, args.imgsz)
    batch, what = check_image(args.source, (args.imgsz, args.imgsz))
    hw = (args.imgsz, args.imgsz)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; ONNX Runtime "
          f"{threads} threads, PyTorch (postprocess) {torch_threads}, batch 1, {args.imgsz}x{args.imgsz}, {'test model' if args.test_model else args.weights or 'random init'}, "
          f"{Path(what).name if args.source else what}")
    print("| conf | candidates | kept | model only (ms) | NMS-free + postprocess (ms) | NMS in the graph (ms) | "
          "in-graph - NMS-free (ms) | postprocess alone (ms) | in-graph NMS tail alone (ms) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        plain = ort_session(export_onnx(model, Path(tmp) / "plain.onnx", args.imgsz), threads)
        feed = {"images": batch}
        for conf in (float(c) for c in args.confs.split(",")):
            graph = ort_session(export_onnx(model, Path(tmp) / f"nms_{conf}.onnx", args.imgsz, nms=True, conf=conf,
                                            iou=args.iou, max_det=args.max_det), threads)

            def nms_free():
                boxes, scores = plain.run(None, feed)
                return postprocess(boxes, scores, conf, args.iou, args.max_det, clip_shape=hw)

            boxes, scores = plain.run(None, feed)
            candidates = int((scores.max(-1) > conf).sum())
            kept = len(nms_free()[0]["scores"])
            assert int(graph.run(None, feed)[0][0, 0]) == kept, "the two graphs disagree"
            res = compare_latency({"model": lambda: plain.run(None, feed), "nms-free": nms_free,
                                   "in-graph": lambda: graph.run(None, feed)}, rounds=args.rounds, repeats=args.repeats)
            m, free, ing = (res[k]["median"] for k in ("model", "nms-free", "in-graph"))
            tail = ort_session(nms_tail(Path(tmp) / f"tail_{conf}.onnx", boxes, scores, conf, args.iou, args.max_det), 1)
            tail_feed = {"boxes": np.minimum(np.maximum(boxes, 0), args.imgsz), "scores": scores}  # clipped, as in-graph
            assert int(tail.run(None, tail_feed)[0][0, 0]) == kept
            threads_before = set_threads(1)
            alone = compare_latency({"postprocess": lambda: postprocess(boxes, scores, conf, args.iou, args.max_det, clip_shape=hw),
                                     "tail": lambda: tail.run(None, tail_feed)}, rounds=args.rounds, repeats=args.repeats)
            set_threads(threads_before)
            print(f"| {conf:g} | {candidates} | {kept} | {m:.1f} | {free:.1f} | {ing:.1f} | {ing - free:+.1f} | "
                  f"{alone['postprocess']['median']:.2f} | {alone['tail']['median']:.2f} |", flush=True)


def nms_tail(path: Path, boxes: np.ndarray, scores: np.ndarray, conf: float, iou: float, max_det: int) -> Path:
    """An ONNX graph of the NMS tail alone (inputs ``boxes``, ``scores``: decoded, clipped), as ``--nms`` builds it."""
    import torch

    from ghostdet.export.nms import NMS_OUTPUT_NAMES, ONNX_TRANSLATION, end2end_nms

    class Tail(torch.nn.Module):
        def forward(self, b, s):
            return end2end_nms(b, s, conf, iou, max_det)

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress and deprecation chatter
        program = torch.onnx.export(Tail(), (torch.from_numpy(boxes), torch.from_numpy(scores)), input_names=["boxes", "scores"],
                                    output_names=list(NMS_OUTPUT_NAMES), opset_version=18, dynamo=True, verbose=False,
                                    custom_translation_table=ONNX_TRANSLATION)
    program.save(str(path))
    return path



if __name__ == "__main__":
    main()
