"""Models: backbones, necks, heads and the Ghost-YOLO detector, all registered by name.

``build_model(spec)`` builds any of them from plain data (see :mod:`ghostdet.models.registry`).
"""
from ghostdet.models.backbones import GGhostRegNet, GhostNet, GhostNetV2, RepGhostNet
from ghostdet.models.detector import GhostYOLO
from ghostdet.models.registry import (build_model, check_spec, import_plugins, list_models, register_backbone, register_detector,
                                      register_head, register_neck, register_variant, to_spec)
from ghostdet.models.reparam import deploy_form, reparameterize

__all__ = ["GhostNet", "RepGhostNet", "GhostNetV2", "GGhostRegNet", "GhostYOLO", "reparameterize", "deploy_form", "build_model", "check_spec",
           "list_models", "to_spec", "import_plugins", "register_backbone", "register_neck", "register_head",
           "register_detector", "register_variant"]
