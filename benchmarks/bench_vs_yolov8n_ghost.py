"""Renamed: ``benchmarks/bench_peers.py`` (end-to-end latency against YOLO26n, YOLO11n and YOLOv8n-ghost).

This module keeps the old name working: ``python benchmarks/bench_vs_yolov8n_ghost.py ...`` runs bench_peers.py with
the same arguments, and ``from bench_vs_yolov8n_ghost import ...`` (profile_runtimes.py) gets bench_peers' functions.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_peers import (BASELINE, calibration, ghostdet_checkpoint_model, ghostdet_model, main,  # noqa: E402,F401
                         onnx_file, ort_int8_run, ort_int8_runner, ort_run, ort_runner, ov_int8_run, ov_int8_runner,
                         ov_run, ov_runner, torch_run, yolov8n_ghost)

if __name__ == "__main__":
    main()
