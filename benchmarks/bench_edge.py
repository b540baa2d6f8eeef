"""End-to-end latency of ghostdet configs against YOLO26n / YOLO11n on the edge runtimes ghostdet exports to (ncnn,
MNN, LiteRT), measured in one interleaved run on this CPU.

    pip install --no-deps --target /tmp/ul ultralytics        # once; ultralytics is never a ghostdet dependency
    python benchmarks/bench_edge.py                            # defaults: 320, all runtimes but litert-fp16
    python benchmarks/bench_edge.py --sizes 256 320 --runtimes ncnn-fp32 mnn-fp32 mnn-int8 litert-fp32 litert-int8
    python benchmarks/bench_edge.py --work-dir /tmp/edge --sizes 256 320 --export-only   # convert beforehand ...
    python benchmarks/bench_edge.py --work-dir /tmp/edge --sizes 256 320                 # ... then only time
    python benchmarks/bench_edge.py --models ghost_yolo runs/train/exp/weights/best.pt --markdown edge.md

**What is timed.** Each timed call takes the next real raccoon photo (the val split of ../shared/data/raccoon,
letterboxed once beforehand to the input size: the same inputs for every model of a size), runs the exported model
in its runtime (batch 1, ``--threads`` threads, default 2) and the post-processing each tool runs after its runtime,
at conf 0.25: ghostdet's ``models.postprocess`` (class-aware NMS at the ``Detector``'s IoU/max_det) + boxes back to
the photo; ultralytics' ``non_max_suppression`` (YOLO11n: NMS at IoU 0.7; YOLO26n: the confidence filter of its
in-graph top-k) + ``scale_boxes`` (``benchmarks/peers.py``). The photo's decoding and letterbox are not timed (the
same for everyone).

**Interleaving.** Every export is built and loaded first; then each of ``--rounds`` rounds times every (size, runtime,
model) cell in turn (``--warmup`` untimed calls, median of ``--repeats``), so a machine that drifts (turbo, thermal,
neighbours) shifts all cells alike. A cell's figure is the median of its round medians; its ratio is the median over
rounds of (cell / ``--baseline`` in the same round, size and runtime). Within a round the cells of one runtime run
back to back (its warm-up absorbs the idle spinning of the previous runtime's thread pool).

**ghostdet's side: exactly what a user gets.** Each config (random weights from its yaml, seed 0; or a trained
``.pt`` given in ``--models``) is exported with ghostdet's own exporters through the one format table
(``ghostdet.export.formats.run_export``: what ``tools/export.py --format ncnn|mnn|litert [--half]`` runs): ncnn =
ONNX export -> pnnx (``fp16=1`` for fp16), MNN = ONNX export -> MNNConvert (``--fp16``, weights rounded to fp16 first),
LiteRT = litert-torch (fp16: ai-edge-quantizer's float casting). int8 = the format's ``quantize`` (what ``--int8``
runs before its accuracy gate, which is skipped here: latency only): MNN's quantization tool (int8 convs, decode tail
float), ai-edge-quantizer static int8 (decode tail float, int8 input). Each file runs in ghostdet's backend
(``ghostdet.inference.backends.load_backend``, the runtime set-up ``Detector.from_file`` gets: precision = the file's,
``threads`` = ``--threads``). ncnn has no int8 column: ghostdet has no ncnn int8 (ncnn2int8 is not on PyPI).

**The peers' side: the same toolchain.** Each peer is built from ultralytics' yaml (random weights, seed 0) in the
form ultralytics exports (``peers.deploy_peer``: fused, head in static export mode, YOLO26n's NMS-free one-to-one head
with top-k in the graph) and converted with ghostdet's converter steps, flag for flag: ONNX (torch.onnx dynamo
exporter, opset 18, as ghostdet's ``export_onnx``) -> pnnx (``ghostdet.export.ncnn.convert_onnx``, the step
``export_ncnn`` runs) for ncnn; ONNX -> MNNConvert (``ghostdet.export.mnn.convert``, ``round_to_fp16`` +
``--fp16``) and ``ghostdet.export.mnn.quantize`` for MNN; ``torch.export`` -> litert-torch
(``ghostdet.export.litert.convert_program``, fp16 by float casting) and ``ghostdet.export.litert.quantize`` for
LiteRT. The peers run in thin runners here with the same runtime options as ghostdet's backends (ncnn fp16
storage/arithmetic flags, MNN runtime precision high/low/normal, LiteRT XNNPACK with ``num_threads``), returning the
graph's single output the way ultralytics' ``AutoBackend`` does (ghostdet's backends expect two outputs named
boxes/scores). ultralytics' own exporters were not used: its ncnn path pins pnnx 20260526 and pip-installs it (this
venv has another pnnx), its MNN int8 is weight-only (``--weightQuantBits 8``) rather than the full int8 ghostdet's
quantizer makes, and its LiteRT path is the same litert-torch + ai-edge-quantizer that is used here. Following
ultralytics 8.4's exporter, YOLO26n has no NMS-free branch where the runtime lacks top-k or static int8 breaks it
(ncnn, LiteRT int8): those cells run YOLO26n's one-to-many head + NMS (marked ``†``).

**Weights and post-processing cost.** Random weights are fine for the forward pass, but the post-processing time
depends on how many boxes pass conf 0.25, and with random weights almost none do (both tools initialise the class
biases low), so the NMS share here is a floor. The ``dets`` column gives the mean detections kept per photo. Pass a
trained ghostdet checkpoint in ``--models`` (e.g. a quick-train ``best.pt``) for realistic ghostdet post-processing;
the peers stay random (nothing can be downloaded here).

Exports are written to ``--work-dir`` (default: a temporary folder removed at the end); an existing export there is
reused (same random seed), so a second run with the same ``--work-dir`` skips the conversions.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import peers as peer_models  # noqa: E402
from edge_peers import SEED, log, peer_export, peer_runner, quiet  # noqa: E402

# runtime column -> (format row name, precision)
RUNTIMES = {
    "ncnn-fp32": ("ncnn", "fp32"), "ncnn-fp16": ("ncnn", "fp16"),
    "mnn-fp32": ("mnn", "fp32"), "mnn-fp16": ("mnn", "fp16"), "mnn-int8": ("mnn", "int8"),
    "litert-fp32": ("litert", "fp32"), "litert-fp16": ("litert", "fp16"), "litert-int8": ("litert", "int8"),
}
# litert-fp16 is left out of the default run (each LiteRT conversion costs about a minute on 2 cores): on x86 its fp16
# weights are widened to fp32 at load, so it runs as litert-fp32 does; add it with --runtimes
DEFAULT_RUNTIMES = tuple(r for r in RUNTIMES if r != "litert-fp16")
DEFAULT_MODELS = ("ghost_yolo", "repghost_yolo", "gghost_yolo_lite")
DEFAULT_PEERS = ("yolo26n", "yolo11n")
# ultralytics 8.4 Exporter: "formats without top-k support" and "LiteRT INT8 export does not support end2end models"
# drop the NMS-free branch; the user gets the one-to-many head + NMS there
NO_END2END = {("ncnn", "fp32"), ("ncnn", "fp16"), ("litert", "int8")}
# ------------------------------------------------------------------------------------------------------ cells
@dataclass
class Cell:
    size: int
    runtime: str  # a RUNTIMES key
    model: str  # row label
    run: Callable | None = None
    post: Callable | None = None
    note: str = ""  # "†" etc.
    error: str = ""
    dets: float | None = None
    photos: list = field(default_factory=list)
    rounds: list = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return self.size, self.runtime, self.model


# ------------------------------------------------------------------------------------------------ ghostdet side
def ghostdet_model(spec: str, num_classes: int) -> tuple[torch.nn.Module, list[str]]:
    """A GhostYOLO (not yet in deploy form: the exporters prepare their own copy) and its class names: config
    ``spec`` from configs/model (``'CONFIG key=value ...'`` for Hydra overrides; random weights, seed 0), or a
    trained checkpoint (a ``.pt`` path)."""
    if spec.endswith((".pt", ".pth")):
        from ghostdet.utils.checkpoint import build_model_from_checkpoint

        model, meta = build_model_from_checkpoint(spec)
        return model.eval(), list(meta["names"])
    from hydra import compose, initialize_config_dir

    from ghostdet.models import build_model

    config, *overrides = spec.split()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={config}", *overrides])
    torch.manual_seed(SEED)
    return build_model(cfg.model, num_classes=num_classes).eval(), [f"class{i}" for i in range(num_classes)]


def ghostdet_export(model, names, fmt: str, precision: str, size: int, folder: Path, stem: str,
                    calib: Callable[[], list]) -> Path:
    """The export ``tools/export.py --format fmt [--half]`` writes (int8: the format's ``quantize`` on the fp32
    export, as ``--int8`` does before its accuracy gate); reused when already in ``folder``."""
    from ghostdet.export.formats import get_format, module_of, run_export

    row = get_format(fmt)
    out = folder / f"{stem}_{precision}{row.suffix}"
    if out.exists():
        return out
    if precision == "int8":
        fp32 = ghostdet_export(model, names, fmt, "fp32", size, folder, stem, calib)
        with quiet():
            module_of(row).quantize(fp32, out, calib())
        return out
    with quiet(), shared_onnx_export(folder):
        run_export(row, model, out, (size, size), half=precision == "fp16", batch=1, names=names, device="cpu")
    return out


def ghostdet_runner(path: Path, fmt: str, threads: int) -> Callable:
    """ghostdet's backend on the file, set up as ``Detector.from_file`` sets it up (the file's own precision)."""
    from ghostdet.inference.backends import load_backend

    return load_backend(path, fmt, threads=threads)


_ONNX_CACHE: dict = {}


@contextlib.contextmanager
def shared_onnx_export(folder: Path):
    """ghostdet's ncnn and MNN exporters each start with the same fixed-size ONNX export
    (``ghostdet.export.ncnn.onnx_for_conversion``); while this is active a model's first such export (per size) is
    kept in ``folder`` and the later calls get a copy of it: the same bytes the exporter would write again, in a
    fraction of the time. Nothing else of the exporters changes."""
    import shutil

    import ghostdet.export.mnn as mnn_export
    import ghostdet.export.ncnn as ncnn_export

    original = ncnn_export.onnx_for_conversion

    def cached(model, work, imgsz, names, category_ids, device, opset):
        key = (id(model), tuple(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz, tuple(names or ()), opset)
        if key not in _ONNX_CACHE or not _ONNX_CACHE[key][0].exists():
            path, meta, hw = original(model, Path(folder) / f".onnx{len(_ONNX_CACHE)}", imgsz, names, category_ids,
                                      device, opset)
            _ONNX_CACHE[key] = (path, meta, hw)
        path, meta, hw = _ONNX_CACHE[key]
        Path(work).mkdir(parents=True, exist_ok=True)
        dest = Path(work) / path.name
        shutil.copyfile(path, dest)
        return dest, dict(meta), hw

    ncnn_export.onnx_for_conversion = mnn_export.onnx_for_conversion = cached
    try:
        yield
    finally:
        ncnn_export.onnx_for_conversion = mnn_export.onnx_for_conversion = original


# ------------------------------------------------------------------------------------------------------ set-up
def raccoon_files(split: str) -> list[str]:
    root = peer_models.SHARED / "raccoon"
    ids = root / "ImageSets" / "Main" / f"{split}.txt"
    if not ids.is_file():
        raise SystemExit(f"error: {ids} not found (set GHOSTDET_SHARED_DATA to the test data folder)")
    return [str(root / "JPEGImages" / f"{i}.jpg") for i in ids.read_text().split() if i.strip()]


def cpu_line() -> str:
    from ghostdet.utils.device import cpu_name

    wanted = ("avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16")
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break
    name = cpu_name().split(" (")[0]
    return f"{name}; flags: {' '.join(f for f in wanted if f in flags) or 'none of avx/amx'}"


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("ncnn", "pnnx", "MNN", "ai-edge-litert", "litert-torch", "ai-edge-quantizer", "torch"):
        with contextlib.suppress(PackageNotFoundError):
            out.append(f"{dist} {version(dist)}")
    return ", ".join(out)


def build_cells(args, configs: list[str], peer_names: list[str], work: Path, ul_site: str | None) -> list[Cell]:
    """Export and load every (size, runtime, model); a failure becomes the cell's error (the run goes on)."""
    labels = {n: peer_models.PEERS[n].label for n in peer_names}
    post_g = peer_models.ghostdet_postprocess()
    posts_p = {n: peer_models.peer_postprocess(n) for n in ({*peer_names, "yolo26n-nms"} if peer_names else ())}
    cells: list[Cell] = []
    models = {}
    for spec in configs:
        models[spec] = ghostdet_model(spec, args.num_classes)
    calib_files = raccoon_files("train")
    if len(calib_files) > args.calib_images:
        calib_files = [calib_files[i] for i in np.linspace(0, len(calib_files) - 1, args.calib_images).round().astype(int)]
    photo_files = raccoon_files("val")[: args.photos]
    for size in args.sizes:
        folder = work / str(size)
        folder.mkdir(parents=True, exist_ok=True)
        photos = peer_models.load_photos(photo_files, size)
        calib_cache: list = []

        def calib(size=size, cache=calib_cache):
            if not cache:
                from ghostdet.export.calibration import images_to_batches

                cache.extend(images_to_batches(calib_files, (size, size)))
            return cache

        def ready(cell: Cell, build: Callable) -> None:
            """Export and load one cell (``build`` -> (runner, post-processing)); a failure is kept in the cell."""
            started = time.perf_counter()
            try:
                cell.run, cell.post = build()
            except Exception as e:  # noqa: BLE001
                cell.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e).strip() else ''}"
                log(traceback.format_exc(limit=3))
            log(f"{cell.size} {cell.runtime} {cell.model}{cell.note}: "
                f"{'ready' if not cell.error else 'FAILED ' + cell.error} ({time.perf_counter() - started:.0f} s)")
            cells.append(cell)

        for runtime in args.runtimes:
            fmt, precision = RUNTIMES[runtime]
            for name in peer_names:
                cell = Cell(size, runtime, labels[name])
                actual = name
                if peer_models.PEERS[name].nms_free and (fmt, precision) in NO_END2END:
                    actual, cell.note = "yolo26n-nms" if name == "yolo26n" else name, "†"
                ready(cell, lambda: (peer_runner(peer_export(actual, fmt, precision, size, folder, args.num_classes,
                                                             calib, ul_site), fmt, precision, args.threads),
                                     posts_p[actual]))
            for spec in configs:
                model, names = models[spec]
                label = Path(spec).stem if spec.endswith((".pt", ".pth")) else spec
                stem = f"{label.replace(' ', '_').replace('=', '-')}_{size}"
                ready(Cell(size, runtime, label),
                      lambda: (ghostdet_runner(ghostdet_export(model, names, fmt, precision, size, folder, stem, calib),
                                               fmt, args.threads), post_g))
        for cell in cells:
            if cell.size == size and cell.run is not None:
                cell.photos = photos
                try:
                    with torch.inference_mode():
                        cell.dets = peer_models.detections_per_photo(cell.run, cell.post, photos)
                except Exception as e:  # noqa: BLE001
                    cell.error, cell.run = f"{type(e).__name__}: {str(e).strip()[:300]}", None
                    log(f"{size} {cell.runtime} {cell.model}: first run FAILED {cell.error}")
    return cells


def time_cells(cells: list[Cell], rounds: int, warmup: int, repeats: int) -> None:
    from ghostdet.utils.timing import measure_latency

    live = [c for c in cells if c.run is not None]
    fns = {c.key: peer_models.end_to_end(c.run, c.post, c.photos) for c in live}
    with torch.inference_mode():
        for r in range(rounds):
            started = time.perf_counter()
            for c in live:
                c.rounds.append(measure_latency(fns[c.key], warmup, repeats)["median"])
            log(f"round {r + 1}/{rounds}: {time.perf_counter() - started:.0f} s")


def table(cells: list[Cell], runtimes: Sequence[str], baseline: str | None) -> list[str]:
    by_key = {c.key: c for c in cells}
    rows = list(dict.fromkeys((c.size, c.model) for c in cells))
    head = "| size | model | " + " | ".join(runtimes) + " | dets/photo |"
    lines = [head, "|---|---|" + "---:|" * (len(runtimes) + 1)]
    for size, model in rows:
        out, dets = [], None
        for rt in runtimes:
            c = by_key.get((size, rt, model))
            if c is None:
                out.append("-")
                continue
            if not c.rounds:
                out.append("failed" if c.error else "-")
                continue
            ms = statistics.median(c.rounds)
            base = by_key.get((size, rt, baseline)) if baseline else None
            ratio = ""
            if base is not None and base.rounds:
                ratio = f" ({statistics.median(t / b for t, b in zip(c.rounds, base.rounds)):.2f}x)"
            out.append(f"{ms:.2f}{c.note}{ratio}")
            if dets is None and c.dets is not None:
                dets = c.dets
        lines.append(f"| {size} | {model} | " + " | ".join(out) + f" | {'-' if dets is None else f'{dets:.1f}'} |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                   help="ghostdet configs of configs/model ('CONFIG key=value ...' for overrides) or trained .pt "
                        f"checkpoints (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--peers", nargs="*", default=list(DEFAULT_PEERS),
                   help=f"ultralytics peers: {', '.join(peer_models.PEERS)} (default: {' '.join(DEFAULT_PEERS)})")
    p.add_argument("--baseline", help="the peer the ratios divide by (default: the first peer)")
    p.add_argument("--runtimes", nargs="+", default=list(DEFAULT_RUNTIMES), choices=list(RUNTIMES), metavar="RUNTIME",
                   help=f"columns: {' '.join(RUNTIMES)} (default: all but litert-fp16)")
    p.add_argument("--sizes", nargs="+", type=int, default=[320], help="input sizes (default 320)")
    p.add_argument("--threads", type=int, default=2, help="runtime threads (and torch's, for post-processing)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--photos", type=int, default=8, help="raccoon val photos cycled through")
    p.add_argument("--calib-images", type=int, default=16,
                   help="raccoon train photos the int8 exports of both sides calibrate on (default 16: latency only)")
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument("--work-dir", help="keep the exports here and reuse them on the next run (default: a temp folder)")
    p.add_argument("--markdown", help="also write the table (with the header lines) to this file")
    p.add_argument("--export-only", action="store_true",
                   help="write (and load once) every export into --work-dir, time nothing: run it beforehand, then "
                        "the timed run with the same --work-dir only loads them")
    peer_models.add_ultralytics_args(p)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    peer_names = [n for item in args.peers for n in item.split(",") if n]
    for name in peer_names:
        peer_models.peer(name)
    baseline_name = args.baseline or (peer_names[0] if peer_names else None)
    if baseline_name and baseline_name not in peer_names:
        raise SystemExit(f"error: --baseline {baseline_name} is not one of --peers")
    baseline = peer_models.PEERS[baseline_name].label if baseline_name else None
    ul_version, ul_site = None, None
    if peer_names:
        ul_version = peer_models.ensure_ultralytics(args.ul_path, args.ul_python)
        import ultralytics

        ul_site = str(Path(ultralytics.__file__).resolve().parents[1])
    from ghostdet.utils.timing import set_threads

    set_threads(args.threads)
    started = time.perf_counter()
    tmp = None
    if args.export_only and not args.work_dir:
        raise SystemExit("error: --export-only needs --work-dir (where the exports are kept)")
    if args.work_dir:
        work = Path(args.work_dir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_edge_")
        work = Path(tmp.name)
    try:
        cells = build_cells(args, list(args.models), peer_names, work, ul_site)
        if args.export_only:
            failed = [f"- {c.size} {c.runtime} {c.model}: {c.error}" for c in cells if c.error]
            print(f"{sum(c.run is not None for c in cells)} exports ready in {work} "
                  f"({time.perf_counter() - started:.0f} s)" + ("; failed:\n" + "\n".join(failed) if failed else ""))
            return
        log(f"exports ready in {time.perf_counter() - started:.0f} s; timing {sum(c.run is not None for c in cells)} "
            f"cells x {args.rounds} rounds")
        time_cells(cells, args.rounds, args.warmup, args.repeats)
    finally:
        if tmp is not None:
            tmp.cleanup()
    post_g = peer_models.ghostdet_postprocess()
    header = [
        f"CPU: {cpu_line()}; {args.threads} threads; {versions()}, ultralytics {ul_version}",
        f"End to end, batch 1, {args.photos} raccoon val photos letterboxed: runtime + each tool's post-processing "
        f"(conf {peer_models.CONF}). {args.rounds} interleaved rounds x median of {args.repeats} after {args.warmup} "
        f"warm-up; ms = median over rounds; (x) = median per-round ratio to {baseline} in the same runtime and size.",
        "RANDOM weights (latency only; few boxes pass conf 0.25, so the NMS share is a floor; dets/photo = mean "
        "detections kept). int8 calibrated on "
        f"{args.calib_images} raccoon train photos. Peers converted with ghostdet's toolchain (ONNX -> pnnx / "
        "MNNConvert, litert-torch); † = YOLO26n with its one-to-many head + NMS (ultralytics exports no NMS-free "
        "branch to ncnn or LiteRT int8).",
        f"post-processing: {post_g.settings}; "
        + "; ".join(f"{peer_models.PEERS[n].label}: {peer_models.peer_postprocess(n).settings}" for n in peer_names),
    ]
    lines = table(cells, args.runtimes, baseline)
    errors = [f"- {c.size} {c.runtime} {c.model}: {c.error}" for c in cells if c.error]
    text = "\n".join(header) + "\n\n" + "\n".join(lines) + "\n" + ("\nfailed cells:\n" + "\n".join(errors) + "\n"
                                                                   if errors else "")
    print(text, flush=True)
    log(f"total {time.perf_counter() - started:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text(text)


if __name__ == "__main__":
    main()
