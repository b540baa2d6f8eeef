"""GhostNet-family backbones (timm-style: one file per architecture, authors' key names).

Each constructor takes ``width`` (or ``variant``), ``num_classes``, ``features_only``, ``pretrained``
(a local file). With ``features_only=True`` the forward returns ``[C3, C4, C5]`` at strides 8/16/32 and
the module exposes ``out_channels``.
"""
from ghostdet.models.backbones.g_ghost_regnet import GGhostRegNet
from ghostdet.models.backbones.ghostnet import GhostNet
from ghostdet.models.backbones.ghostnetv2 import GhostNetV2
from ghostdet.models.backbones.repghost import RepGhostNet

__all__ = ["GhostNet", "GhostNetV2", "RepGhostNet", "GGhostRegNet"]
