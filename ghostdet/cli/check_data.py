"""Check a dataset before training: `ghostdet check-data data=coco128` or `python tools/check_data.py data=coco128`
(see configs/check_data.yaml).

Scans the train and val splits (faulty images and label lines are skipped and listed), prints the summary,
the boxes per class and the problems, and renders augmented training samples and letterboxed eval samples
with their boxes into a new run dir. Exits 1 with a one-line message when a split has nothing usable, and then
leaves no run dir behind.
"""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ghostdet.cli.common import rewrite_data_yaml_argv, config_dir, fresh_run_dir, refuse_unknown_keys, run_tool, setup_logging


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="check_data")
@run_tool
def hydra_main(cfg: DictConfig) -> None:
    import cv2
    import numpy as np
    from hydra.core.hydra_config import HydraConfig

    from ghostdet.data import build_dataset
    from ghostdet.data.preview import class_table, preview_samples, tile
    from ghostdet.inference.draw import draw_detections
    from ghostdet.inference.results import Detections
    from ghostdet.utils.atomic import atomic_write, write_text

    setup_logging()
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    datasets = {split: build_dataset(cfg.data, split=split, imgsz=int(cfg.imgsz), augment=split == "train",
                                     aug_cfg=cfg.get("augment"), seed=int(cfg.seed)) for split in ("train", "val")}
    reports = {split: ds.report for split, ds in datasets.items()}
    names = datasets["train"].names

    print(f"\ndata: {cfg.data.format} at {cfg.data.root}")
    for report in reports.values():
        print(f"  {report.summary()}")
    print("\nboxes per class:\n" + class_table(names, reports))

    problems = [f"[{split}] {line}" for split, r in reports.items() for line in r.problems]
    write_text(out_dir / "problems.txt", "\n".join(problems) + ("\n" if problems else ""))
    if problems:
        print(f"\n{len(problems)} problems (all in {out_dir / 'problems.txt'}):")
        for line in problems[: int(cfg.max_problems)]:
            print(f"  {line}")
        if len(problems) > int(cfg.max_problems):
            print(f"  ... and {len(problems) - int(cfg.max_problems)} more")
    else:
        print("\nno problems found")

    for split, count in (("train", int(cfg.train_samples)), ("val", int(cfg.val_samples))):
        samples = preview_samples(datasets[split], count, seed=int(cfg.seed))
        if not samples:
            continue
        drawn = []
        for s in samples:
            labels = np.asarray(s["labels"], dtype=np.int64)
            dets = Detections(boxes=s["boxes"], scores=np.ones(len(labels), np.float32), labels=labels,
                              names=[names[i] for i in labels], orig_shape=s["image"].shape[:2])
            drawn.append(draw_detections(s["image"], dets, hide_conf=True))
        path = out_dir / f"{split}_samples.png"
        with atomic_write(path, "wb") as f:
            f.write(cv2.imencode(".png", cv2.cvtColor(tile(drawn), cv2.COLOR_RGB2BGR))[1].tobytes())
        print(f"{split} samples: {path}")


def main() -> None:
    """``ghostdet check-data`` / ``python tools/check_data.py``: the arguments are Hydra overrides read from ``sys.argv``."""
    rewrite_data_yaml_argv()
    refuse_unknown_keys("check_data")
    with fresh_run_dir("check_data"):  # a failed check leaves no run dir behind
        hydra_main()


if __name__ == "__main__":
    main()
