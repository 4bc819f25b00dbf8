"""The activations the paper compares, by the names the zoo's ``--act`` flag takes.

One table serves every framework: MMCV configs use the ``act_cfg`` dicts, fairseq and plain
PyTorch use :func:`create_act_layer`. Names follow timm's style (``leaky_relu``, not ``LeakyReLU``).
"""
from torch import nn

from .module import SAU

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
}

_TORCH_LAYERS = {
    'ReLU': nn.ReLU, 'SiLU': nn.SiLU, 'LeakyReLU': nn.LeakyReLU, 'ELU': nn.ELU,
    'Softplus': nn.Softplus, 'GELU': nn.GELU, 'PReLU': nn.PReLU, 'ReLU6': nn.ReLU6, 'SAU': SAU,
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
