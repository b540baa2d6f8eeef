"""Which default training recipe learns best? The shipped configs/train.yaml against variants, several seeds, two
datasets, from scratch, each run through ``tools/train.py`` as a user runs it.

    python benchmarks/bench_recipe.py                                   # default vs warmup_bias_lr=0, 3 seeds
    python benchmarks/bench_recipe.py --variant "lr=schedule.warmup_bias_lr=0 optimizer.lr=0.004" --seeds 0 1 2
    python benchmarks/bench_recipe.py --data raccoon --epochs 20 --imgsz 192 --extra model.backbone.width=0.5

A variant is ``LABEL=key=value key=value`` (one shell word); ``default`` (no overrides) always runs. Every run writes
into ``--out/<data>/<label>/seed<N>``; ``--reuse`` skips a run whose results.csv already has all its epochs. The score
is the last epoch's val mAP50-95 and mAP50 (each tool's own evaluation: pycocotools on the val split, EMA weights),
reported as mean ± half the range over the seeds: on 40 val images one seed is noise (±0.03 AP).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GHOSTDET_SHARED_DATA", ROOT.parent / "shared" / "data"))
DATASETS = {
    "raccoon": ["data=voc", f"data.root={SHARED / 'raccoon'}"],
    "shapes": ["data=shapes"],
}


def parse_variant(text: str) -> tuple[str, list[str]]:
    label, _, rest = text.partition("=")
    return label, rest.split()


def last_row(csv_path: Path) -> dict | None:
    if not csv_path.is_file():
        return None
    rows = [r for r in csv.DictReader(csv_path.open()) if r.get("mAP50-95")]
    return rows[-1] if rows else None


def run(data: str, label: str, overrides: list[str], seed: int, args) -> dict:
    out = Path(args.out) / data / label / f"seed{seed}"
    row = last_row(out / "results.csv")
    if args.reuse and row and int(row["epoch"]) == args.epochs:
        return {"mAP50-95": float(row["mAP50-95"]), "mAP50": float(row["mAP50"]), "seconds": None}
    if out.exists():
        raise SystemExit(f"{out} exists: remove it or pass --reuse")
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), f"model={args.model}", *DATASETS[data],
           f"epochs={args.epochs}", f"imgsz={args.imgsz}", f"seed={seed}", "progress=false", "tensorboard=false",
           f"hydra.run.dir={out}", *args.extra, *overrides]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    row = last_row(out / "results.csv")
    return {"mAP50-95": float(row["mAP50-95"]), "mAP50": float(row["mAP50"]), "seconds": time.perf_counter() - start}


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", action="append", default=[], help="LABEL=key=value key=value (repeatable)")
    p.add_argument("--data", nargs="+", default=["raccoon", "shapes"], choices=sorted(DATASETS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", default="ghost_yolo")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=224)
    p.add_argument("--extra", nargs="*", default=[], help="overrides for every run")
    p.add_argument("--out", default="runs/bench_recipe")
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args()
    variants = [("default", [])] + [parse_variant(v) for v in (args.variant or ["bias0=schedule.warmup_bias_lr=0"])]

    results: dict = {}
    # seeds outermost: an interrupted sweep still has every variant at the first seeds
    for seed in args.seeds:
        for data in args.data:
            for label, overrides in variants:
                r = run(data, label, overrides, seed, args)
                results.setdefault(data, {}).setdefault(label, []).append(r)
                print(f"{data:8s} {label:12s} seed {seed}: mAP50-95 {r['mAP50-95']:.3f} mAP50 {r['mAP50']:.3f}"
                      + (f" ({r['seconds']:.0f} s)" if r["seconds"] else ""), flush=True)
    print(f"\n{args.model} @{args.imgsz}, {args.epochs} epochs, seeds {args.seeds}, extra {args.extra}")
    print("| data | recipe | mAP50-95 | mAP50 |\n|---|---|---|---|")
    for data, by_label in results.items():
        for label, rs in by_label.items():
            print(f"| {data} | {label} | {summary([r['mAP50-95'] for r in rs])} | {summary([r['mAP50'] for r in rs])} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
