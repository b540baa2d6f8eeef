"""Models: backbones, necks, heads and the Ghost-YOLO detector."""
from ghostdet.models.reparam import reparameterize

__all__ = ["reparameterize"]
