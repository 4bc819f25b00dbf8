"""The Triton (GPU) kernels, run on CPU tensors by Triton's interpreter, against the reference formula.

On a machine with CUDA the same kernels are covered through the op in test_op.py.
"""
import os

import pytest
import torch

from op_cases import (CASES, N, NS, TRITON_INTERPRETER_TOLERANCES, alpha_sets, check_against_reference, make_grad,
                      make_input, param_dtype)
from sau_core.op import dense_layout

if torch.cuda.is_available() or os.environ.get('TRITON_INTERPRET') != '1':
    pytest.skip('Triton runs compiled here (CUDA tensors go through the op in test_op.py); the interpreter '
                'tests need TRITON_INTERPRET=1 from conftest.py', allow_module_level=True)
triton_kernels = pytest.importorskip('sau_core.kernels.triton')


def kernels_path(x, alpha, n, zero_centred, saved_is_output=False):
    """``run`` for check_against_reference: the Triton launchers called directly, as the CUDA op calls them."""
    return lambda grad_y: run_kernels(x, alpha, n, grad_y, zero_centred, saved_is_output)


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
# Every n on the layouts of CASES, the two tiling cases (slow in the interpreter) at the paper's n; one alpha set
# per n, alternating, to keep the interpreter's time down (the CPU tests check every pair).
CASES_AND_NS = [(case, n) for case in CASES for n in NS] + [(case, N) for case in TRITON_CASES if case not in CASES]
ALPHA_SET = {1.0: 'wide', 3.0: 'paper', 200.0: 'wide', 20000.0: 'paper'}


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize('case, n', CASES_AND_NS)
@pytest.mark.parametrize('zero_centred, saved_is_output', [(False, False), (True, False), (False, True)],
                         ids=['standard', 'zero_centred', 'inplace'])
def test_triton_kernels_match_reference(case, dtype, n, zero_centred, saved_is_output):
    """The oracle of op_cases.py (in place: alphas within INPLACE_ALPHA_RANGE)."""
    shape, channels, make = TRITON_CASES[case]
    x = make_input(shape, dtype, 'cpu', make, n=n)
    grad_y = make_grad(tuple(x.shape), dtype, 'cpu')
    n = torch.tensor(n, dtype=param_dtype(dtype))
    alpha = alpha_sets(channels, dtype, inplace=saved_is_output)[ALPHA_SET[n.item()]]
    check_against_reference(kernels_path(x, alpha, n, zero_centred, saved_is_output), x, alpha, n, grad_y,
                            zero_centred, saved_is_output, tolerances=TRITON_INTERPRETER_TOLERANCES)


def test_triton_grad_alpha_is_deterministic():
    x = make_input((3, 4, 2050), torch.float32, 'cpu', lambda t: t)
    alpha = torch.full((4,), 0.15)
    n = torch.tensor(N)
    grad_y = make_grad(tuple(x.shape), torch.float32, 'cpu', seed=2)
    first = run_kernels(x, alpha, n, grad_y, False)
    second = run_kernels(x, alpha, n, grad_y, False)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('case', ['nchw_per_channel', 'channels_last_per_channel', 'sliced_per_channel',
                                  'transposed_shared_alpha'])
@pytest.mark.parametrize('inplace', [False, True], ids=['out_of_place', 'inplace'])
def test_the_kernels_registered_for_cuda_match_reference(case, dtype, inplace):
    """The functions sau_core.op registers as the ops' CUDA kernels (layout, strided gradients, dtypes of the
    reduced gradients), called on CPU tensors: the same launchers under the interpreter."""
    from sau_core import op
    shape, channels, make = CASES[case]
    x = make_input(shape, dtype, 'cpu', make)
    alpha = alpha_sets(channels, dtype, inplace=inplace)['paper']
    n = torch.tensor(N, dtype=param_dtype(dtype))
    grad_y = make_grad(tuple(x.shape), dtype, 'cpu')

    def run(grad_y):
        grad_y = grad_y.transpose(0, -1).contiguous().transpose(0, -1)  # other strides than x's: copied once
        if inplace:
            y = x.clone()
            op._sau_inplace_cuda(y, alpha, n)
        else:
            y = op._sau_cuda(x, alpha, n, False)
        grad_x, grad_alpha, grad_n = op._sau_backward_cuda(grad_y, y if inplace else x, alpha, n, False, inplace,
                                                           True, True)
        assert grad_alpha.dtype == alpha.dtype and grad_n.dtype == n.dtype and grad_n.shape == ()
        return y, grad_x, grad_alpha, grad_n
    check_against_reference(run, x, alpha, n, grad_y, saved_is_output=inplace,
                            tolerances=TRITON_INTERPRETER_TOLERANCES)
