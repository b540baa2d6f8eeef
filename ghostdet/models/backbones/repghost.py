"""RepGhostNet (Chen et al., "RepGhost: A Hardware-Efficient Ghost Module via Re-parameterization", 2022).

The RepGhost module replaces GhostNet's concatenation by an addition: the cheap depthwise branch plus a
BN-only identity branch, summed, ReLU after the sum. At deployment both fold into one depthwise conv with
bias (``reparameterize()``), so the module costs a conv + BN + depthwise conv. Key names follow the
authors' release (ChengpengChen/RepGhost), shared by timm's ``repghostnet_*`` models; ``deploy=True``
builds the re-parameterized layout directly (the authors' deploy keys).
"""
from __future__ import annotations

import copy
import os
from functools import partial

import torch
import torch.nn as nn

from ghostdet.models.backbones.ghostnet import GhostBottleneck, GhostNetBase
from ghostdet.models.layers import fuse_conv_bn
from ghostdet.models.registry import register_backbone, register_variant

# Same stages as GhostNet with half the expansion channels: (dw kernel, expansion, out, SE ratio, stride).
REPGHOSTNET_CFG = [
    [(3, 8, 16, 0, 1)],
    [(3, 24, 24, 0, 2)],
    [(3, 36, 24, 0, 1)],
    [(5, 36, 40, 0.25, 2)],
    [(5, 60, 40, 0.25, 1)],
    [(3, 120, 80, 0, 2)],
    [(3, 100, 80, 0, 1),
     (3, 120, 80, 0, 1),
     (3, 120, 80, 0, 1),
     (3, 240, 112, 0.25, 1),
     (3, 336, 112, 0.25, 1)],
    [(5, 336, 160, 0.25, 2)],
    [(5, 480, 160, 0, 1),
     (5, 480, 160, 0.25, 1),
     (5, 480, 160, 0, 1),
     (5, 480, 160, 0.25, 1)],
]


class RepGhostModule(nn.Module):
    """Primary 1x1 conv + BN (+ ReLU), then ``cheap_operation`` (depthwise conv + BN) plus ``fusion_bn``
    (BN of the identity), added; ReLU after the add when ``act``.

    Deploy form: ``cheap_operation`` is one depthwise conv with bias and ``fusion_bn`` is empty.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, dw_size: int = 3, stride: int = 1,
                 act: bool = True, deploy: bool = False):
        super().__init__()
        self.out_chs = out_chs
        self.deploy = deploy
        self.primary_conv = nn.Sequential(
            nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_chs),
            nn.ReLU(inplace=True) if act else nn.Identity(),
        )
        cheap = nn.Conv2d(out_chs, out_chs, dw_size, 1, dw_size // 2, groups=out_chs, bias=deploy)
        if deploy:
            self.cheap_operation = cheap
            self.fusion_bn = nn.Sequential()
        else:
            self.cheap_operation = nn.Sequential(cheap, nn.BatchNorm2d(out_chs))
            self.fusion_bn = nn.Sequential(nn.BatchNorm2d(out_chs))
        self.relu = nn.ReLU() if act else nn.Identity()  # after the add, not per branch (the RepGhost design)

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        if len(self.fusion_bn):
            x2 = x2 + self.fusion_bn(x1)
        return self.relu(x2)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Fold the depthwise conv + BN and the identity BN into one depthwise conv with bias (in place;
        a no-op in deploy form)."""
        if self.deploy:
            return
        conv, bn = self.cheap_operation[0], self.cheap_operation[1]
        if isinstance(bn, nn.BatchNorm2d):
            fused = fuse_conv_bn(conv, bn)
        else:  # BN already folded into the conv by layers.fuse_conv_bn_modules
            fused = copy.deepcopy(conv)
            if fused.bias is None:
                fused.bias = nn.Parameter(torch.zeros_like(fused.weight[:, 0, 0, 0]))
        identity_bn = self.fusion_bn[0]
        scale = identity_bn.weight / torch.sqrt(identity_bn.running_var + identity_bn.eps)
        centre = conv.kernel_size[0] // 2, conv.kernel_size[1] // 2
        fused.weight[:, 0, centre[0], centre[1]] += scale  # identity of a depthwise conv: 1 at the centre
        fused.bias += identity_bn.bias - identity_bn.running_mean * scale
        self.cheap_operation = fused
        self.fusion_bn = nn.Sequential()
        self.deploy = True


@register_backbone("repghostnet")
class RepGhostNet(GhostNetBase):
    """RepGhostNet: ``RepGhostNet(width=1.0, num_classes=1000, features_only=False, pretrained=None,
    deploy=False)``.

    Paper table (training-form params / MACs at 224): 0.5x 2.3M/43M, 0.58x 2.5M/60M, 0.8x 3.3M/96M,
    1.0x 4.1M/142M, 1.11x 4.5M/170M, 1.3x 5.5M/231M, 1.5x 6.6M/301M, 2.0x 9.8M/516M.
    ``ghostdet.models.reparameterize(model)`` converts to the deploy form in place; ``deploy=True``
    builds that form directly (to load re-parameterized weights).
    """

    cfg = REPGHOSTNET_CFG
    head_width_factor = 2.0
    pretrained_hint = ("build the model with the width (and num_classes) the file was trained for; "
                       "re-parameterized (deploy-form) weights need deploy=True")

    def __init__(self, width: float = 1.0, num_classes: int = 1000, features_only: bool = False,
                 pretrained: str | os.PathLike | None = None, dropout: float = 0.2, in_chans: int = 3,
                 deploy: bool = False):
        super().__init__(width, num_classes, features_only, pretrained, dropout, in_chans, deploy=deploy)

    @property
    def deploy(self) -> bool:
        """True when every RepGhost module is in deploy form (built so, or re-parameterized)."""
        return all(m.deploy for m in self.modules() if isinstance(m, RepGhostModule))

    def make_block(self, in_chs, mid_chs, out_chs, kernel, stride, se_ratio, block_index,
                   deploy: bool = False) -> nn.Module:
        module = partial(RepGhostModule, deploy=deploy)
        return GhostBottleneck(in_chs, mid_chs, out_chs, kernel, stride, se_ratio,
                               expand_module=module, project_module=module)


# the paper's widths under timm's names
REPGHOSTNET_VARIANTS = {"repghostnet_050": 0.5, "repghostnet_058": 0.58, "repghostnet_080": 0.8, "repghostnet_100": 1.0,
                        "repghostnet_111": 1.11, "repghostnet_130": 1.3, "repghostnet_150": 1.5, "repghostnet_200": 2.0}
for _name, _width in REPGHOSTNET_VARIANTS.items():
    register_variant(_name, RepGhostNet, width=_width)
