"""Is the AP drop over the close-mosaic epochs a BatchNorm-statistics effect? Evaluate a VOC-trained checkpoint as
saved, then with its BatchNorm running statistics re-estimated (cumulative average over 2 passes, no gradient, no
weight change) on mosaic and on non-mosaic augmented training batches.

    python benchmarks/check_bn_close_mosaic.py runs/bl100/ghostdet_ghost_yolo_320/weights/last.pt [--data-root DIR] [--imgsz 320]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ghostdet.data import build_dataloader, build_dataset  # noqa: E402
from ghostdet.eval import evaluate_model  # noqa: E402
from ghostdet.utils.checkpoint import build_model_from_checkpoint  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "raccoon"))
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = OmegaConf.create({"format": "voc", "root": args.data_root, "train": "train", "val": "val", "names": None,
                            "cache": False})
    val = build_dataset(cfg, "val", imgsz=args.imgsz, augment=False)
    val_loader = build_dataloader(val, batch_size=8, workers=0, shuffle=False)
    gt = val.coco_gt()

    def ap(model) -> float:
        return evaluate_model(model.eval(), val_loader, gt, val.category_ids, names=val.names,
                              progress=False).metrics["AP"]

    print(f"as saved: AP {ap(build_model_from_checkpoint(args.weights)[0]):.4f}")
    for mosaic in (True, False):
        model = build_model_from_checkpoint(args.weights)[0]
        train = build_dataset(cfg, "train", imgsz=args.imgsz, augment=True)
        train.set_mosaic(mosaic)
        loader = build_dataloader(train, batch_size=16, workers=0, shuffle=True)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None  # cumulative average
        model.train()
        with torch.no_grad():
            for _ in range(2):
                for images, *_ in loader:
                    model(images)
        print(f"BN statistics re-estimated on {'mosaic' if mosaic else 'non-mosaic'} training batches: AP {ap(model):.4f}")


if __name__ == "__main__":
    main()
