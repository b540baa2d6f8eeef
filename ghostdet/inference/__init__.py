"""Inference: the ``Detector`` predictor (from a checkpoint or an ONNX file), sources, drawing, detect outputs."""
from ghostdet.inference.predictor import Detector
from ghostdet.inference.results import Detections

__all__ = ["Detector", "Detections"]
