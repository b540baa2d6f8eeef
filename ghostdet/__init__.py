"""ghostdet: Ghost-YOLO object detection on GhostNet-family backbones."""

__version__ = "0.1.0"

__all__ = ["Detector", "Detections", "__version__"]


def __getattr__(name):
    # Lazy so that `import ghostdet` stays light (no torch/cv2 import until the predictor is used).
    if name in ("Detector", "Detections"):
        from ghostdet import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ghostdet' has no attribute {name!r}")
