"""``SAU`` as an ``nn.Module``: the learnable alpha (and optionally n) live here, the math in the op."""
import torch
from torch import nn

from .op import sau


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
            recovered from the output (see :func:`sau_core.op.sau`).
    """

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

    def forward(self, x):
        return sau(x, self.alpha, self.n, self.zero_centred, self.inplace)

    def extra_repr(self):
        trainable = ', trainable_n=True' if isinstance(self.n, nn.Parameter) else ''
        centred = ', zero_centred=True' if self.zero_centred else ''
        inplace = ', inplace=True' if self.inplace else ''
        return f'num_parameters={self.alpha.numel()}, n={self.n.item():g}{trainable}{centred}{inplace}'
