"""The fused SAU op against the reference formula: values, gradients, layouts, dtypes, special values."""
import math
import os

import pytest
import torch

from op_cases import (CASES, N, NS, TOLERANCES, alpha_sets, check_against_reference, make_grad, make_input, op_path,
                      param_dtype, run_tests_under_isa)
from sau_core import SAU, sau, sau_reference
from sau_core.op import dense_layout

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', list(TOLERANCES))
@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('zero_centred', [False, True])
def test_forward_and_gradients_match_reference(case, dtype, n, device, zero_centred):
    """The oracle of op_cases.py (per element, inside and outside the band) for y, grad_x, grad_alpha and grad_n,
    at each alpha set."""
    shape, channels, make = CASES[case]
    x = make_input(shape, dtype, device, make, n=n)
    grad_y = make_grad(tuple(x.shape), dtype, device)
    n = torch.tensor(n, dtype=param_dtype(dtype), device=device)
    for alpha in alpha_sets(channels, dtype).values():
        alpha = alpha.to(device)
        assert sau(x, alpha, n, zero_centred).dtype == dtype
        check_against_reference(op_path(x, alpha, n, zero_centred), x, alpha, n, grad_y, zero_centred)


@pytest.mark.parametrize('zero_centred', [False, True])
@pytest.mark.parametrize('channels', [1, 3])
def test_gradcheck_fp64(channels, zero_centred):
    # n = 2 keeps the inputs inside the smooth region, where every term of the gradient matters.
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    alpha = torch.linspace(0.1, 0.4, channels, dtype=torch.float64).requires_grad_()
    n = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: sau(*a, zero_centred=zero_centred), (x, alpha, n))


@pytest.mark.parametrize('zero_centred', [False, True])
@pytest.mark.parametrize('channels', [1, 3])
def test_double_backward_gradgradcheck_fp64(channels, zero_centred):
    """create_graph=True: the backward differentiates the reference formula in eager PyTorch (sau_core/op.py)."""
    x = torch.randn(2, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    alpha = torch.linspace(0.1, 0.4, channels, dtype=torch.float64).requires_grad_()
    n = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda *a: sau(*a, zero_centred=zero_centred), (x, alpha, n))


def test_double_backward_of_a_half_input_is_computed_in_fp32():
    x = torch.randn(16, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).requires_grad_()
    (grad_x,) = torch.autograd.grad(sau(x, 0.2, 3.0).sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(grad_x.sum(), x)
    x64 = x.detach().double().requires_grad_()
    (ref_grad,) = torch.autograd.grad(sau_reference(x64, 0.2, 3.0).sum(), x64, create_graph=True)
    (ref_second,) = torch.autograd.grad(ref_grad.sum(), x64)
    assert grad_x.dtype == second.dtype == torch.bfloat16
    torch.testing.assert_close(second.double(), ref_second, rtol=2 ** -7, atol=1e-6)


def test_n_at_most_zero_is_rejected_without_a_host_read_under_compile():
    """Eager CPU tensors are read (no device sync on CPU); elsewhere, and under torch.compile, the check is
    torch._assert_async, which raises when the graph runs."""
    compiled = torch.compile(lambda x, n: sau(x, 0.2, n), fullgraph=True, backend='aot_eager')
    x = torch.randn(5)
    torch.testing.assert_close(compiled(x, torch.tensor(3.0)), sau(x, 0.2, 3.0))
    with pytest.raises(RuntimeError, match='n > 0'):
        compiled(x, torch.tensor(-1.0))
    with pytest.raises(ValueError, match='n > 0'):
        sau(x, 0.2, torch.tensor(0.0))


@pytest.mark.parametrize('zero_centred', [False, True])
def test_closed_form_is_leaky_relu_convolved_with_gaussian(zero_centred):
    """SAU is Leaky ReLU convolved with N(0, 1/n^2); check the closed form by numerical integration."""
    integrate = pytest.importorskip('scipy.integrate')
    a, n = 0.15, 3.0

    def convolution(x):
        gaussian = lambda y: n / math.sqrt(2 * math.pi) * math.exp(-(n * y) ** 2 / 2)
        leaky = lambda u: u if u >= 0 else a * u
        return integrate.quad(lambda y: leaky(x - y) * gaussian(y), -12 / n, 12 / n, points=[x],
                              epsabs=1e-13, epsrel=1e-12)[0]

    points = torch.tensor([-1.5, -0.2, 0.0, 0.1, 0.7, 2.0], dtype=torch.float64)
    expected = torch.tensor([convolution(v) for v in points.tolist()], dtype=torch.float64)
    if zero_centred:  # the variant multiplies the Gaussian term (the convolution's value at 0) by x
        gaussian_term = (1 - a) / (n * math.sqrt(2 * math.pi)) * torch.exp(-(n * points) ** 2 / 2)
        expected = expected - gaussian_term + gaussian_term * points
    torch.testing.assert_close(sau_reference(points, a, n, zero_centred), expected, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(sau(points, a, n, zero_centred), expected, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_special_values_behave_like_gelu(dtype, device):
    """Large inputs follow the Leaky ReLU asymptotes, inf stays inf, NaN propagates, finite gives finite
    (GELU's contract; torch's own CPU GELU gives NaN for inf on some instruction sets)."""
    big = torch.finfo(dtype).max * 0.9
    x = torch.tensor([0.0, 1e4, -1e4, big, -big, math.inf, -math.inf, math.nan], dtype=dtype, device=device)
    x.requires_grad_()
    alpha = torch.tensor([0.15], dtype=torch.float64 if dtype == torch.float64 else torch.float32, device=device)
    y = sau(x, alpha, N)
    y.backward(torch.ones_like(y))
    finite = torch.isfinite(x.detach())
    assert torch.isfinite(y[finite]).all() and torch.isfinite(x.grad[finite]).all()
    assert y[0].item() > 0  # the Gaussian bump at 0, (1-a)/(n*sqrt(2*pi)), is representable even in fp16
    expected = torch.tensor([1e4, -0.15 * 1e4, big, -0.15 * big], dtype=torch.float64)
    torch.testing.assert_close(y[1:5].double(), expected, rtol=TOLERANCES[dtype][0] * 2, atol=0)
    assert y[5].item() == math.inf and y[6].item() == -math.inf and math.isnan(y[7].item())


def test_fp32_alpha_with_half_input_under_autocast():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), SAU(num_parameters=32), torch.nn.Linear(32, 4))
    x = torch.randn(8, 16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and model[1].alpha.dtype == torch.float32
    out.float().pow(2).mean().backward()
    assert model[1].alpha.grad.dtype == torch.float32
    assert torch.isfinite(model[1].alpha.grad).all() and model[1].alpha.grad.abs().sum() > 0


def test_gradients_are_deterministic_across_runs_and_thread_counts():
    x = make_input((4, 16, 33, 35), torch.float32, 'cpu', lambda t: t).requires_grad_()
    alpha = torch.full((16,), 0.15, requires_grad=True)
    grad_y = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    threads = torch.get_num_threads()
    results = []
    try:
        for num_threads in (1, 2, 1):
            torch.set_num_threads(num_threads)
            results.append(torch.autograd.grad(sau(x, alpha, N), (x, alpha), grad_y))
    finally:
        torch.set_num_threads(threads)
    for grad_x, grad_alpha in results[1:]:
        assert torch.equal(grad_x, results[0][0]) and torch.equal(grad_alpha, results[0][1])


def test_only_the_input_is_saved_for_backward():
    x = torch.randn(64, 64, requires_grad=True)
    module = SAU(num_parameters=64)
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        module(x)
    big = [t for t in packed if t.numel() > 64]
    assert len(big) == 1 and big[0].data_ptr() == x.data_ptr(), [tuple(t.shape) for t in packed]


def test_one_op_namespace_with_a_kernel_per_device():
    """sau_core's ops are torch.library ops of one namespace; CPU kernels come from the C++ extension, CUDA kernels
    from sau_core/op.py (the Triton launchers, imported on first call)."""
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    for name in ('sau', 'sau_backward', '_sau_inplace'):
        for key in ('CPU', 'CUDA', 'Meta'):
            assert has_kernel(f'sau_core::{name}', key), (name, key)
    assert has_kernel('sau_core::sau', 'Autograd')
    assert torch.ops.sau_core._cpu_isa() in ('avx512', 'avx2', 'generic')
    assert not any('sau_core_cpu' in op for op in torch._C._dispatch_get_all_op_names())


@pytest.mark.parametrize('make', [lambda t: t, lambda t: t.to(memory_format=torch.channels_last)])
def test_output_keeps_the_input_memory_format(make):
    x = make(torch.randn(2, 4, 3, 5))
    y = sau(x, torch.full((4,), 0.2), N)
    assert y.stride() == x.stride()


@pytest.mark.parametrize('channels', [1, 4])
def test_opcheck(channels):
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64, requires_grad=True)
    alpha = torch.full((channels,), 0.2, dtype=torch.float64, requires_grad=True)
    n = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.sau_core.sau.default, (x, alpha, n, False))
    torch.library.opcheck(torch.ops.sau_core.sau_backward.default,
                          (torch.randn_like(x), x.detach(), alpha.detach(), n.detach(), False, False, True, True))
    torch.library.opcheck(torch.ops.sau_core.sau_backward.default,
                          (torch.randn_like(x), x.detach(), alpha.detach(), n.detach(), False, True, True, True))


def test_torch_compile_fullgraph_has_no_graph_break():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), SAU(num_parameters=8), torch.nn.Conv2d(8, 2, 1))
    x = torch.randn(2, 3, 10, 10)
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    expected = model(x)
    out = compiled(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert model[1].alpha.grad is not None and torch.isfinite(model[1].alpha.grad).all()


def test_dense_layout_views_without_copies():
    x = torch.randn(2, 8, 5, 7)
    assert dense_layout(x, 8)[1] == (16, 35, False) and dense_layout(x, 8)[0] is x
    cl = x.to(memory_format=torch.channels_last)
    assert dense_layout(cl, 8)[1] == (70, 8, True) and dense_layout(cl, 8)[0] is cl
    transposed = x.transpose(1, 3)  # dense in memory, so used in place for a shared alpha
    used, layout = dense_layout(transposed, 1)
    assert used is transposed and layout == (1, x.numel(), False)
    assert dense_layout(torch.randn(5, 3), 3)[1] == (5, 3, True)


@pytest.mark.parametrize('isa', ['avx512', 'avx2', 'generic'])
def test_every_cpu_build_of_the_kernels_matches_the_reference(isa):
    """The tests above run the build this CPU picks; each other build runs them in a subprocess."""
    tests = os.path.dirname(os.path.abspath(__file__))
    run_tests_under_isa(isa, ['-k', '(match_reference or matches_reference or smooth_band or inplace_special or '
                              'special_values or deterministic or gradcheck) and not every_cpu_build',
                              os.path.join(tests, 'test_op.py'), os.path.join(tests, 'test_op_inplace.py')],
                        timeout=600)
