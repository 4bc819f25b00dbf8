"""SSD's VGG backbone with batch-norm and a configurable activation.

mmdet's ``SSDVGG`` (on ``mmcv.cnn.VGG``) hard-codes ``nn.ReLU`` and has no batch-norm. This subclass
keeps its layout, ``forward`` and init scheme, but builds every conv as an MMCV ``ConvModule``
(conv -> norm_cfg -> act_cfg), so ``act_cfg=dict(type='SAU')`` puts SAU at each of the 15 activations.
"""
from mmcv.cnn import VGG, ConvModule
from mmdet.models.backbones import SSDVGG
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn


@MODELS.register_module()
class SSDVGGBN(SSDVGG):
    """VGG (default 16 layers) + SSD's fc6/fc7, each conv a ``ConvModule`` with norm and activation.

    Args:
        depth: VGG depth, one of ``mmcv.cnn.VGG.arch_settings`` (11, 13, 16, 19).
        base_channels: width of the first stage (64 in VGG); stages are 1, 2, 4, 8, 8 times it and
            fc6/fc7 16 times it. Smaller values give the reduced-width variants of the tiny configs.
        norm_cfg: norm layer of every conv, e.g. ``dict(type='BN')``; ``None`` for plain VGG.
        act_cfg: activation of every conv, e.g. ``dict(type='SAU')``.
        ceil_mode: ``ceil_mode`` of the 2x2 max-pools (SSD uses True, so conv4_3 is 38x38 at 300).
        out_indices: which of the VGG stages (0-based) feed the neck, counting fc7 as stage 5:
            ``(3, 5)`` gives SSD's conv4_3 and fc7.
        init_cfg: ``None`` (training from scratch) leaves each ``ConvModule`` its own init:
            Kaiming-normal convs and unit-weight norms, as ``SSDVGG`` does without pre-training.

    The outputs are those of ``SSDVGG`` (conv4_3 and fc7 after their activation), with
    ``16 * base_channels`` channels at fc7.
    """

    def __init__(self, depth=16, base_channels=64, norm_cfg=dict(type='BN'),
                 act_cfg=dict(type='ReLU'), ceil_mode=True, out_indices=(3, 5), init_cfg=None):
        # SSDVGG.__init__ would build mmcv's ReLU-only VGG; only the BaseModule part is wanted.
        BaseModule.__init__(self, init_cfg=init_cfg)
        if depth not in VGG.arch_settings:
            raise KeyError(f'invalid depth {depth} for VGG; choose one of {sorted(VGG.arch_settings)}')
        self.stage_blocks = VGG.arch_settings[depth]
        self.out_indices = out_indices
        # VGG.train() reads these: keep batch-norm in training mode (we train from scratch).
        self.bn_eval, self.bn_frozen, self.frozen_stages = False, False, -1

        def conv(cin, cout, kernel_size=3, padding=1, dilation=1):
            return ConvModule(cin, cout, kernel_size, padding=padding, dilation=dilation,
                              norm_cfg=norm_cfg, act_cfg=act_cfg)

        layers, stage_ends, cin = [], [], 3
        for i, num_blocks in enumerate(self.stage_blocks):
            cout = base_channels * 2 ** min(i, 3)
            for _ in range(num_blocks):
                layers.append(conv(cin, cout))
                cin = cout
            stage_ends.append(len(layers) - 1)  # the last conv of the stage, before its pool
            if i < len(self.stage_blocks) - 1:  # SSD drops VGG's last 2x2 pool
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
        # SSD's replacements for VGG's fully-connected layers (as in SSDVGG): pool5, fc6 (dilated), fc7
        layers.append(nn.MaxPool2d(kernel_size=3, stride=1, padding=1))
        layers.append(conv(cin, 16 * base_channels, 3, padding=6, dilation=6))
        layers.append(conv(16 * base_channels, 16 * base_channels, 1, padding=0))
        stage_ends.append(len(layers) - 1)
        self.module_name = 'features'
        self.features = nn.Sequential(*layers)
        self.out_feature_indices = tuple(stage_ends[i] for i in out_indices)
        self.out_channels = tuple(layers[stage_ends[i]].conv.out_channels for i in out_indices)

    def train(self, mode=True):
        """``VGG.train`` (bn_eval, frozen_stages), returning ``self`` as ``nn.Module.train`` does."""
        super().train(mode)
        return self
