"""``PerChannelSAU``: SAU with one alpha per channel, sized from the layer that feeds it.

MMCV's ``ConvModule`` builds its activation from ``act_cfg`` without telling it the channel count, and fairseq's
``get_activation_fn`` gets only a name, so ``act_cfg=dict(type='PerChannelSAU')`` (``--act sau_per_channel``)
cannot size its alpha when it is built. It is therefore a lazy module (``torch.nn.LazyModuleMixin``, as
``nn.LazyLinear``): ``alpha`` starts as an ``UninitializedParameter`` and is sized, then filled with the initial
alpha, by the first of

1. its registration as a child of a module that already holds the layer feeding it: ``ConvModule``'s ``conv``
   (``out_channels``; ``in_channels`` when the module's ``order`` puts the activation first) or, in an
   ``nn.Sequential``, the last earlier child with ``out_channels``/``num_features``;
2. the registration of ``fc1`` (``out_features``) on a module whose ``activation_fn`` it is (fairseq's
   Transformer layers build the activation before ``fc1``);
3. loading a state_dict (``LazyModuleMixin``'s load hook takes the checkpoint's shape);
4. the first forward: ``x.shape[channel_dim]``.

(1) and (2) run from a global module-registration hook (``torch.nn.modules.module.
register_module_module_registration_hook``, installed when this module is imported), so in the zoo's models
every per-channel alpha has its size before the optimizer, DDP, ``init_weights`` or a checkpoint check sees it;
the checkpoint holds ``alpha`` of shape (C,) under the same key as ``SAU``'s. ``channel_dim`` is 1 (NCHW, as
``nn.PReLU``) or -1 (fairseq's FFN input is (T, B, C): one alpha per feature of the last dim; the op's
per-channel layout is dim 1, so the input is viewed as (T*B, C)).
"""
import torch
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.modules.module import register_module_module_registration_hook
from torch.nn.parameter import UninitializedParameter, is_lazy

from .module import SAU


class PerChannelSAU(LazyModuleMixin, SAU):
    """SAU with one trainable alpha per channel along ``channel_dim`` (1 or -1); ``num_parameters=None``
    (default) sizes it lazily (see the module docstring), an int sizes it now."""

    cls_to_become = None  # stays a PerChannelSAU once sized

    def __init__(self, alpha=0.15, n=20000.0, num_parameters=None, trainable_n=False, zero_centred=False,
                 inplace=False, channel_dim=1):
        super().__init__(alpha, n, num_parameters or 1, trainable_n, zero_centred, inplace)
        if channel_dim not in (1, -1):
            raise ValueError(f'PerChannelSAU: channel_dim is 1 (NCHW) or -1 (channels last), not {channel_dim}')
        self.channel_dim = channel_dim
        self.init_alpha = float(alpha)
        if num_parameters is None:
            self.alpha = UninitializedParameter()
        else:
            self._drop_lazy_hooks()

    # LazyModuleMixin's interface
    def reset_parameters(self):
        if not self.has_uninitialized_params():
            with torch.no_grad():
                self.alpha.fill_(self.init_alpha)

    def initialize_parameters(self, x, *args):  # LazyModuleMixin's first-forward hook (it drops the hooks)
        self._materialize(x.shape[self.channel_dim] if x.dim() > 1 else 1)

    def size_to(self, channels):
        """Give the lazy alpha ``channels`` values (the initial alpha) now; a no-op once sized with as many
        (a ValueError for another count)."""
        self._materialize(channels)
        self._drop_lazy_hooks()

    def _materialize(self, channels):
        channels = int(channels)
        if not is_lazy(self.alpha):
            if self.alpha.numel() != channels:
                raise ValueError(f'PerChannelSAU has {self.alpha.numel()} alphas but its input has {channels} '
                                 f'channels along dim {self.channel_dim}')
            return
        with torch.no_grad():
            self.alpha.materialize((channels,))  # the device and dtype the module was moved or cast to
            self.reset_parameters()

    def _drop_lazy_hooks(self):
        for name in ('_initialize_hook', '_load_hook'):
            handle = self.__dict__.pop(name, None)
            if handle is not None:
                handle.remove()

    def forward(self, x):
        if self.channel_dim == -1 and x.dim() > 2:  # (..., C): the op's per-channel layout is (rows, C)
            return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)
        return super().forward(x)

    def extra_repr(self):
        size = 'lazy' if is_lazy(self.alpha) else str(self.alpha.numel())
        extra = ''.join(f', {flag}=True' for flag, on in (
            ('trainable_n', isinstance(self.n, nn.Parameter)), ('zero_centred', self.zero_centred),
            ('inplace', self.inplace)) if on)
        return f'num_parameters={size}, channel_dim={self.channel_dim}, n={self.n.item():g}{extra}'


def _producer_channels(parent, name):
    """Channels of the layer that feeds ``parent.<name>``, if ``parent`` already holds it, else None."""
    conv = getattr(parent, 'conv', None) if isinstance(getattr(parent, 'conv', None), nn.Module) else None
    if conv is not None and hasattr(conv, 'out_channels'):
        order = tuple(getattr(parent, 'order', ('conv', 'norm', 'act')))
        act_first = 'act' in order and 'conv' in order and order.index('act') < order.index('conv')
        return conv.in_channels if act_first else conv.out_channels
    if isinstance(parent, nn.Sequential):
        for child in reversed(list(parent.children())):
            for attr in ('out_channels', 'num_features'):
                if isinstance(getattr(child, attr, None), int):
                    return getattr(child, attr)
    return None


def _size_on_registration(parent, name, module):
    if isinstance(module, PerChannelSAU) and is_lazy(module.alpha):
        channels = _producer_channels(parent, name)
        if channels is not None:
            module.size_to(channels)
    elif name == 'fc1' and isinstance(getattr(module, 'out_features', None), int):
        act = parent._modules.get('activation_fn')
        if isinstance(act, PerChannelSAU) and is_lazy(act.alpha):
            act.size_to(module.out_features)
    return None


_HOOK = register_module_module_registration_hook(_size_on_registration)
