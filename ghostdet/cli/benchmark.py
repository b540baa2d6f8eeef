"""Benchmark detectors: params, GFLOPs, CPU latency (eager / fused / ONNX Runtime fp32 and int8 / OpenVINO fp32, bf16
and int8) and, with data=, the mAP of every mode next to its latency (see configs/benchmark.yaml):
`ghostdet benchmark ...` or `python tools/benchmark.py ...`, same arguments.

Examples:
    python tools/benchmark.py models=[ghost_yolo,repghost_yolo,ghostv2_yolo] imgsz=320
    python tools/benchmark.py models=[runs/train/<date>/<time>/weights/best.pt] data=coco128 imgsz=320
    python tools/benchmark.py imgsz=640 batch_sizes=[1,8] threads=2 repeats=20
    python tools/benchmark.py imgsz=320 batch_sizes=[1] threads=2 modes=[fused,onnxruntime,openvino,openvino-bf16]
    python tools/benchmark.py models=[best.pt] data=voc data.root=data/raccoon imgsz=320 batch_sizes=[1] threads=2 \
        modes=[onnxruntime,onnxruntime-int8,openvino,openvino-int8]      # int8 calibrated on the train split

The int8 modes calibrate on calib_images train images of data= (preprocessed as at inference); without data= on
synthetic scenes (latency only). The output says which.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ghostdet.cli.common import (rewrite_data_yaml_argv, check_checkpoints_before_hydra, config_dir, drop_dangling_signal_stack, fresh_run_dir,
                                 refuse_unknown_keys, run_tool, start_tool)
from ghostdet.utils.errors import ConfigError
from ghostdet.utils.imgsz import check_imgsz

LOGGER = logging.getLogger("ghostdet.cli.benchmark")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def load_model(spec: str, num_classes: int):
    """``(display name, model, is_checkpoint)`` from a checkpoint path, a model yaml path or a configs/model/ name."""
    from ghostdet.models import build_model
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    path = Path(spec)
    if path.suffix in CHECKPOINT_SUFFIXES:
        model, _meta = build_model_from_checkpoint(path)
        return str(path), model, True
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / "model" / f"{spec}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
        raise ConfigError(f"{spec}: not a checkpoint (.pt), a model yaml or a model config name; known names: {', '.join(known) or 'none'}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:  # not YAML
        raise ConfigError(f"{path}: not a readable model yaml ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    cfg.pop("defaults", None)
    model = build_model(cfg, str(path), num_classes=num_classes)  # a spec: registered names only
    return path.stem, model, False


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="benchmark")
@run_tool
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ghostdet.eval import evaluate_model
    from ghostdet.eval.benchmark import benchmark_model, benchmark_rows, environment, mode_rows
    from ghostdet.export.quantize import ValSplit, calibration_images, evaluate_runtime
    from ghostdet.utils.atomic import write_text
    from ghostdet.utils.tables import markdown_table, text_table
    from ghostdet.utils.timing import set_threads

    start_tool(cfg.get("plugins"))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    threads = set_threads(cfg.threads)
    imgsz = int(check_imgsz(int(cfg.imgsz)))  # the models are built later, one by one: the Ghost-YOLO stride rule
    batch_sizes = [int(b) for b in cfg.batch_sizes]
    env = environment(threads, cfg.device)
    LOGGER.info("benchmarking %d model(s) at %d px on %s with %d threads", len(cfg.models), imgsz, env["cpu"], threads)

    val = None
    calibration, calibration_source = None, ""
    if cfg.get("data") is not None and any(str(m).endswith("-int8") for m in cfg.modes):
        calibration, calibration_source = calibration_images(cfg.data, (imgsz, imgsz), int(cfg.calib_images))
    results = []
    for spec in cfg.models:
        name, model, is_checkpoint = load_model(str(spec), int(cfg.num_classes))
        evaluate = None
        if cfg.get("data") is not None and is_checkpoint:
            if val is None:
                from ghostdet.data import build_dataloader, build_dataset

                dataset = build_dataset(cfg.data, split="val", imgsz=imgsz, augment=False)
                loader = build_dataloader(dataset, batch_size=cfg.eval.batch, workers=cfg.eval.workers, shuffle=False)
                val = (dataset, loader, dataset.coco_gt())
            split = ValSplit(*val)
            settings = {"conf": cfg.eval.conf, "iou": cfg.eval.iou, "max_det": cfg.eval.max_det}
            evaluate = lambda m, split=split, settings=settings: evaluate_runtime(m, split, **settings)  # noqa: E731
        res = benchmark_model(model, imgsz, batch_sizes, list(cfg.modes), cfg.warmup, cfg.repeats, threads, cfg.device,
                              calibration=calibration, calibration_source=calibration_source, evaluate=evaluate)
        res.update(name=name, imgsz=imgsz, metrics=None, speed=None)
        if evaluate is not None:
            dataset, loader, coco_gt = val
            ev = evaluate_model(model, loader, coco_gt, dataset.category_ids, names=dataset.names, conf=cfg.eval.conf,
                                iou=cfg.eval.iou, max_det=cfg.eval.max_det, device=cfg.device)
            res.update(metrics={k: v for k, v in ev.metrics.items() if not k.startswith("per_class")}, speed=ev.speed)
        elif cfg.get("data") is not None:
            LOGGER.info("%s: no mAP for a model config (random weights); benchmark a checkpoint for mAP", name)
        results.append(res)
        # before the loader's workers exit (their SIGCHLD) or Ctrl-C: the OpenVINO modes may leave a freed signal stack
        drop_dangling_signal_stack()

    headers, rows = benchmark_rows(results, batch_sizes)
    load = f"{env['load_avg_1m']:.1f}" if env["load_avg_1m"] is not None else "unknown"
    note = (f"{imgsz}x{imgsz}, {env['device']} ({env['cpu']}), {threads} threads, torch {env['torch']}, "
            f"onnxruntime {env['onnxruntime'] or 'not installed'}, openvino {env['openvino'] or 'not installed'}; "
            f"median of {cfg.repeats} runs after {cfg.warmup} "
            f"warm-up; forward + box decoding, no NMS; load average {load} on {env['cpus']} CPUs")
    calibrated = sorted({r["calibration"] for r in results if r.get("calibration")})
    if calibrated:
        note += "; int8 calibrated on " + ", ".join(calibrated)
    skipped = sorted({f"{mode}: {why}" for r in results for mode, why in r["skipped"].items()})
    if skipped:
        note += "; skipped " + "; ".join(skipped)
    per_mode = None
    if any(r.get("mode_metrics") for r in results):  # the speed-accuracy table: each mode's own mAP
        per_mode = mode_rows(results, batch_sizes)
    markdown = markdown_table(headers, rows)
    if per_mode:
        markdown += "\n\nmAP of each mode (val split, conf {}):\n\n".format(cfg.eval.conf) + markdown_table(*per_mode)
    write_text(run_dir / "benchmark.md", markdown + f"\n\n{note}\n")
    report = {"environment": env, "settings": OmegaConf.to_container(cfg, resolve=True), "results": results}
    write_text(run_dir / "benchmark.json", json.dumps(report, indent=2, default=str))
    print(text_table(headers, rows))
    if per_mode:
        print(f"\nmAP of each mode (val split, conf {cfg.eval.conf}):")
        print(text_table(*per_mode))
    print(note)
    print(f"Results saved to {run_dir / 'benchmark.md'}, {run_dir / 'benchmark.json'}")


def main() -> None:
    """``ghostdet benchmark`` / ``python tools/benchmark.py``: the arguments are Hydra overrides read from ``sys.argv``."""
    rewrite_data_yaml_argv()
    refuse_unknown_keys("benchmark")
    check_checkpoints_before_hydra(("models",))  # a refused file leaves no run dir behind
    with fresh_run_dir("benchmark"):  # nor does a failed benchmark
        hydra_main()


if __name__ == "__main__":
    main()
