"""Models: backbones, necks, heads and the Ghost-YOLO detector."""
from ghostdet.models.backbones import GGhostRegNet, GhostNet, GhostNetV2, RepGhostNet
from ghostdet.models.detector import GhostYOLO
from ghostdet.models.reparam import reparameterize

__all__ = ["GhostNet", "RepGhostNet", "GhostNetV2", "GGhostRegNet", "GhostYOLO", "reparameterize"]
