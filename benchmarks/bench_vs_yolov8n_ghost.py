"""CPU latency of the ghostdet model configs against ultralytics' YOLOv8n-ghost, measured in the same run.

The baseline is built from ultralytics' own ``yolov8n-ghost.yaml`` (random weights; latency does not depend on
them), so ultralytics must be importable — it is not a ghostdet dependency:

    pip install --no-deps --target /tmp/ul ultralytics && PYTHONPATH=/tmp/ul python benchmarks/bench_vs_yolov8n_ghost.py

Every model is timed in its deploy form (ghostdet: re-parameterized + BN folded; ultralytics: ``fuse()``), batch 1,
forward + box decoding (no NMS), PyTorch eager (NCHW and channels_last) and ONNX Runtime, median of ``--repeats`` after ``--warmup``.
Prints a Markdown table with the ratio of each model's latency to YOLOv8n-ghost's.
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ghostdet.utils.benchmark import measure_latency, set_threads  # noqa: E402
from ghostdet.utils.flops import count_params_macs  # noqa: E402


def ghostdet_model(name: str) -> torch.nn.Module:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from ghostdet.export.onnx import prepare_for_export

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={name}"])
    return prepare_for_export(instantiate(cfg.model, num_classes=80).eval())


def yolov8n_ghost() -> torch.nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n-ghost.yaml", nc=80, verbose=False).eval().fuse(verbose=False)
    for m in model.modules():  # deployed form: decoded boxes + scores only, as ultralytics' own export does
        if hasattr(m, "export"):
            m.export = True
    return model


def ort_latency(model: torch.nn.Module, x: torch.Tensor, threads: int, warmup: int, repeats: int) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        torch.onnx.export(model, (x,), str(path), opset_version=18, dynamo=False, input_names=["images"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x.numpy()}
        return measure_latency(lambda: sess.run(None, feed), warmup, repeats)["median"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="ghost_yolo,repghost_yolo,ghostv2_yolo,gghost_yolo")
    p.add_argument("--sizes", default="640,320")
    p.add_argument("--threads", type=int, default=0, help="0 = every CPU this process may use")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--no-onnx", action="store_true")
    args = p.parse_args()
    threads = set_threads(args.threads or None)

    models = {}
    try:
        models["YOLOv8n-ghost (ultralytics)"] = yolov8n_ghost()
    except ImportError:
        print("ultralytics is not importable: no baseline (see the docstring)", file=sys.stderr)
    for name in args.models.split(","):
        models[name] = ghostdet_model(name)

    print(f"threads {threads}, torch {torch.__version__}, batch 1, median of {args.repeats} after {args.warmup} warm-up; "
          "eager = NCHW, NHWC = channels_last model and input")
    print("| model | size | params (M) | GFLOPs | PyTorch NCHW (ms) | PyTorch NHWC (ms) | ONNX Runtime (ms) "
          "| NCHW / baseline | NHWC / baseline | ORT / baseline |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(1, 3, size, size)
        rows = {}
        # every model's PyTorch timings first, then every ONNX Runtime session: no runtime's threads linger
        # while another is timed
        for name, model in models.items():
            params, macs = count_params_macs(model, (1, 3, size, size))
            model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                nchw = measure_latency(lambda: model(x), args.warmup, args.repeats)["median"]
                nhwc = measure_latency(lambda: model_cl(x_cl), args.warmup, args.repeats)["median"]
            rows[name] = [params, macs, nchw, nhwc, None]
        if not args.no_onnx:
            for name, model in models.items():
                rows[name][4] = ort_latency(model, x, threads, args.warmup, args.repeats)
        base = next((r for n, r in rows.items() if n.startswith("YOLOv8n-ghost")), None)

        def cell(v, b):
            return f"{v / b:.2f}" if v and b else "-"

        for name, (params, macs, nchw, nhwc, onnx_ms) in rows.items():
            ort_cell = f"{onnx_ms:.1f}" if onnx_ms else "-"
            ratios = [cell(v, base[i] if base else None) for i, v in ((2, nchw), (3, nhwc), (4, onnx_ms))]
            print(f"| {name} | {size} | {params / 1e6:.2f} | {2 * macs / 1e9:.2f} | {nchw:.1f} | {nhwc:.1f} | {ort_cell} "
                  f"| {' | '.join(ratios)} |", flush=True)


if __name__ == "__main__":
    main()
