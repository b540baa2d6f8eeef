"""COCO mAP of a trained checkpoint or of any file the exporter writes: `ghostdet eval weights=...` (alias `ghostdet
val`) or `python tools/eval.py weights=...` (see configs/eval.yaml).

Examples:
    python tools/eval.py                                          # the newest runs/train/*/*/weights/best.pt
    python tools/eval.py weights=best.pt                          # on the data it was trained on (val split)
    python tools/eval.py weights=best.pt data=coco128 imgsz=320
    python tools/eval.py weights=best.pt data=yolo data.root=/data/my_set backend=faster-coco-eval
    python tools/eval.py weights=best.onnx                        # also best_int8.onnx, best_openvino/, ...: the
                                                                  # same evaluator, the data of the best.pt beside it
"""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ghostdet.cli.common import (rewrite_data_yaml_argv, check_checkpoints_before_hydra, config_dir, fresh_run_dir, refuse_unknown_keys,
                                 run_tool, start_tool)
from ghostdet.utils.errors import ConfigError

LOGGER = logging.getLogger("ghostdet.cli.eval")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def is_checkpoint(path: Path) -> bool:
    return path.suffix.lower() in CHECKPOINT_SUFFIXES


def sibling_checkpoint(path: Path) -> Path | None:
    """The checkpoint an export was made from, by the exporter's names: best.onnx, best_int8.onnx, best_nms.onnx,
    best_openvino/, best_int8_openvino/ -> best.pt in the same folder."""
    if path.suffix.lower() == ".xml":  # best_openvino/model.xml: the folder is the export
        path = path.parent
    stem = path.stem if path.suffix else path.name
    for name in dict.fromkeys((stem, stem.split("_")[0])):
        candidate = path.parent / f"{name}.pt"
        if candidate.is_file():
            return candidate
    return None


def load_exported(weights: Path, cfg: DictConfig, threads: int):
    """(model for evaluate_model, class names, square size, description) of an exported file, through the same
    ``Detector.from_file`` that detect uses (ONNX Runtime, OpenVINO)."""
    from ghostdet.inference import Detector
    from ghostdet.inference.backends import BackendModule  # forward + decode: scored exactly like a checkpoint

    imgsz = int(cfg.imgsz) if cfg.imgsz else None
    device = "cpu" if str(cfg.device) == "auto" else str(cfg.device)
    detector = Detector.from_file(weights, device=device, imgsz=imgsz, precision=cfg.precision, threads=threads)
    if detector.nms_settings is not None:
        raise ConfigError(f"{weights}: NMS is in the graph (conf {detector.nms_settings['conf']}), so low-score boxes "
                          "are gone and the mAP would be too low; evaluate the export without --nms (best.onnx)")
    h, w = detector.imgsz
    if h != w:
        raise ConfigError(f"{weights}: exported for a {h}x{w} input, but mAP is measured on square letterboxed images; "
                          "evaluate an export with a square --imgsz or --dynamic")
    backend = detector.backend
    kind = backend.kind + (f" {backend.precision}" if getattr(backend, "precision", None) else "")
    model = BackendModule(backend, detector.num_classes, backend.fixed_batch)
    return model, list(detector.names), h, kind


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
@run_tool
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ghostdet.data import build_dataloader, build_dataset
    from ghostdet.eval import evaluate_model, format_summary, load_coco_gt, per_class_table, save_eval_outputs
    from ghostdet.inference.writer import find_latest_weights
    from ghostdet.utils.checkpoint import build_model_from_checkpoint, load_checkpoint
    from ghostdet.utils.device import select_device
    from ghostdet.utils.imgsz import check_imgsz
    from ghostdet.utils.timing import set_threads

    start_tool(cfg.get("plugins"))
    run_dir = HydraConfig.get().runtime.output_dir
    if cfg.imgsz is not None:
        check_imgsz(int(cfg.imgsz))  # before anything is loaded
    threads = set_threads(cfg.threads)
    if cfg.weights:
        weights = Path(str(cfg.weights))
    else:
        weights = find_latest_weights(option="weights=")
        print(f"using {weights} (the newest runs/train/*/*/weights/best.pt; weights=PATH for another)")
    train_cfg = {}
    if is_checkpoint(weights):
        device = select_device(cfg.device)
        model, meta = build_model_from_checkpoint(weights, map_location=device)
        names, train_cfg = meta["names"], meta.get("config") or {}
        imgsz, kind = int(cfg.imgsz or meta.get("imgsz") or 640), "pytorch"
    else:
        device = "cpu"
        model, names, imgsz, kind = load_exported(weights, cfg, threads)
        source = sibling_checkpoint(weights)
        if cfg.get("data") is None and source is not None:  # the export's metadata holds no data config
            LOGGER.info("data: that of %s, which %s was exported from", source, weights.name)
            ckpt = load_checkpoint(source)
            train_cfg = (ckpt.get("config") or {}) if isinstance(ckpt, dict) else {}

    data_cfg = cfg.get("data")
    if data_cfg is None:  # no data=...: the data the model was trained on
        data_cfg = OmegaConf.create(train_cfg.get("data") or {})
        if not data_cfg:
            where = "the checkpoint stores" if is_checkpoint(weights) else "an exported file (and no best.pt beside it) holds"
            raise ConfigError(f"{weights}: {where} no data config; pass data=<name> (see configs/data/)")
        LOGGER.info("data: the model's training data (%s, root %s)", data_cfg.get("format"), data_cfg.get("root"))
    # data named by the checkpoint is only read: no scan cache written, no shapes set generated
    dataset = build_dataset(data_cfg, split=cfg.split, imgsz=imgsz, augment=False, read_only=cfg.get("data") is None)
    if names and list(dataset.names) != list(names):
        LOGGER.warning("the model's classes differ from the data's (%s... vs %s...): class i of the model is scored "
                       "as class i of the data", list(names)[:3], list(dataset.names)[:3])
    loader = build_dataloader(dataset, batch_size=cfg.batch, workers=cfg.workers, shuffle=False)
    if cfg.gt:  # an explicit annotation file wins over the dataset's own ground truth
        LOGGER.info("evaluation ground truth: gt=%s", cfg.gt)
        coco_gt = load_coco_gt(cfg.gt)
    else:  # COCO data: its json as it is (the official protocol); YOLO/shapes: built from the scan
        coco_gt = dataset.coco_gt()

    for name in ("ghostdet.eval.coco_evaluator", "ghostdet.eval.loop"):  # summary and speed are printed below
        logging.getLogger(name).setLevel(logging.WARNING)
    result = evaluate_model(model, loader, coco_gt, dataset.category_ids, names=dataset.names, conf=cfg.conf,
                            iou=cfg.iou, max_det=cfg.max_det, device=device, backend=cfg.backend,
                            multi_label=cfg.multi_label, progress=cfg.progress)
    settings = {"weights": str(weights), "runtime": kind, "split": cfg.split, "imgsz": imgsz, "batch": cfg.batch,
                "conf": cfg.conf, "iou": cfg.iou, "max_det": cfg.max_det, "multi_label": cfg.multi_label,
                "backend": cfg.backend, "device": str(device), "threads": threads}
    paths = save_eval_outputs(result, run_dir, settings=settings, save_json=cfg.save_json, plots=cfg.plots)

    print(format_summary(result.metrics))
    print()
    print(per_class_table(result.metrics, coco_gt))
    s = result.speed
    print(f"\nSpeed: {s['preprocess']:.1f} ms pre-process, {s['inference']:.1f} ms inference, "
          f"{s['postprocess']:.1f} ms post-process per image at {imgsz}x{imgsz} (batch {cfg.batch}, {kind}, {device}, "
          f"{threads} threads)")
    print(f"mAP50-95 {result.metrics['AP']:.4f}  mAP50 {result.metrics['AP50']:.4f}  "
          f"({result.num_images} images, {len(result.detections)} detections)")
    print("Results saved to " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    """``ghostdet eval`` / ``python tools/eval.py``: the arguments are Hydra overrides read from ``sys.argv``."""
    rewrite_data_yaml_argv()
    refuse_unknown_keys("eval")
    check_checkpoints_before_hydra(("weights",))  # a refused file leaves no run dir behind
    with fresh_run_dir("eval"):  # a failed evaluation leaves no run dir behind either
        hydra_main()


if __name__ == "__main__":
    main()
