"""Typed errors with one-line messages that say what to do.

Library code raises these; tools catch ``GhostdetError`` and print ``str(err)`` without a traceback.
"""


class GhostdetError(Exception):
    """Base class of every error ghostdet raises on purpose (bad input, bad config, bad file)."""


class ConfigError(GhostdetError):
    """A configuration value is missing or invalid."""


class DataError(GhostdetError):
    """A dataset root, annotation file or image set is missing or unusable."""


class CheckpointError(GhostdetError):
    """A checkpoint or weights file cannot be read safely or does not fit the model."""


class ExportMismatchError(GhostdetError):
    """An exported model (ONNX, OpenVINO, TorchScript) does not reproduce the PyTorch model's outputs."""
