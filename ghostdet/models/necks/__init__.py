"""Necks: multi-scale feature fusion between backbone and head."""
from ghostdet.models.necks.ghost_pan import GhostPAN

__all__ = ["GhostPAN"]
