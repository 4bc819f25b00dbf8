"""The Triton (GPU) kernels, run on CPU tensors by Triton's interpreter, against the reference formula.

On a machine with CUDA the same kernels are covered through the op in test_op.py.
"""
import os

import pytest
import torch

from op_cases import CASES, N, assert_matches_reference, make_input
from sau_core.op import dense_layout

if torch.cuda.is_available() or os.environ.get('TRITON_INTERPRET') != '1':
    pytest.skip('Triton runs compiled here (CUDA tensors go through the op in test_op.py); the interpreter '
                'tests need TRITON_INTERPRET=1 from conftest.py', allow_module_level=True)
triton_kernels = pytest.importorskip('sau_core.kernels.triton')


def run_kernels(x, alpha, n, grad_y, zero_centred, saved_is_output=False):
    """(y, grad_x, grad_alpha, grad_n); with saved_is_output, the in-place forward and the backward from y."""
    x, layout = dense_layout(x, alpha.numel())
    grad_y = torch.empty_like(x).copy_(grad_y)
    if saved_is_output:
        y = x.clone()
        triton_kernels.forward_(y, alpha, n, layout)
    else:
        y = triton_kernels.forward(x, alpha, n, zero_centred, layout)
    saved = y if saved_is_output else x
    grad_x = torch.empty_like(x)
    grad_alpha, grad_n = triton_kernels.backward(grad_y, saved, grad_x, alpha, n, zero_centred, saved_is_output,
                                                 layout, True, True)
    return y, grad_x, grad_alpha, grad_n


# More tiles than one program handles, with a ragged last tile, and per-channel rows split over tiles.
TRITON_CASES = dict(CASES, multi_tile_1d=((5 * triton_kernels.TILE_ELEMENTS + 3,), 1, lambda x: x),
                    wide_rows_per_channel=((2, 3, 4099), 3, lambda x: x))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('case', list(TRITON_CASES))
@pytest.mark.parametrize('zero_centred, saved_is_output', [(False, False), (True, False), (False, True)],
                         ids=['standard', 'zero_centred', 'inplace'])
def test_triton_kernels_match_reference(case, dtype, zero_centred, saved_is_output):
    shape, channels, make = TRITON_CASES[case]
    x = make_input(shape, dtype, 'cpu', make)
    param_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    alpha = torch.linspace(0.05, 0.3, channels, dtype=param_dtype)
    n = torch.tensor(N, dtype=param_dtype)
    grad_y = make_input(tuple(x.shape), dtype, 'cpu', lambda t: t, seed=1) * N
    outputs = run_kernels(x, alpha, n, grad_y, zero_centred, saved_is_output)
    assert outputs[0].dtype == dtype and outputs[1].dtype == dtype
    assert_matches_reference(outputs, x, alpha, n, grad_y, zero_centred, saved_is_output)


def test_triton_grad_alpha_is_deterministic():
    x = make_input((3, 4, 2050), torch.float32, 'cpu', lambda t: t)
    alpha = torch.full((4,), 0.15)
    n = torch.tensor(N)
    grad_y = make_input(tuple(x.shape), torch.float32, 'cpu', lambda t: t, seed=2)
    first = run_kernels(x, alpha, n, grad_y, False)
    second = run_kernels(x, alpha, n, grad_y, False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
