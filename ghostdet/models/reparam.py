"""Structural re-parameterization for deployment."""
from __future__ import annotations

import torch
import torch.nn as nn


@torch.no_grad()
def reparameterize(model: nn.Module) -> nn.Module:
    """Fuse every re-parameterizable block inside ``model`` in place and return it.

    A block opts in by defining a ``reparameterize()`` method that rewrites itself into its
    deploy form (e.g. RepGhost's depthwise + BN-identity branches into one depthwise conv with bias).
    Calling this twice is harmless: blocks already in deploy form do nothing.
    """
    for module in list(model.modules()):
        if module is not model and hasattr(module, "reparameterize") and callable(module.reparameterize):
            module.reparameterize()
    return model


@torch.no_grad()
def deploy_form(model: nn.Module) -> nn.Module:
    """``model`` in its inference form, in place: re-parameterized blocks, then BatchNorm folded into the convs
    (``model.fuse()`` where the model has one), eval mode. Same outputs as the eval-mode model, fewer ops. The one
    recipe the predictor, the exporter and the trainer's per-epoch evaluation share."""
    reparameterize(model)
    if callable(getattr(model, "fuse", None)):
        model.fuse()
    return model.eval()
