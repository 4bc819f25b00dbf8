"""The CPU kernels' out-of-band fast path: a vector with no lane in the band |n*x| < kLeakyBand (8 for float
compute, i.e. fp32/fp16/bf16 inputs; 10 for fp64) takes Leaky-ReLU math (y = x or alpha*x, slope 1 or alpha,
dSAU/dalpha = min(x, 0)); the Gaussian and erf terms it skips are below half an ulp of the compute dtype.

The op oracle of op_cases.py checks it here with n a fixed number (op_path differentiates n too, and a backward
that computes grad_n takes the full path), on the oracle's inputs and on inputs like batch-normalised features,
where nearly every vector takes the fast path; each CPU build runs this file in a subprocess."""
import math
import os
import re

import pytest
import torch

import sau_core
from op_cases import (CASES, NS, TOLERANCES, alpha_sets, check_against_reference, make_grad, make_input, param_dtype,
                      run_tests_under_isa)
from sau_core import sau

HEADER = os.path.join(os.path.dirname(sau_core.__file__), 'csrc', 'sau_cpu_kernel_impl.h')


def fixed_n_path(x, alpha, n, inplace=False):
    """``run`` for check_against_reference: sau() with n fixed (grad_n not computed, as SAU's buffer n)."""
    alpha = alpha.detach().requires_grad_()

    def run(grad_y):
        leaf = x.detach().clone().requires_grad_()
        h = leaf * 1 if inplace else leaf
        y = sau(h, alpha, n.detach(), inplace=inplace)
        if inplace:
            assert y is h, 'the in-place op ran out of place'
        if not y.numel():
            return y.detach(), torch.zeros_like(leaf), torch.zeros_like(alpha), None
        grad_x, grad_alpha = torch.autograd.grad(y, (leaf, alpha), grad_y)
        return y.detach(), grad_x, grad_alpha, None
    return run


def bn_like(shape, dtype, make, seed=0):
    """Standard normal inputs, like batch-normalised features: at n = 20000 (200) 0.03 % (3 %) of them are in the
    band, so most vectors take the fast path and a few have one lane in the band."""
    g = torch.Generator().manual_seed(seed)
    return make(torch.randn(shape, generator=g, dtype=torch.float64).to(dtype))


@pytest.mark.parametrize('inplace', [False, True], ids=['out_of_place', 'inplace'])
@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', list(TOLERANCES))
@pytest.mark.parametrize('case', [c for c in CASES if c != 'empty'])
def test_fast_path_matches_reference(case, dtype, n, inplace):
    shape, channels, make = CASES[case]
    n_tensor = torch.tensor(n, dtype=param_dtype(dtype))
    inputs = [make_input(shape, dtype, 'cpu', make, n=n)] + ([bn_like(shape, dtype, make)] if n >= 200 else [])
    for x in inputs:
        grad_y = make_grad(tuple(x.shape), dtype, 'cpu')
        for alpha in alpha_sets(channels, dtype, inplace=inplace).values():
            check_against_reference(fixed_n_path(x, alpha, n_tensor, inplace), x, alpha, n_tensor, grad_y,
                                    saved_is_output=inplace)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_out_of_band_vectors_are_leaky_relu(dtype):
    """Every lane out of the band: y, grad_x and grad_alpha are those of Leaky ReLU (computed in the compute
    dtype), to the rounding of the output."""
    band = 10.0 if dtype == torch.float64 else 8.0
    g = torch.Generator().manual_seed(0)
    n = 20000.0
    t = (band + 1 + 50 * torch.rand(4096, generator=g, dtype=torch.float64)) * torch.where(
        torch.rand(4096, generator=g) < 0.5, -1.0, 1.0)
    x = (t / n).to(dtype)
    alpha = torch.tensor([0.15], dtype=param_dtype(dtype), requires_grad=True)
    leaf = x.clone().requires_grad_()
    y = sau(leaf, alpha, n)
    grad_y = torch.randn(x.shape, generator=g, dtype=torch.float64).to(dtype)
    grad_x, grad_alpha = torch.autograd.grad(y, (leaf, alpha), grad_y)
    compute = param_dtype(dtype)
    xc, a = x.to(compute), alpha.detach().to(compute)
    assert torch.equal(y, torch.where(xc > 0, xc, a * xc).to(dtype))
    assert torch.equal(grad_x, (grad_y.to(compute) * torch.where(xc > 0, torch.ones_like(xc), a)).to(dtype))
    expected = (grad_y.double() * x.double().clamp(max=0)).sum()
    assert grad_alpha.double().sub(expected).abs() <= 1e-5 * (grad_y.double() * x.double()).abs().sum()


def test_nan_and_inf_lanes():
    """A NaN lane sends its vector down the full path (NaN propagates to grad_x as before); +-inf follow the
    asymptotes on either path."""
    n = 20000.0
    x = torch.full((64,), 1.0)
    x[::2] = -1.0
    x[5], x[6], x[7] = math.nan, math.inf, -math.inf
    alpha = torch.tensor([0.15], requires_grad=True)
    leaf = x.clone().requires_grad_()
    y = sau(leaf, alpha, n)
    (grad_x,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
    assert math.isnan(y[5]) and math.isnan(grad_x[5]) and y[6] == math.inf and y[7] == -math.inf
    assert grad_x[6] == 1 and grad_x[7] == pytest.approx(0.15)
    assert torch.equal(y[32:], torch.where(x[32:] > 0, x[32:], 0.15 * x[32:]))


def test_the_band_keeps_skipped_terms_below_half_an_ulp():
    """The header's bands and the alpha range its comment states: |1-a|/min(a, 1) * Q(band) < half an ulp,
    Q the normal upper tail (the largest term skipped, the slope's)."""
    header = open(HEADER).read()
    match = re.search(r'kLeakyBand = std::is_same_v<Acc, double> \? Acc\(([\d.]+)\) : Acc\(([\d.]+)\);', header)
    bands = {'double': float(match.group(1)), 'float': float(match.group(2))}
    assert bands == {'double': 10.0, 'float': 8.0}
    half_ulp = {'float': 2.0 ** -25, 'double': 2.0 ** -54}
    ranges = {'float': (2.2e-8, 4.7e7), 'double': (1.4e-7, 7.2e6)}
    for acc, band in bands.items():
        tail = math.erfc(band / math.sqrt(2)) / 2
        for a in (*ranges[acc], 0.01, 0.15, 1.0, 100.0):
            assert abs(1 - a) / min(a, 1) * tail < half_ulp[acc], (acc, a)


@pytest.mark.parametrize('isa', ['avx512', 'avx2', 'generic'])
def test_every_cpu_build_takes_the_fast_path_correctly(isa):
    run_tests_under_isa(isa, ['-k', 'not every_cpu_build', os.path.abspath(__file__)])
