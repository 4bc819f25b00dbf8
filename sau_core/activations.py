"""The activations the zoo compares, by the names the zoo's ``--act`` flag takes.

One table serves every framework: MMCV configs use the ``act_cfg`` dicts, fairseq and plain
PyTorch use :func:`create_act_layer`. Names follow timm's style (``leaky_relu``, not ``LeakyReLU``).
The paper's baselines come first; then issue 17's ablations, each SAU with one thing changed
(README, 'Smoothing or trainable slope?'); :data:`ACT_DOCS` says in one line what each name is.
"""
from torch import nn

from .module import SAU
from .per_channel import PerChannelSAU

#: name -> MMCV ``act_cfg``; the paper's baselines use the PyTorch defaults except LeakyReLU (0.01).
ACT_CFGS = {
    'relu': dict(type='ReLU'),
    'swish': dict(type='SiLU'),
    'leaky_relu': dict(type='LeakyReLU', negative_slope=0.01),
    'elu': dict(type='ELU'),
    'softplus': dict(type='Softplus'),
    'gelu': dict(type='GELU'),
    'prelu': dict(type='PReLU'),
    'relu6': dict(type='ReLU6'),
    'sau': dict(type='SAU'),
    # the ablations (issue 17)
    'prelu_shared_0.15': dict(type='PReLU', num_parameters=1, init=0.15),
    'leaky_relu_0.15': dict(type='LeakyReLU', negative_slope=0.15),
    'sau_n2': dict(type='SAU', n=2.0),
    'sau_n20': dict(type='SAU', n=20.0),
    'sau_n200': dict(type='SAU', n=200.0),
    'sau_per_channel': dict(type='PerChannelSAU'),
    'sau_zero_centred': dict(type='SAU', zero_centred=True),
    'sau_trainable_n': dict(type='SAU', trainable_n=True),
}

#: name -> what it is, in one line
ACT_DOCS = {
    'relu': 'ReLU',
    'swish': 'Swish / SiLU, x * sigmoid(x)',
    'leaky_relu': 'Leaky ReLU, fixed slope 0.01 (the paper\'s baseline)',
    'elu': 'ELU (alpha 1)',
    'softplus': 'Softplus (beta 1)',
    'gelu': 'GELU (exact erf form)',
    'prelu': 'PReLU, one shared slope trained from 0.25 (the paper\'s baseline, nn.PReLU())',
    'relu6': 'ReLU6',
    'sau': 'SAU, one alpha per layer trained from 0.15, n = 20000 (the paper\'s setting)',
    'prelu_shared_0.15': 'PReLU, one shared slope trained from 0.15: SAU without the smoothing',
    'leaky_relu_0.15': 'Leaky ReLU, fixed slope 0.15: SAU without the smoothing and without training alpha',
    'sau_n2': 'SAU with n = 2 (Gaussian std 0.5): smoothing wide on BN-normalised features',
    'sau_n20': 'SAU with n = 20 (Gaussian std 0.05)',
    'sau_n200': 'SAU with n = 200 (Gaussian std 0.005)',
    'sau_per_channel': 'SAU with one alpha per channel (along dim 1; fairseq: the FFN\'s last dim), sized lazily',
    'sau_zero_centred': 'the paper\'s zero-centred SAU: the Gaussian term multiplied by x, so SAU(0) = 0',
    'sau_trainable_n': 'SAU with n trained too (one n per layer, from 20000)',
}

_TORCH_LAYERS = {
    'ReLU': nn.ReLU, 'SiLU': nn.SiLU, 'LeakyReLU': nn.LeakyReLU, 'ELU': nn.ELU,
    'Softplus': nn.Softplus, 'GELU': nn.GELU, 'PReLU': nn.PReLU, 'ReLU6': nn.ReLU6, 'SAU': SAU,
    'PerChannelSAU': PerChannelSAU,
}


def act_cfg(name):
    """The ``act_cfg`` dict for an activation name, or a ValueError listing the names we know."""
    try:
        return dict(ACT_CFGS[name])
    except (KeyError, TypeError):
        raise ValueError(f'unknown activation {name!r}; choose one of: {", ".join(ACT_CFGS)}') from None


def create_act_layer(name_or_cfg, **kwargs):
    """A fresh ``nn.Module`` from a name (``'sau'``) or an ``act_cfg`` dict; ``None`` gives ``None``.

    Every call returns a new module, so each layer owns its parameters (its own SAU alpha).
    """
    if name_or_cfg is None or name_or_cfg == '':
        return None
    cfg = act_cfg(name_or_cfg) if isinstance(name_or_cfg, str) else dict(name_or_cfg)
    cfg.update(kwargs)
    layer_type = cfg.pop('type')
    cfg.pop('inplace', None)  # GELU, Softplus and PReLU do not take it: layers made here run out of place
    return _TORCH_LAYERS[layer_type](**cfg)
