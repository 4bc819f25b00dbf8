"""``sau(x, inplace=True)``: writes into x, saves only the output, and recovers x from it in backward."""
import math
import os

import pytest
import torch
from mmcv.cnn import ConvModule

import sau_core
import sau_core.mm  # noqa: F401  (registers SAU for ConvModule)
from op_cases import (CASES, N, NS, TOLERANCES, alpha_sets, check_against_reference, make_grad, make_input, op_path,
                      param_dtype)
from sau_core import SAU, sau
from sau_core import op
from sau_core.op import FP16_INPLACE_ALPHA_MIN, INPLACE_ALPHA_RANGE

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def inplace_and_grads(x, alpha, n, grad_y):
    """Runs the in-place op on a non-leaf copy of x; returns ((y, grad_x, grad_alpha, grad_n), ran_in_place);
    grad_n is None unless n requires grad."""
    leaf = x.detach().clone().requires_grad_()
    h = leaf * 1  # a non-leaf, as the output of a conv or norm layer is
    y = sau(h, alpha, n, inplace=True)
    grads = torch.autograd.grad(y, (leaf, alpha, n) if n.requires_grad else (leaf, alpha), grad_y)
    return (y.detach(), *grads, None)[:4], y is h


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('n', NS)
@pytest.mark.parametrize('dtype', list(TOLERANCES))
@pytest.mark.parametrize('case', [name for name in CASES if name != 'empty'])
def test_inplace_matches_reference(case, dtype, n, device):
    """The oracle of op_cases.py on the in-place op (x recovered from y in backward), at each alpha set within
    INPLACE_ALPHA_RANGE; op_path asserts that it did run in place."""
    shape, channels, make = CASES[case]
    x = make_input(shape, dtype, device, make, n=n)
    grad_y = make_grad(tuple(x.shape), dtype, device)
    n = torch.tensor(n, dtype=param_dtype(dtype), device=device)
    for alpha in alpha_sets(channels, dtype, inplace=True).values():
        alpha = alpha.to(device)
        check_against_reference(op_path(x, alpha, n, inplace=True), x, alpha, n, grad_y, saved_is_output=True)


# Worst relative error of dSAU/dx against the exact slope a + (1-a)*Phi(n*x), in ulp of x's dtype, over the
# alpha range (measured: 138, 84, 41 -> 6.6 with fp16's higher alpha minimum, 1; the out-of-place op itself:
# 80, 63, 0.5, 0.5).
SLOPE_ULP = {torch.float64: 200, torch.float32: 120, torch.float16: 10, torch.bfloat16: 2}


@pytest.mark.parametrize('dtype', list(SLOPE_ULP))
@pytest.mark.parametrize('alpha_value', ['min', 0.15, 0.9, 3.0, INPLACE_ALPHA_RANGE[1]])
def test_inverse_is_accurate_across_the_smooth_band(alpha_value, dtype):
    """Dense inputs over |n*x| <= 10, where backward recovers x by Halley steps, at the ends of the alpha
    range: dSAU/dx from the recovered x against the exact slope."""
    if alpha_value == 'min':
        alpha_value = FP16_INPLACE_ALPHA_MIN if dtype == torch.float16 else INPLACE_ALPHA_RANGE[0]
    x = torch.linspace(-10 / N, 10 / N, 4001, dtype=torch.float64).to(dtype)
    alpha = torch.tensor([alpha_value], dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                         requires_grad=True)
    (_, grad_x, grad_alpha, _), ran_in_place = inplace_and_grads(x, alpha, torch.tensor(N), torch.ones_like(x))
    assert ran_in_place and torch.isfinite(grad_alpha).all()
    exact = alpha_value + (1 - alpha_value) * torch.special.ndtr(x.double() * N)
    worst_ulp = ((grad_x.double() - exact).abs() / exact).max().item() / torch.finfo(dtype).eps
    assert worst_ulp < SLOPE_ULP[dtype]


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16, torch.float64])
def test_inplace_special_values(dtype):
    big = torch.finfo(dtype).max * 0.9
    x = torch.tensor([0.0, 1e4, -1e4, big, -big, math.inf, -math.inf, math.nan], dtype=dtype)
    alpha = torch.tensor([0.15], dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                         requires_grad=True)
    (y, grad_x, grad_alpha, _), ran_in_place = inplace_and_grads(x, alpha, torch.tensor(N), torch.ones_like(x))
    assert ran_in_place
    torch.testing.assert_close(y, sau(x, alpha.detach(), N), equal_nan=True, rtol=0, atol=0)
    finite = torch.isfinite(x)
    assert torch.isfinite(grad_x[finite]).all()
    assert grad_x[1].item() == 1.0 and grad_x[2].item() == pytest.approx(0.15, rel=1e-2)
    assert grad_x[5].item() == 1.0 and math.isnan(grad_x[7].item())


def test_only_the_output_is_saved_for_backward():
    x = torch.randn(64, 64, requires_grad=True)
    h = x * 1
    packed = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(t) or t, lambda t: t):
        y = SAU(num_parameters=64, inplace=True)(h)
    big = [t for t in packed if t.numel() > 64]
    assert y is h and len(big) == 1 and big[0].data_ptr() == h.data_ptr()


def saved_bytes(block, x):
    """Bytes of the tensors autograd keeps for the backward of block(x), each storage counted once."""
    storages = {}
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: storages.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()) and t,
            lambda t: t):
        block(x)
    return sum(storages.values())


def test_conv_norm_sau_block_keeps_as_much_as_inplace_relu():
    """The reason for the in-place path: MMCV's ConvModule asks every activation for inplace=True."""
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    sizes = {}
    for name, act_cfg in [('relu', dict(type='ReLU')), ('sau', dict(type='SAU')),
                          ('sau_out_of_place', dict(type='SAU', inplace=False))]:
        torch.manual_seed(0)
        blocks = torch.nn.Sequential(*[ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='BN'), act_cfg=act_cfg)
                                       for _ in range(3)])
        sizes[name] = saved_bytes(blocks, x)
    # Out of place, each SAU keeps its input while the next conv keeps its output: one more activation per
    # block but the last, whose output nothing here saves.
    activation = x.numel() * 4
    assert 0 <= sizes['sau'] - sizes['relu'] < 64  # the same tensors, plus the alphas
    assert sizes['sau_out_of_place'] - sizes['relu'] == pytest.approx(2 * activation, abs=64)


@pytest.mark.filterwarnings('ignore:in-place SAU')  # alpha's range: test_one_warning_per_layer_when_alpha_leaves...
@pytest.mark.parametrize('why, kwargs, make_input', [
    ('zero-centred form', dict(zero_centred=True), lambda leaf: leaf * 1),
    ('alpha 0 is not invertible', dict(alpha=0.0), lambda leaf: leaf * 1),
    ('alpha below the range', dict(alpha=INPLACE_ALPHA_RANGE[0] / 2), lambda leaf: leaf * 1),
    ('alpha above the range', dict(alpha=INPLACE_ALPHA_RANGE[1] * 2), lambda leaf: leaf * 1),
    ('fp16 alpha below its minimum', dict(alpha=FP16_INPLACE_ALPHA_MIN / 2), lambda leaf: leaf.half() * 1),
    ('leaf that requires grad', dict(), lambda leaf: leaf),
    ('view of a leaf that requires grad', dict(), lambda leaf: leaf[1:]),
    ('one of the views torch.chunk returns', dict(), lambda leaf: (leaf * 1).chunk(3)[0]),
    ('a view made under no_grad', dict(), lambda leaf: _view_under_no_grad(leaf * 1)),
])
def test_falls_back_to_out_of_place(why, kwargs, make_input):
    torch.manual_seed(0)
    module = SAU(inplace=True, **{k: v for k, v in kwargs.items() if k != 'alpha'})
    if 'alpha' in kwargs:
        module.alpha.data.fill_(kwargs['alpha'])
    leaf_x = torch.randn(3, 5, requires_grad=True)
    x = make_input(leaf_x)
    before = x.detach().clone()
    y = module(x)
    assert y is not x and torch.equal(x.detach(), before), why
    y.float().sum().backward()
    reference = SAU(inplace=False, **{k: v for k, v in kwargs.items() if k != 'alpha'})
    reference.alpha.data.copy_(module.alpha.data)
    other = leaf_x.detach().clone().requires_grad_()
    reference(make_input(other)).float().sum().backward()
    torch.testing.assert_close(leaf_x.grad, other.grad)
    torch.testing.assert_close(module.alpha.grad, reference.alpha.grad)


def _view_under_no_grad(x):
    with torch.no_grad():
        return x[1:]


@pytest.mark.parametrize('make_view', [
    lambda h: h[1:], lambda h: h.view(5, 3), lambda h: h.t(), lambda h: h[:, ::2],
    lambda h: torch.nn.functional.linear(h.view(3, 1, 5), torch.eye(5)),  # a 3-d Linear's output is a view
], ids=['slice', 'view', 'transpose', 'strided slice', 'linear 3-d'])
def test_a_plain_view_of_a_non_leaf_is_overwritten_with_the_same_gradients(make_view):
    """Autograd lets an in-place op write through a plain view (it rebases the base's history), so the in-place
    op runs there too (fairseq's FFN applies its activation to such a view) and the gradients reaching the leaf
    are those of the out-of-place op."""
    torch.manual_seed(0)
    leaf = torch.randn(3, 5, requires_grad=True)
    module = SAU(inplace=True)
    x = make_view(leaf * 1)
    y = module(x)
    assert y is x and y._version > 0
    (y.float() ** 2).sum().backward()
    other = leaf.detach().clone().requires_grad_()
    reference = SAU(inplace=False)
    (reference(make_view(other * 1)).float() ** 2).sum().backward()
    torch.testing.assert_close(leaf.grad, other.grad)
    torch.testing.assert_close(module.alpha.grad, reference.alpha.grad)


def test_non_dense_input_is_overwritten_too():
    base = torch.randn(4, 6, 5)
    x = base[:, ::2]  # not dense in memory: the kernel runs on a copy that is written back
    expected = sau(x.clone(), torch.full((3,), 0.2), N)
    assert sau(x, torch.full((3,), 0.2), N, inplace=True) is x
    torch.testing.assert_close(x, expected)
    torch.testing.assert_close(base[:, ::2], expected)


def test_overwriting_a_tensor_another_op_saved_is_reported_by_autograd():
    """The same contract as nn.ReLU(inplace=True): autograd's version counter catches misuse."""
    x = torch.randn(8, requires_grad=True)
    h = x * 1
    z = h.exp()  # exp saves its output ...
    sau(z, inplace=True)  # ... which SAU then overwrites
    with pytest.raises(RuntimeError, match='modified by an inplace operation'):
        z.sum().backward()


def test_torch_compile_uses_the_out_of_place_op(monkeypatch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), SAU(num_parameters=8, inplace=True),
                                torch.nn.Conv2d(8, 2, 1))
    x = torch.randn(2, 3, 10, 10)
    expected = model(x)
    expected.sum().backward()
    expected_grad = model[1].alpha.grad.clone()
    model.zero_grad()

    def refuse(*args):
        raise AssertionError('the in-place autograd.Function ran under torch.compile')
    monkeypatch.setattr(op._SAUInplace, 'apply', refuse)
    out = torch.compile(model, fullgraph=True, backend='aot_eager')(x)
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    torch.testing.assert_close(model[1].alpha.grad, expected_grad)


def test_double_backward_through_the_inplace_op_names_the_limitation():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = SAU(inplace=True).double()(x * 1)
    with pytest.raises(RuntimeError, match=r'double backward \(create_graph=True\) is not supported through the '
                                           r'in-place SAU.*SAU\(inplace=False\)'):
        torch.autograd.grad(y.sum(), x, create_graph=True)
    y = SAU(inplace=True).double()(x * 1)  # a plain backward still works
    (grad,) = torch.autograd.grad(y.sum(), x)
    assert torch.isfinite(grad).all()


def test_one_warning_per_layer_when_alpha_leaves_the_range(recwarn):
    import warnings
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), SAU(inplace=True), torch.nn.Linear(4, 4), SAU(inplace=True))
    assert sau_core.name_sau_layers(model, prefix='net') == ['net.1', 'net.3']
    model[1].alpha.data.fill_(INPLACE_ALPHA_RANGE[1] * 2)
    model[3].alpha.data.fill_(INPLACE_ALPHA_RANGE[0] / 2)
    warnings.simplefilter('always')
    for _ in range(3):
        model(torch.randn(2, 4))
    messages = [str(w.message) for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 2, messages
    assert "in-place SAU 'net.1': alpha left [0.01, 100] (min 200, max 200)" in messages[0]
    assert "in-place SAU 'net.3': alpha left [0.01, 100] (min 0.005, max 0.005)" in messages[1]
    assert 'keeps its input for backward' in messages[0]
    unnamed = SAU(inplace=True, num_parameters=3)
    unnamed.alpha.data.fill_(0.0)
    unnamed(torch.randn(2, 3) * 1)
    assert 'unnamed, 3 alphas; sau_core.name_sau_layers(model) names it' in str(recwarn[-1].message)


def test_the_fallback_warning_is_shown_on_rank_zero_only(monkeypatch, recwarn):
    import warnings
    monkeypatch.setenv('RANK', '1')
    module = SAU(inplace=True)
    module.alpha.data.fill_(0.0)
    warnings.simplefilter('always')
    module(torch.randn(3) * 1)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_cpu_and_triton_kernels_invert_with_the_same_band_and_steps():
    """The inverse's constants live in the C++ header and in the Triton module; they must agree."""
    import re
    header = open(os.path.join(os.path.dirname(sau_core.__file__), 'csrc', 'sau_cpu_kernel_impl.h')).read()
    band = float(re.search(r'kInvertBand = ([\d.]+)f;', header).group(1))
    steps = int(re.search(r'kHalleySteps = (\d+);', header).group(1))
    triton_kernels = pytest.importorskip('sau_core.kernels.triton')
    assert (band, steps) == (triton_kernels.INVERT_BAND.value, triton_kernels.HALLEY_STEPS.value) == (8.0, 4)
