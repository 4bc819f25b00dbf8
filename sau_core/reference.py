"""Plain-PyTorch SAU: the oracle every fused path is tested against.

SAU (Biswas et al., arXiv 2109.13210, eq. 3) is Leaky ReLU with slope ``alpha`` convolved with a
Gaussian of standard deviation ``1/n``:

    SAU(x) = (1-a)/(n*sqrt(2*pi)) * exp(-(n*x)^2/2) + (1+a)/2 * x + (1-a)/2 * x * erf(n*x/sqrt(2))

The zero-centred variant multiplies the first (Gaussian) term by ``x`` so that SAU(0) = 0.
"""
import math

import torch

SQRT_2PI = math.sqrt(2.0 * math.pi)


def sau_reference(x, alpha, n, zero_centred=False):
    """Evaluate the formula term by term, in the dtype of ``x`` (autograd gives the gradients).

    ``alpha`` is a float or a tensor broadcast along dim 1 (one value per channel, as in
    ``nn.PReLU``); ``n`` is a float or a 0-d tensor.
    """
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    n = torch.as_tensor(n, dtype=x.dtype, device=x.device)
    if alpha.numel() > 1:
        alpha = alpha.reshape([1, -1] + [1] * (x.dim() - 2))
    gaussian = (1 - alpha) / (n * SQRT_2PI) * torch.exp(-((n * x) ** 2) / 2)
    if zero_centred:
        gaussian = gaussian * x
    return gaussian + (1 + alpha) / 2 * x + (1 - alpha) / 2 * x * torch.erf(n * x / math.sqrt(2.0))
