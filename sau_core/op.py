"""The fused SAU op: ``torch.ops.sau_core.sau``, a ``torch.library`` custom op with autograd and fake kernels.

``sau`` validates its arguments, the custom op picks the backend from ``x.device`` on every call (so
``module.to(device)`` just works) and saves only its inputs for backward: the backward kernel recomputes the
Gaussian and erf terms instead of storing them.

``sau(x, inplace=True)`` overwrites ``x`` and saves only the output, as ``nn.ReLU(inplace=True)`` does, so that
a conv-norm-activation block keeps one tensor instead of two: SAU is strictly increasing for alpha > 0, and the
backward kernel recovers x from SAU(x). ``torch.library`` gives no autograd to mutating custom ops, so this
path is an ``autograd.Function`` around the same kernels.
"""
import importlib
import math
from typing import NamedTuple

import torch
from torch import Tensor

_BACKENDS = {'cpu': 'sau_core.kernels.cpu', 'cuda': 'sau_core.kernels.triton'}


class Layout(NamedTuple):
    """How the kernels see a dense tensor: a rows x cols matrix in memory order, with alpha indexed
    by column (channels innermost) or by ``row % channels``."""
    rows: int
    cols: int
    channel_on_cols: bool


def is_dense(x):
    """True when x's elements fill one block of memory in some order (a permuted contiguous tensor)."""
    expected = 1
    for stride, size in sorted((st, sz) for sz, st in zip(x.shape, x.stride()) if sz != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def dense_layout(x, channels):
    """``x`` (copied only when it is not dense in memory, or per-channel in an unsupported order) and its
    :class:`Layout`. Contiguous (NCHW) and channels_last inputs are used as they are."""
    if channels == 1:
        x = x if x.numel() == 0 or is_dense(x) else x.contiguous()
        return x, Layout(1, x.numel(), False)
    if x.dim() > 2 and not x.is_contiguous() and x.movedim(1, -1).is_contiguous():  # channels_last
        return x, Layout(x.numel() // channels, channels, True)
    x = x.contiguous()
    inner = math.prod(x.shape[2:])
    if inner == 1:  # (N, C): channels are innermost
        return x, Layout(x.shape[0], channels, True)
    return x, Layout(x.shape[0] * channels, inner, False)


def backend(device):
    """The kernel module for a device (imported on first use)."""
    try:
        return importlib.import_module(_BACKENDS[device.type])
    except KeyError:
        raise ValueError(f'the fused SAU op runs on {" and ".join(_BACKENDS)} tensors, not {device.type}; '
                         'use sau_core.sau_reference(x, alpha, n) on this device') from None


@torch.library.custom_op('sau_core::sau', mutates_args=())
def _sau(x: Tensor, alpha: Tensor, n: Tensor, zero_centred: bool) -> Tensor:
    x, layout = dense_layout(x, alpha.numel())
    return backend(x.device).forward(x, alpha, n, zero_centred, layout)


@_sau.register_fake
def _sau_fake(x, alpha, n, zero_centred):
    return torch.empty_like(dense_layout(x, alpha.numel())[0])


@torch.library.custom_op('sau_core::sau_backward', mutates_args=())
def _sau_backward(grad_y: Tensor, saved: Tensor, alpha: Tensor, n: Tensor, zero_centred: bool,
                  saved_is_output: bool, need_alpha: bool, need_n: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(grad_x, grad_alpha, grad_n) from the saved input x, or from SAU(x) when ``saved_is_output``; a gradient
    that is not needed comes back empty."""
    saved, layout = dense_layout(saved, alpha.numel())
    if grad_y.stride() == saved.stride():
        grad_x = torch.empty_like(saved)
    else:  # a strided gradient (e.g. from torch.cat's backward): copy it, and compute grad_x in the copy
        grad_y = grad_x = torch.empty_like(saved).copy_(grad_y)
    grad_alpha, grad_n = backend(saved.device).backward(
        grad_y, saved, grad_x, alpha, n, zero_centred, saved_is_output, layout, need_alpha, need_n)
    grad_alpha = grad_alpha.to(alpha.dtype) if need_alpha else alpha.new_empty(0)
    grad_n = grad_n.to(n.dtype).reshape(n.shape) if need_n else n.new_empty(0)
    return grad_x, grad_alpha, grad_n


@_sau_backward.register_fake
def _sau_backward_fake(grad_y, saved, alpha, n, zero_centred, saved_is_output, need_alpha, need_n):
    grad_x = torch.empty_like(dense_layout(saved, alpha.numel())[0])
    return (grad_x, alpha.new_empty(alpha.shape if need_alpha else (0,)),
            n.new_empty(n.shape if need_n else (0,)))


def _setup_context(ctx, inputs, output):
    x, alpha, n, zero_centred = inputs
    ctx.save_for_backward(x, alpha, n)
    ctx.zero_centred = zero_centred


def _backward(ctx, grad_y, saved_is_output=False):
    saved, alpha, n = ctx.saved_tensors
    need_x, need_alpha, need_n = ctx.needs_input_grad[:3]
    grad_x, grad_alpha, grad_n = torch.ops.sau_core.sau_backward(
        grad_y, saved, alpha, n, ctx.zero_centred, saved_is_output, need_alpha, need_n)
    return (grad_x if need_x else None, grad_alpha if need_alpha else None,
            grad_n if need_n else None, None)


_sau.register_autograd(_backward, setup_context=_setup_context)

# alpha range in which the backward kernels recover x from SAU(x) to full precision (their Halley step count).
INPLACE_ALPHA_RANGE = (0.01, 100.0)
# fp16 outputs near 0 are subnormal (|y| < 6e-5 where |n*x| < 8): below this alpha, x recovered from them is off
# by up to 41 ulp (6.6 ulp at 0.05).
FP16_INPLACE_ALPHA_MIN = 0.05


class _SAUInplace(torch.autograd.Function):
    """SAU written into x (standard form); saves the output, from which backward recovers x."""

    @staticmethod
    def forward(ctx, x, alpha, n):
        dense, layout = dense_layout(x, alpha.numel())
        backend(x.device).forward_(dense, alpha, n, layout)
        if dense is not x:  # x was not dense in memory: the kernel ran on a copy
            x.copy_(dense)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x, alpha, n)
        ctx.zero_centred = False
        return x

    @staticmethod
    def backward(ctx, grad_y):
        return _backward(ctx, grad_y, saved_is_output=True)[:3]


def _can_run_inplace(x, alpha, zero_centred):
    """In place needs the standard form, an alpha in INPLACE_ALPHA_RANGE (read on the host: a device sync on
    GPU), eager mode (under torch.compile the compiler plans memory itself) and an x that autograd lets us
    overwrite: not a leaf that requires grad, nor a view that requires grad (autograd refuses some views, e.g.
    of a leaf or from torch.chunk, only after the kernel has written)."""
    if zero_centred or torch.compiler.is_compiling() or (x.requires_grad and (x.is_leaf or x._base is not None)):
        return False
    low, high = INPLACE_ALPHA_RANGE
    if x.dtype == torch.float16:
        low = FP16_INPLACE_ALPHA_MIN
    low, high = (torch.tensor(bound, dtype=alpha.dtype).item() for bound in (low, high))  # as stored
    alpha_min, alpha_max = torch.stack(torch.aminmax(alpha.detach())).tolist()  # one host read
    return low <= alpha_min and alpha_max <= high


def _as_parameter(name, value, x):
    """A Python number becomes a tensor on x's device (fp64 for fp64 inputs, else fp32)."""
    if isinstance(value, Tensor):
        if value.device != x.device:
            raise ValueError(f'SAU {name} is on {value.device} but the input is on {x.device}; '
                             f'move it (or the SAU module) with .to({str(x.device)!r})')
        if not value.is_floating_point():
            raise ValueError(f'SAU {name} must be a floating-point tensor, got {value.dtype}')
        return value
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.tensor(float(value), dtype=dtype, device=x.device)


def sau(x, alpha=0.15, n=20000.0, zero_centred=False, inplace=False):
    """Fused SAU(x; alpha, n), differentiable in x, alpha and n. Returns a tensor of x's dtype.

    ``alpha`` is a number, a one-element tensor, or a tensor of ``x.shape[1]`` values (one per channel, as in
    ``nn.PReLU``); ``n`` is a positive number or one-element tensor. All math runs in fp32 for fp16/bf16
    inputs (``(n*x)^2`` overflows fp16) and in fp64 for fp64 inputs.

    ``inplace=True`` writes the result into x and returns x when x can be recovered from it in backward
    (standard form, every alpha in ``INPLACE_ALPHA_RANGE`` (fp16: from ``FP16_INPLACE_ALPHA_MIN``), eager mode,
    x neither a leaf nor a view that requires grad); otherwise it leaves x alone and returns a new tensor, as
    ``inplace=False`` does. Its dSAU/dx is within 140 ulp of exact in fp64, 85 in fp32, 7 in fp16 and 1 in bf16
    over that range (the out-of-place op: 80, 63, 0.5, 0.5; test_op_inplace.py).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'SAU expects a floating-point tensor, got {got}; convert it first, e.g. x.float()')
    alpha = _as_parameter('alpha', alpha, x).reshape(-1)
    n = _as_parameter('n', n, x)
    if n.numel() != 1:
        raise ValueError(f'SAU n must be a single value, got a tensor of shape {tuple(n.shape)}')
    n = n.reshape(())
    if n.device.type == 'cpu' and not torch.compiler.is_compiling() and not n.item() > 0:
        raise ValueError(f'SAU needs n > 0 (the Gaussian has standard deviation 1/n); got n={n.item()}')
    if alpha.numel() != 1 and (x.dim() < 2 or x.shape[1] != alpha.numel()):
        raise ValueError(f'SAU has {alpha.numel()} per-channel alphas but the input of shape {tuple(x.shape)} '
                         f'has {x.shape[1] if x.dim() >= 2 else "no"} channels along dim 1; '
                         'set num_parameters to the channel count, or 1 for a shared alpha')
    if inplace and _can_run_inplace(x, alpha, zero_centred):
        return _SAUInplace.apply(x, alpha, n)
    return torch.ops.sau_core.sau(x, alpha, n, bool(zero_centred))
