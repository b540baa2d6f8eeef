"""Inference: the ``Detector`` predictor (a checkpoint or any exported file; one backend per runtime in
``ghostdet.inference.backends``), sources, drawing, detect outputs."""
from ghostdet.inference.predictor import Detector
from ghostdet.inference.results import Detections

__all__ = ["Detector", "Detections"]
