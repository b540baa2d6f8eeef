"""The contract of an exported model file, shared by its writers (``ghostdet.export``) and its readers
(``ghostdet.inference``), so neither package imports the other for it."""
from __future__ import annotations

# ONNX metadata_props key and OpenVINO rt_info key of ghostdet's metadata (JSON: names, category_ids, imgsz, ...)
META_KEY = "ghostdet"
# outputs of an export with NMS in the graph (``tools/export.py --nms``; ``ghostdet.export.nms``), in this order
NMS_OUTPUT_NAMES = ("num_dets", "det_boxes", "det_scores", "det_classes")

__all__ = ["META_KEY", "NMS_OUTPUT_NAMES"]
