"""Mutation tests of the oracle (op_cases.check_against_reference): deliberately wrong variants of the op, fed to
the same check, must each be rejected; a check that passes a mutant fails here.

The formula mutants are a faithful implementation of the op in Python (closed forms of SAU, dSAU/dx, dSAU/dalpha
and dSAU/dn evaluated in fp64, rounded to the dtypes the kernels return) with one deliberate error each; the
unmutated implementation passes the check (the control). The Halley mutant is the real Triton kernel, run by
Triton's interpreter, with its module constant HALLEY_STEPS lowered from 4 (the C++ kHalleySteps, which
test_op_inplace.py ties it to) to 3: the in-place backward recovers x one Halley step short.
"""
import math
import os

import pytest
import torch

from op_cases import (CASES, NS, TOLERANCES, TRITON_INTERPRETER_TOLERANCES, alpha_sets, check_against_reference,
                      make_grad, make_input, param_dtype)
from sau_core.op import dense_layout

SQRT_2PI = math.sqrt(2 * math.pi)
DTYPES = list(TOLERANCES)


def formula_path(x, alpha, n, mutation=None):
    """``run`` for check_against_reference: the standard form's closed forms in fp64 (alpha per channel along dim 1
    of an NCHW-contiguous x), with ``mutation`` applied."""
    x64 = x.double()
    a = alpha.double().reshape([1, -1] + [1] * (x.dim() - 2)) if alpha.numel() > 1 else alpha.double().reshape(())
    n64 = n.double()
    t = n64 * x64
    gauss = torch.exp(-t * t / 2) / (n64 * SQRT_2PI)
    erf = torch.tanh(t / math.sqrt(2)) if mutation == 'tanh_for_erf' else torch.erf(t / math.sqrt(2))
    y = (1 - a) * gauss + (1 + a) / 2 * x64 + (1 - a) / 2 * x64 * erf
    slope = (1 + a) / 2 + (1 - a) / 2 * erf  # dSAU/dx
    if mutation == 'slope_1pct_in_band':
        slope = torch.where(t.abs() < 8, slope * 1.01, slope)
    d_alpha = x64 / 2 * (1 - erf) - gauss  # dSAU/dalpha
    if mutation == 'no_gauss_in_dalpha':
        d_alpha = x64 / 2 * (1 - erf)
    d_n = -(1 - a) * gauss / n64  # dSAU/dn

    def run(grad_y):
        g = grad_y.double()
        terms = g * d_alpha
        if alpha.numel() == 1:
            grad_alpha = terms.sum().reshape(1)
        elif mutation == 'grad_alpha_wrong_axis':  # rows of the (N*C, HW) matrix grouped as (C, N), not (N, C)
            grad_alpha = terms.reshape(x.shape[0] * x.shape[1], -1).sum(1).reshape(x.shape[1], x.shape[0]).sum(1)
        else:
            grad_alpha = terms.transpose(0, 1).reshape(alpha.numel(), -1).sum(1)
        return (y.to(x.dtype), (g * slope).to(x.dtype), grad_alpha.to(alpha.dtype),
                (g * d_n).sum().to(n.dtype))
    return run


FORMULA_MUTANTS = ['no_gauss_in_dalpha', 'slope_1pct_in_band', 'tanh_for_erf', 'grad_alpha_wrong_axis']


def inputs(dtype, n, alpha_set, case='nchw_per_channel', inplace=False):
    shape, channels, make = CASES[case]
    x = make_input(shape, dtype, 'cpu', make, n=n)
    alpha = alpha_sets(channels, dtype, inplace=inplace)[alpha_set]
    return x, alpha, torch.tensor(n, dtype=param_dtype(dtype)), make_grad(tuple(x.shape), dtype, 'cpu')


@pytest.mark.parametrize('alpha_set', ['paper', 'wide'])
@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', DTYPES)
def test_the_unmutated_formula_passes(dtype, n, alpha_set):
    """The control: without a mutation, the Python implementation passes, so a rejection below is the mutant's."""
    x, alpha, n, grad_y = inputs(dtype, n, alpha_set)
    check_against_reference(formula_path(x, alpha, n), x, alpha, n, grad_y)


@pytest.mark.parametrize('alpha_set', ['paper', 'wide'])
@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('mutation', FORMULA_MUTANTS)
def test_the_oracle_rejects_each_formula_mutant(mutation, dtype, n, alpha_set):
    x, alpha, n, grad_y = inputs(dtype, n, alpha_set)
    with pytest.raises(AssertionError) as rejected:
        check_against_reference(formula_path(x, alpha, n, mutation), x, alpha, n, grad_y)
    expected = {'no_gauss_in_dalpha': 'grad_alpha (inside the band)', 'slope_1pct_in_band': 'grad_x (inside the band)',
                'tanh_for_erf': 'y (inside the band)', 'grad_alpha_wrong_axis': 'grad_alpha'}[mutation]
    assert expected in str(rejected.value), str(rejected.value)


def _triton_inplace_path(kernels, x, alpha, n):
    def run(grad_y):
        dense, layout = dense_layout(x, alpha.numel())
        y = dense.clone()
        kernels.forward_(y, alpha, n, layout)
        grad_x = torch.empty_like(dense)
        grad_alpha, grad_n = kernels.backward(torch.empty_like(dense).copy_(grad_y), y, grad_x, alpha, n, False,
                                              True, layout, True, True)
        return y, grad_x, grad_alpha, grad_n
    return run


# Where one step fewer still reaches the dtype's precision the mutant is not wrong, so it is checked where 4 steps
# are needed: at the ends of INPLACE_ALPHA_RANGE in fp64 and fp32 (measured: fp64 rejects 3 steps for alpha <= 0.05
# and >= 30, fp32 at 0.01 and 100, bf16 nowhere; 4 steps pass everywhere).
HALLEY_CASES = [(dtype, n, alpha) for dtype in (torch.float64, torch.float32) for n in NS for alpha in (0.01, 100.0)]


@pytest.mark.skipif(torch.cuda.is_available() or os.environ.get('TRITON_INTERPRET') != '1',
                    reason="runs the Triton kernels in Triton's interpreter (TRITON_INTERPRET=1, from conftest.py)")
@pytest.mark.parametrize('dtype, n, alpha', HALLEY_CASES)
def test_the_oracle_rejects_the_inverse_one_halley_step_short(dtype, n, alpha, monkeypatch):
    kernels = pytest.importorskip('sau_core.kernels.triton')
    tl = pytest.importorskip('triton.language')
    x, _, n, grad_y = inputs(dtype, n, 'paper', case='prime_1d', inplace=True)
    alpha = torch.tensor([alpha], dtype=param_dtype(dtype))
    run = _triton_inplace_path(kernels, x, alpha, n)
    tolerances = TRITON_INTERPRETER_TOLERANCES
    check_against_reference(run, x, alpha, n, grad_y, saved_is_output=True, tolerances=tolerances)  # control
    assert kernels.HALLEY_STEPS.value == 4
    monkeypatch.setattr(kernels, 'HALLEY_STEPS', tl.constexpr(3))
    with pytest.raises(AssertionError, match=r'grad_x \(inside the band\)'):
        check_against_reference(run, x, alpha, n, grad_y, saved_is_output=True, tolerances=tolerances)
