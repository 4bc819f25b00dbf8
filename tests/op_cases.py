"""Inputs, layouts and the oracle shared by the op tests (CPU builds, in place, CUDA, Triton under the interpreter).

The oracle (:func:`check_against_reference`) compares one fused path with ``sau_core/reference.py`` evaluated in
fp64 on the same (rounded) inputs, element by element, separately inside the smooth band |n*x| < 8 and outside:

- y and grad_x, per element: ``|got - ref| <= atol + rtol * |ref| + term_rtol * terms``, where ``rtol`` is the
  rounding of the output dtype, ``atol`` its subnormal step, and ``terms`` the sum of the absolute values of the
  terms the formula adds at that element (the error any evaluation of the formula makes, e.g. where y crosses 0);
  ``term_rtol`` is the precision of the dtype the kernels compute in (fp32 for fp16/bf16).
- grad_alpha (per channel) and grad_n, reductions: ``|got - ref| <= reduce_rtol * sum_i |grad_y_i| * terms_i``
  over the elements reduced, i.e. scaled by the sum of |terms|, not by |sum| (which cancellation makes small);
  the band and the tails are reduced separately (grad_y is zero outside the part checked).
- fp16/bf16, in addition (the bound Liger-Kernel's tests use): the fused result's largest error against fp64 in
  each part is at most twice that of the eager formula evaluated in that dtype (plus the rounding bound of the output).
- In place, backward recovers x from y rounded to x's dtype: the tolerance adds the propagated error of that
  recovery, ``|d(gradient)/dx| * (atol + u * |y|) / slope``, with u the unit roundoff of x's dtype.

tests/test_op_oracle.py checks that this oracle rejects deliberately wrong variants of the op.
"""
import math
from typing import NamedTuple

import torch

from sau_core import sau_reference

N = 20000.0
NS = (1.0, 3.0, 200.0, 20000.0)  # the n every path is checked at (1/n is the Gaussian's standard deviation)
BAND = 8.0  # |n*x| < BAND: the smooth band; outside it SAU is x or alpha*x to 1e-10 relative
SQRT_2PI = math.sqrt(2 * math.pi)


class Tolerance(NamedTuple):
    rtol: float  # times |ref|: rounding of the output dtype (2 units of its roundoff)
    atol: float  # the output dtype's subnormal step
    term_rtol: float  # times the sum of |terms|: the precision of the dtype the kernels compute in
    reduce_rtol: float  # reductions: times sum |grad_y| * |terms|
    inplace_rtol: float  # in place: times the error propagated from recovering x from the rounded y


def _roundoff(dtype):
    return torch.finfo(dtype).eps / 2


def _subnormal_step(dtype):
    return torch.finfo(dtype).smallest_normal * torch.finfo(dtype).eps


# Measured worst cases over the tests (err / bound with the factor set to 1), see sau_core/README.md: the factors
# are those with a margin of about 4x. fp32's term_rtol covers the CPU kernels' erf (Abramowitz-Stegun 7.1.26,
# |error| < 1.5e-7 = 1.3 ulp of 1) and exp (a few ulp, amplified by t^2 near the band's edge).
TOLERANCES = {
    torch.float64: Tolerance(2 * _roundoff(torch.float64), _subnormal_step(torch.float64), 4e-15, 1e-14, 4),
    torch.float32: Tolerance(2 * _roundoff(torch.float32), _subnormal_step(torch.float32), 2e-6, 5e-7, 4),
    torch.float16: Tolerance(2 * _roundoff(torch.float16), _subnormal_step(torch.float16), 2e-6, 5e-7, 4),
    torch.bfloat16: Tolerance(2 * _roundoff(torch.bfloat16), _subnormal_step(torch.bfloat16), 2e-6, 5e-7, 4),
}

# Triton's interpreter converts fp32 to bf16 by truncation (GPUs round to nearest): up to 1 ulp, 2x the rounding.
TRITON_INTERPRETER_TOLERANCES = dict(TOLERANCES)
TRITON_INTERPRETER_TOLERANCES[torch.bfloat16] = TOLERANCES[torch.bfloat16]._replace(
    rtol=4 * _roundoff(torch.bfloat16))

# name -> (shape, channels, make): the layouts the kernels must handle
CASES = {
    'empty': ((0, 3), 3, lambda x: x),
    'one_element': ((1,), 1, lambda x: x),
    'prime_1d': ((7919,), 1, lambda x: x),
    'nchw_shared_alpha': ((2, 8, 5, 7), 1, lambda x: x),
    'nchw_per_channel': ((2, 8, 5, 7), 8, lambda x: x),
    'channels_last_per_channel': ((2, 8, 5, 7), 8, lambda x: x.to(memory_format=torch.channels_last)),
    'transposed_shared_alpha': ((13, 11), 1, lambda x: x.t()),
    'sliced_per_channel': ((3, 10, 9), 5, lambda x: x[:, ::2]),
    'matrix_per_channel': ((17, 31), 31, lambda x: x),
}


def param_dtype(dtype):
    """alpha's and n's dtype for an input dtype (as SAU's parameters are under autocast or .double())."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def alpha_sets(channels, dtype=torch.float32, inplace=False):
    """name -> alpha tensor: the paper's range (0.05..0.3) and a wide one (0.01..100; one shared alpha: 3)."""
    low = 0.05 if inplace and dtype == torch.float16 else 0.01  # sau_core.op.FP16_INPLACE_ALPHA_MIN
    wide = (torch.tensor([3.0], dtype=torch.float64) if channels == 1 else
            torch.logspace(math.log10(low), 2, channels, dtype=torch.float64).flip(0))
    return {'paper': torch.linspace(0.05, 0.3, channels, dtype=torch.float64).to(param_dtype(dtype)),
            'wide': wide.to(param_dtype(dtype))}


def make_input(shape, dtype, device, make, seed=0, n=N):
    """x = t/n with two thirds of t in the smooth band (uniform in (-8, 8), a few exact zeros) and a third in the
    tails (|t| log-uniform in 8..512, either sign; alpha*x stays within fp16 for alpha <= 100 at n >= 1), so that both parts hold many elements at every n."""
    g = torch.Generator().manual_seed(seed)
    count = math.prod(shape)
    t = (torch.rand(count, generator=g, dtype=torch.float64) * 2 - 1) * BAND
    tails = torch.rand(count, generator=g) < 1 / 3
    magnitude = BAND * 64 ** torch.rand(count, generator=g, dtype=torch.float64)
    t = torch.where(tails, torch.where(torch.rand(count, generator=g) < 0.5, -magnitude, magnitude), t)
    t[::97] = 0.0
    return make((t / n).reshape(shape).to(dtype=dtype, device=device))


def make_grad(shape, dtype, device, seed=1):
    """grad_y: standard normal (each sign; the reductions' terms do not all add up)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)


def _per_channel(values, alpha, x):
    """Sums of values (x's shape) per alpha: over everything for one alpha, else per index along dim 1."""
    if alpha.numel() == 1:
        return values.sum().reshape(1)
    return values.transpose(0, 1).reshape(alpha.numel(), -1).sum(1)


class Reference(NamedTuple):
    """The fp64 reference and the size of each term of the formula, per element (grad_y not applied)."""
    y: torch.Tensor
    grad_x: torch.Tensor
    grad_alpha: torch.Tensor
    grad_n: torch.Tensor
    y_terms: torch.Tensor
    dx_terms: torch.Tensor
    da_terms: torch.Tensor
    dn_terms: torch.Tensor
    slope: torch.Tensor
    sensitivity: tuple  # ((|f'|, |f''|) with respect to x) of dSAU/dx, dSAU/dalpha, dSAU/dn


def reference(x, alpha, n, grad_y, zero_centred=False):
    """sau_core/reference.py in fp64 on the same rounded inputs (autograd gives the gradients), with the sizes of
    the formula's terms: SAU = (1-a)*G + (1+a)/2*x + (1-a)/2*x*E with G = exp(-(n*x)^2/2)/(n*sqrt(2*pi)) and
    E = erf(n*x/sqrt(2)) (the zero-centred variant: (1-a)*x*G for the first term)."""
    x64, a64, n64 = (t.detach().to('cpu', torch.float64).requires_grad_() for t in (x, alpha, n))
    g64 = grad_y.detach().to('cpu', torch.float64)
    y = sau_reference(x64, a64, n64, zero_centred)
    if y.numel():
        grads = torch.autograd.grad(y, (x64, a64, n64), g64)
    else:
        grads = (torch.zeros_like(x64), torch.zeros_like(a64), torch.zeros_like(n64))
    x, n = x64.detach(), n64.detach()
    a = a64.detach()
    a = a.reshape([1, -1] + [1] * (x.dim() - 2)) if a.numel() > 1 else a.reshape(())
    t = n * x
    gauss = torch.exp(-t ** 2 / 2) / (n * SQRT_2PI)
    erf = torch.erf(t / math.sqrt(2))
    # exp(-t^2/2) carries the relative error of t^2 times t^2/2: its terms are conditioned by 1 + t^2.
    gauss_terms = gauss * (1 + t * t)
    slope = (1 + a) / 2 + (1 - a) / 2 * erf
    common_y = (1 + a).abs() / 2 * x.abs() + (1 - a).abs() / 2 * (x * erf).abs()
    common_dx = (1 + a).abs() / 2 + (1 - a).abs() / 2 * erf.abs()
    # dSAU/dn: the reference's autograd adds two terms of size (1-a)*t^2*G/n that cancel (closed form:
    # -(1-a)*G/n), so they count as terms too.
    if zero_centred:
        y_terms = (1 - a).abs() * x.abs() * gauss_terms + common_y
        dx_terms = common_dx + (1 - a).abs() * gauss_terms * (1 + n * n * (x.abs() + x * x))
        da_terms = x.abs() * (gauss_terms + 0.5 + erf.abs() / 2)
        dn_terms = (1 - a).abs() * (gauss_terms + 2 * t * t * gauss) * (n * x * x * (1 + x.abs()) + x.abs() / n)
    else:
        y_terms = (1 - a).abs() * gauss_terms + common_y
        dx_terms = common_dx
        da_terms = gauss_terms + x.abs() / 2 + (x * erf).abs() / 2
        dn_terms = (1 - a).abs() * (gauss_terms + 2 * t * t * gauss) / n
    # In place only (standard form): how the integrands of grad_x, grad_alpha and grad_n change with x (first and
    # second derivative magnitudes), to propagate the error of x recovered from y.
    sensitivity = (
        ((1 - a).abs() * n * n * gauss, (1 - a).abs() * n ** 3 * t.abs() * gauss),  # dSAU/dx = slope
        ((1 - erf) / 2, n * n * gauss),  # dSAU/dalpha
        ((1 - a).abs() * t.abs() * gauss, (1 - a).abs() * n * gauss * (1 - t * t).abs()),  # dSAU/dn
    )
    expand = lambda v: v.expand_as(x) if v.shape != x.shape else v  # noqa: E731
    return Reference(y.detach(), grads[0], grads[1], grads[2].reshape(()),
                     *(expand(v) for v in (y_terms, dx_terms, da_terms, dn_terms, slope)),
                     tuple(tuple(expand(v) for v in pair) for pair in sensitivity))


def _eager_low_precision(x, alpha, n, grad_y, zero_centred):
    """y and grad_x of the formula evaluated eagerly in x's dtype (fp16/bf16), for Liger-Kernel's bound."""
    dtype = x.dtype
    xl = x.detach().cpu().requires_grad_()
    y = sau_reference(xl, alpha.detach().cpu().to(dtype), n.detach().cpu().to(dtype), zero_centred)
    (grad_x,) = torch.autograd.grad(y, xl, grad_y.detach().cpu().to(dtype)) if y.numel() else (xl,)
    return y.detach().double(), grad_x.double()


class Report(dict):
    """What a check measured: (quantity, part) -> worst error / tolerance (1 = at the bound)."""


def _check_elementwise(failures, report, name, part, got, ref, bound, mask):
    if not mask.any():
        return
    err = (got.double().cpu() - ref).abs()
    bad = ~(err <= bound) & mask  # NaN counts as a failure
    ratio = torch.where(mask, err / bound, torch.zeros_like(err))
    ratio = torch.where(torch.isnan(ratio), torch.full_like(ratio, math.inf), ratio)
    report[(name, part)] = ratio.max().item()
    if bad.any():
        i = int(torch.argmax(torch.where(bad, ratio, torch.full_like(ratio, -1)).reshape(-1)))
        failures.append(f'{name} ({part}): {int(bad.sum())} of {int(mask.sum())} elements beyond the bound, worst '
                        f'at flat index {i}: got {got.reshape(-1)[i].item():.10g}, reference '
                        f'{ref.reshape(-1)[i].item():.10g}, |err| {err.reshape(-1)[i].item():.3g} > bound '
                        f'{bound.reshape(-1)[i].item():.3g}')


def _check_reduction(failures, report, name, part, got, ref, bound):
    got = got.double().cpu().reshape(ref.shape)
    err = (got - ref).abs()
    ratio = err / bound
    report[(name, part)] = ratio.max().item() if ratio.numel() else 0.0
    bad = ~(err <= bound)
    if bad.any():
        i = int(torch.argmax(torch.where(bad, ratio, torch.full_like(ratio, -1)).reshape(-1)))
        failures.append(f'{name} ({part}): {int(bad.sum())} of {bad.numel()} sums beyond the bound, worst at '
                        f'{i}: got {got.reshape(-1)[i].item():.10g}, reference {ref.reshape(-1)[i].item():.10g}, '
                        f'|err| {err.reshape(-1)[i].item():.3g} > bound {bound.reshape(-1)[i].item():.3g}')


def _check_liger(failures, report, name, part, got, ref, eager, mask, tol, dtype):
    """Liger-Kernel's bound for reduced precision: max error <= 2 x the eager formula's in that dtype."""
    mask = mask & torch.isfinite(eager)  # where the eager formula overflows, it bounds nothing
    if not mask.any():
        return
    fused_err = (got.double().cpu() - ref).abs()[mask].max().item()
    eager_err = (eager - ref).abs()[mask].max().item()
    bound = 2 * eager_err + tol.atol + tol.rtol * ref.abs()[mask].max().item()
    report[(name + ' vs eager', part)] = fused_err / bound
    if not fused_err <= bound:
        failures.append(f'{name} ({part}): largest error {fused_err:.3g} exceeds twice the eager {dtype} formula\'s '
                        f'({eager_err:.3g}) plus the rounding bound')


def check_against_reference(run, x, alpha, n, grad_y, zero_centred=False, saved_is_output=False, tolerances=None):
    """Checks one fused path against the fp64 reference; raises AssertionError listing every part out of bounds,
    and returns the :class:`Report` of worst error / tolerance ratios.

    ``run(grad_y) -> (y, grad_x, grad_alpha, grad_n)`` runs the path on the fixed inputs x, alpha, n with that
    output gradient (grad_n None when the path does not compute it). It is called twice, with grad_y kept inside
    the band and outside, so that each reduction is checked on each part. ``saved_is_output``: the path recovers
    x from y in backward (the in-place op)."""
    tol = (tolerances or TOLERANCES)[x.dtype]
    dtype = x.dtype
    ref = reference(x, alpha, n, grad_y, zero_centred)
    x64 = x.detach().cpu().double()
    g64 = grad_y.detach().cpu().double()
    in_band = (x64 * n.detach().cpu().double()).abs() < BAND
    parts = {'inside the band': in_band, 'outside the band': ~in_band}
    u = _roundoff(dtype)
    recovery = [0.0, 0.0, 0.0]
    if saved_is_output:
        # x recovered from y as stored: y's error (its rounding, and the kernels' error on its terms) over the
        # slope, propagated to first and second order into each gradient's integrand.
        compute_u = _roundoff(torch.float64 if dtype == torch.float64 else torch.float32)
        dx = tol.inplace_rtol * (tol.atol + u * ref.y.abs() + compute_u * ref.y_terms) / ref.slope.abs()
        recovery = [first * dx + second * dx * dx / 2 for first, second in ref.sensitivity]
    failures, report = [], Report()
    eager = _eager_low_precision(x, alpha, n, grad_y, zero_centred) if dtype in (torch.float16,
                                                                                 torch.bfloat16) else None
    y_bound = tol.atol + tol.rtol * ref.y.abs() + tol.term_rtol * ref.y_terms
    for part, mask in parts.items():
        g_part = torch.where(mask, g64, torch.zeros_like(g64)).to(grad_y.dtype).to(grad_y.device)
        g_part64 = g_part.cpu().double()
        y, grad_x, grad_alpha, grad_n = run(g_part)
        assert y.dtype == dtype and y.shape == x.shape and grad_x.dtype == dtype and grad_x.shape == x.shape
        part_ref = reference(x, alpha, n, g_part, zero_centred)
        _check_elementwise(failures, report, 'y', part, y, ref.y, y_bound, mask)
        gx_bound = (tol.atol + tol.rtol * part_ref.grad_x.abs()
                    + g_part64.abs() * (tol.term_rtol * ref.dx_terms + recovery[0]))
        _check_elementwise(failures, report, 'grad_x', part, grad_x, part_ref.grad_x, gx_bound, mask)
        if eager is not None:
            _check_liger(failures, report, 'y', part, y, ref.y, eager[0], mask, tol, dtype)
            eager_gx = _eager_low_precision(x, alpha, n, g_part, zero_centred)[1]
            _check_liger(failures, report, 'grad_x', part, grad_x, part_ref.grad_x, eager_gx, mask, tol, dtype)
        tiny = torch.finfo(torch.float64).tiny
        a_bound = _per_channel(g_part64.abs() * (tol.reduce_rtol * ref.da_terms + recovery[1]),
                               alpha, x64) + tiny
        _check_reduction(failures, report, 'grad_alpha', part, grad_alpha, part_ref.grad_alpha, a_bound)
        if grad_n is not None:
            n_bound = (g_part64.abs() * (tol.reduce_rtol * ref.dn_terms + recovery[2])).sum() + tiny
            _check_reduction(failures, report, 'grad_n', part, grad_n, part_ref.grad_n, n_bound)
    if failures:
        raise AssertionError(f'{dtype}, n={n.item():g}, alpha {alpha.min().item():.3g}..{alpha.max().item():.3g}'
                             + (', in place' if saved_is_output else '') + ':\n' + '\n'.join(failures))
    return report


def op_path(x, alpha, n, zero_centred=False, inplace=False):
    """``run`` for :func:`check_against_reference` through the public op: sau() and autograd, grads of x, alpha
    and n. In place, x is first copied into a non-leaf (as a conv or norm layer's output is); asserts that the
    op did run in place."""
    from sau_core import sau

    alpha = alpha.detach().requires_grad_()
    n = n.detach().requires_grad_()

    def run(grad_y):
        leaf = x.detach().clone().requires_grad_()
        h = leaf * 1 if inplace else leaf
        y = sau(h, alpha, n, zero_centred, inplace=inplace)
        if inplace:
            assert y is h, 'the in-place op ran out of place'
        if not y.numel():
            return y.detach(), torch.zeros_like(leaf), torch.zeros_like(alpha), torch.zeros_like(n)
        grad_x, grad_alpha, grad_n = torch.autograd.grad(y, (leaf, alpha, n), grad_y)
        return y.detach(), grad_x, grad_alpha, grad_n
    return run


def run_tests_under_isa(isa, pytest_args, timeout=900):
    """Run ``pytest pytest_args`` in a subprocess with the CPU kernels' ``isa`` build (``SAU_CORE_CPU_ISA``);
    skips when it is the build this process runs or one this CPU cannot run. Asserts that every selected test
    passed and none was skipped."""
    import os
    import subprocess
    import sys

    import pytest
    from sau_core.kernels import cpu
    if isa == cpu.isa():
        pytest.skip(f'{isa} is the build this process runs')
    env = dict(os.environ, SAU_CORE_CPU_ISA=isa)
    probe = subprocess.run([sys.executable, '-c', 'from sau_core.kernels import cpu; print(cpu.isa())'],
                           env=env, capture_output=True, text=True)
    if 'this CPU lacks' in probe.stderr:
        pytest.skip(f'this CPU cannot run the {isa} build')
    assert probe.stdout.strip() == isa, probe.stderr[-2000:]
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *pytest_args],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert ' passed' in proc.stdout.strip().splitlines()[-1] and 'skipped' not in proc.stdout.splitlines()[-1]
