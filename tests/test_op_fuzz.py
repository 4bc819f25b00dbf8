"""Fuzzing the fused op against the reference: shapes, dtypes, strides, alpha/n values and special floats."""
import math

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sau_core import sau, sau_reference

EPS = {torch.float64: 1e-12, torch.float32: 3e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-30, -1e-30, 1e4, -1e4, 3e38, -3e38]


@st.composite
def sau_inputs(draw):
    dtype = draw(st.sampled_from(list(EPS)))
    shape = draw(st.lists(st.integers(0, 6), min_size=1, max_size=4))
    layout = draw(st.sampled_from(['contiguous', 'transposed', 'channels_last', 'strided']))
    per_channel = draw(st.booleans()) and len(shape) >= 2 and shape[1] > 0
    n = draw(st.sampled_from([0.5, 3.0, 20000.0, 1e5]))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64) * draw(st.sampled_from([1 / n, 1.0, 100.0]))
    flat = x.view(-1)
    for index in draw(st.lists(st.integers(0, max(flat.numel() - 1, 0)), max_size=4)) if flat.numel() else []:
        flat[index] = draw(st.sampled_from(SPECIAL))
    x = x.to(dtype)  # values beyond the dtype's range become inf, as a user's would
    if layout == 'transposed' and x.dim() >= 2:
        x = x.transpose(0, -1).contiguous().transpose(0, -1)
    elif layout == 'channels_last' and x.dim() == 4:
        x = x.to(memory_format=torch.channels_last)
    elif layout == 'strided':
        x = torch.repeat_interleave(x, 2, dim=-1)[..., ::2]
    channels = shape[1] if per_channel else 1
    alpha = torch.tensor(draw(st.lists(st.floats(-1.0, 2.0), min_size=channels, max_size=channels)),
                         dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    return x, alpha, n, draw(st.booleans())


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(sau_inputs())
@example((torch.tensor([-3e38, -3e38]), torch.tensor([0.0]), 0.5, False))  # grad_alpha overflows fp32
def test_fused_matches_reference_and_finite_stays_finite(inputs):
    x, alpha, n, zero_centred = inputs
    y = sau(x, alpha, n, zero_centred)
    assert y.dtype == x.dtype and y.shape == x.shape
    x64 = x.double()
    reference = sau_reference(x64, alpha.double(), n, zero_centred)
    finite = torch.isfinite(x64)
    assert torch.isfinite(y[finite]).all(), 'a finite input gave a non-finite output'
    if finite.any():
        # y = x*slope + gaussian: errors scale with |x| and with the Gaussian's height 1/n (and |x| for the
        # zero-centred variant, whose Gaussian term is multiplied by x).
        scale = reference[finite].abs() + x64[finite].abs() * (2 + alpha.abs().max().item()) + 1 / n
        assert ((y.double()[finite] - reference[finite]).abs() <= 4 * EPS[x.dtype] * scale).all()
    nan_in = torch.isnan(x64)
    assert torch.isnan(y.double()[nan_in]).all()
    assert (y.double()[x64 == math.inf] == math.inf).all()

    x_leaf = x.detach().requires_grad_()
    alpha_leaf = alpha.clone().requires_grad_()
    out = sau(x_leaf, alpha_leaf, n, zero_centred)
    grad_x, grad_alpha = torch.autograd.grad(out, (x_leaf, alpha_leaf), torch.ones_like(out))
    assert torch.isfinite(grad_x[finite]).all(), 'a finite input gave a non-finite gradient'
    if finite.all() and not zero_centred:
        # grad_alpha is a sum over elements: finite unless its exact value is beyond the dtype's range
        # (e.g. two elements of -3e38 with alpha = 0 sum to -6e38, which overflows fp32).
        x64 = x.detach().double()
        alpha64 = alpha.detach().double().requires_grad_()
        (exact,) = torch.autograd.grad(sau_reference(x64, alpha64, n, False).sum(), alpha64)
        representable = exact.abs() <= torch.finfo(alpha.dtype).max
        assert torch.isfinite(grad_alpha[representable]).all()
