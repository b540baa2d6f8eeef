"""ghostdet: Ghost-YOLO object detection on GhostNet-family backbones."""

__version__ = "0.1.0"
