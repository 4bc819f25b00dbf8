"""Register SAU into MMEngine's root ``MODELS`` registry.

Import it from a config with ``custom_imports = dict(imports=['sau_core.mm'])``; then
``act_cfg=dict(type='SAU')`` works in MMCV's ``build_activation_layer``/``ConvModule`` and therefore in
every OpenMMLab codebase (MMDetection's and MMSegmentation's registries are children of the root).
"""
from mmengine.registry import MODELS
from torch import nn

from .module import SAU
from .per_channel import PerChannelSAU


class Softplus(nn.Softplus):
    """``nn.Softplus`` that accepts the ``inplace`` flag ``ConvModule`` passes to every activation."""

    def __init__(self, beta=1.0, threshold=20.0, inplace=False):
        super().__init__(beta=beta, threshold=threshold)


MODELS.register_module('SAU', module=SAU, force=True)
MODELS.register_module('PerChannelSAU', module=PerChannelSAU, force=True)  # sau_per_channel
if 'Softplus' not in MODELS.module_dict:  # MMCV registers no Softplus; one of the paper's baselines
    MODELS.register_module('Softplus', module=Softplus)
