"""``SAU`` as an ``nn.Module``: the learnable alpha (and optionally n) live here, the math in the op."""
import torch
from torch import nn

from .op import _warn_inplace_fallback, fused_sau


class SAU(nn.Module):
    """Smooth Activation Unit with a trainable Leaky-ReLU slope ``alpha``.

    Args:
        alpha: initial slope of the negative side (the paper initialises it at 0.15).
        n: sharpness; the Gaussian has standard deviation ``1/n`` (the paper keeps 20000).
        num_parameters: 1 for one shared alpha, or C for one alpha per channel along dim 1
            (like ``nn.PReLU``).
        trainable_n: learn ``n`` as well (stored as a parameter instead of a buffer).
        zero_centred: the paper's variant whose Gaussian term is multiplied by ``x``.
        inplace: overwrite the input and keep only the output for backward, as ``nn.ReLU(inplace=True)``
            does (MMCV's ``ConvModule`` asks for it); falls back to out of place where x cannot be
            recovered from the output (see :func:`sau_core.op.sau`), with one warning per layer (rank 0)
            when the reason is that alpha left ``INPLACE_ALPHA_RANGE``.

    A fixed ``n`` is a hyper-parameter, not a weight: it is the fp32 buffer ``n`` (the state-dict key), which
    device moves move but dtype casts (``.half()``, ``.bfloat16()``, ``.double()``, ``.to(dtype)``) leave in
    fp32, so that n = 20000 stays exactly 20000 (bf16 would make it 19968). With ``trainable_n=True`` it is a
    parameter and casts like the other parameters.

    ``layer_name`` (None until :func:`name_sau_layers` sets it) names the layer in its warning.
    """

    layer_name = None  # class defaults: also for modules pickled whole before these attributes existed
    _warned_inplace_fallback = False

    def __init__(self, alpha=0.15, n=20000.0, num_parameters=1, trainable_n=False,
                 zero_centred=False, inplace=False):
        super().__init__()
        if not float(n) > 0:
            raise ValueError(f'SAU needs n > 0 (the Gaussian has standard deviation 1/n); got n={n}')
        if int(num_parameters) < 1:
            raise ValueError(f'SAU needs num_parameters >= 1; got {num_parameters}')
        self.alpha = nn.Parameter(torch.full((int(num_parameters),), float(alpha)))
        n = torch.tensor(float(n))
        if trainable_n:
            self.n = nn.Parameter(n)
        else:
            self.register_buffer('n', n)
        self.zero_centred = bool(zero_centred)
        self.inplace = bool(inplace)

    def _apply(self, fn, recurse=True):
        """Applies ``fn`` as ``nn.Module`` does, except that a fixed n keeps its dtype (and so its exact value):
        it follows ``fn`` to its new device only."""
        n = self._buffers.get('n')
        if n is None:  # trainable n: a parameter, cast like alpha
            return super()._apply(fn, recurse)
        super()._apply(fn, recurse)
        moved = self._buffers['n']
        if moved.dtype != n.dtype:
            self._buffers['n'] = n.to(device=moved.device)
        return self

    def _warn_inplace_fallback(self, *bounds):
        if not self._warned_inplace_fallback:
            self._warned_inplace_fallback = True
            name = self.layer_name if self.layer_name is not None else (
                f'(unnamed, {self.alpha.numel()} alpha{"s" if self.alpha.numel() > 1 else ""}; '
                'sau_core.name_sau_layers(model) names it)')
            _warn_inplace_fallback(repr(name) if self.layer_name is not None else name, *bounds)

    def forward(self, x):
        # A fixed n was checked when built or loaded; a trainable one is checked on every call (without a host
        # sync on GPU: sau_core.op._check_n).
        return fused_sau(x, self.alpha, self.n, self.zero_centred, self.inplace, self._warn_inplace_fallback,
                         check_n=isinstance(self.n, nn.Parameter))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        n = state_dict.get(prefix + 'n')
        if isinstance(n, torch.Tensor) and n.numel() == 1 and n.device.type != 'meta' and not n.item() > 0:
            raise ValueError(f'SAU needs n > 0 (the Gaussian has standard deviation 1/n); the state dict has '
                             f'{prefix}n={n.item()}')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self):
        trainable = ', trainable_n=True' if isinstance(self.n, nn.Parameter) else ''
        centred = ', zero_centred=True' if self.zero_centred else ''
        inplace = ', inplace=True' if self.inplace else ''
        return f'num_parameters={self.alpha.numel()}, n={self.n.item():g}{trainable}{centred}{inplace}'


def name_sau_layers(model, prefix=''):
    """Stores each SAU's qualified name in ``model`` (``'backbone.layer1.0.act'``, with ``prefix`` in front) as
    its ``layer_name``, which its warnings show; a module does not know its own name otherwise. Returns the
    names. Call it once the model is built; unnamed layers describe themselves by their alpha count."""
    names = []
    for name, module in model.named_modules(prefix=prefix):
        if isinstance(module, SAU):
            module.layer_name = name or type(model).__name__
            names.append(module.layer_name)
    return names
