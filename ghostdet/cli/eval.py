"""COCO mAP of a trained checkpoint: `ghostdet eval weights=runs/train/.../weights/best.pt` or `python tools/eval.py
weights=...` (see configs/eval.yaml).

Examples:
    python tools/eval.py weights=best.pt                          # on the data it was trained on (val split)
    python tools/eval.py weights=best.pt data=coco128 imgsz=320
    python tools/eval.py weights=best.pt data=yolo data.root=/data/my_set backend=faster-coco-eval
"""
from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from ghostdet.cli.common import check_checkpoints_before_hydra, config_dir, run_tool, start_tool
from ghostdet.utils.errors import ConfigError

LOGGER = logging.getLogger("ghostdet.cli.eval")


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
@run_tool
def hydra_main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from ghostdet.data import build_dataloader, build_dataset
    from ghostdet.utils.device import select_device
    from ghostdet.eval import evaluate_model, format_summary, load_coco_gt, per_class_table, save_eval_outputs
    from ghostdet.utils.timing import set_threads
    from ghostdet.utils.checkpoint import build_model_from_checkpoint

    start_tool(cfg.get("plugins"))
    run_dir = HydraConfig.get().runtime.output_dir
    threads = set_threads(cfg.threads)
    device = select_device(cfg.device)
    model, meta = build_model_from_checkpoint(cfg.weights, map_location=device)

    data_cfg = cfg.get("data")
    if data_cfg is None:  # no data=...: the data the model was trained on
        data_cfg = OmegaConf.create((meta.get("config") or {}).get("data") or {})
        if not data_cfg:
            raise ConfigError(f"{cfg.weights}: the checkpoint stores no data config; pass data=<name> (see configs/data/)")
        LOGGER.info("data: the checkpoint's training data (%s, root %s)", data_cfg.get("format"), data_cfg.get("root"))
    imgsz = int(cfg.imgsz or meta.get("imgsz") or 640)
    # data named by the checkpoint is only read: no scan cache written, no shapes set generated
    dataset = build_dataset(data_cfg, split=cfg.split, imgsz=imgsz, augment=False, read_only=cfg.get("data") is None)
    if meta["names"] and list(dataset.names) != list(meta["names"]):
        LOGGER.warning("the model's classes differ from the data's (%s... vs %s...): class i of the model is scored "
                       "as class i of the data", meta["names"][:3], list(dataset.names)[:3])
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
    settings = {"weights": str(cfg.weights), "split": cfg.split, "imgsz": imgsz, "batch": cfg.batch, "conf": cfg.conf,
                "iou": cfg.iou, "max_det": cfg.max_det, "multi_label": cfg.multi_label, "backend": cfg.backend,
                "device": str(device), "threads": threads}
    paths = save_eval_outputs(result, run_dir, settings=settings, save_json=cfg.save_json, plots=cfg.plots)

    print(format_summary(result.metrics))
    print()
    print(per_class_table(result.metrics, coco_gt))
    s = result.speed
    print(f"\nSpeed: {s['preprocess']:.1f} ms pre-process, {s['inference']:.1f} ms inference, "
          f"{s['postprocess']:.1f} ms post-process per image at {imgsz}x{imgsz} (batch {cfg.batch}, {device}, "
          f"{threads} threads)")
    print(f"mAP50-95 {result.metrics['AP']:.4f}  mAP50 {result.metrics['AP50']:.4f}  "
          f"({result.num_images} images, {len(result.detections)} detections)")
    print("Results saved to " + ", ".join(str(p) for p in paths.values()))


def main() -> None:
    """``ghostdet eval`` / ``python tools/eval.py``: the arguments are Hydra overrides read from ``sys.argv``."""
    check_checkpoints_before_hydra(("weights",))  # a refused file leaves no run dir behind
    hydra_main()


if __name__ == "__main__":
    main()
