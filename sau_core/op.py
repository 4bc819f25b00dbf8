"""The fused SAU op: ``torch.ops.sau_core.sau`` and its backward ``torch.ops.sau_core.sau_backward``.

Layering (as in Liger-Kernel): kernels (``csrc/`` for CPU, ``kernels/triton.py`` for CUDA) -> their launchers ->
the operators below, with autograd -> :class:`sau_core.SAU`. The operators are defined here with
``torch.library`` in the one namespace ``sau_core``; each device registers its kernel the ``torch.library`` way:

- CPU: the C++ extension ``sau_core._C`` (``TORCH_LIBRARY_IMPL(sau_core, CPU, ...)`` in ``csrc/sau_cpu.cpp``),
  loaded when this module is imported;
- CUDA: :func:`torch.library.register_kernel` below, which imports the Triton module on first call (importing
  sau_core does not need triton).

The dispatcher picks the kernel from the device of ``x`` on every call (so ``module.to(device)`` just works); fake
(meta) kernels make ``torch.compile(fullgraph=True)`` see one op, and autograd saves only the op's inputs: the
backward kernel recomputes the Gaussian and erf terms instead of storing them.

``sau(x, inplace=True)`` overwrites ``x`` and saves only the output, as ``nn.ReLU(inplace=True)`` does, so that a
conv-norm-activation block keeps one tensor instead of two: SAU is strictly increasing for alpha > 0, and the
backward kernel recovers x from SAU(x). ``torch.library`` gives no autograd to mutating ops, so this path is an
``autograd.Function`` around the private op ``sau_core::_sau_inplace`` and the same backward op.

Double backward (``create_graph=True``) of the out-of-place op differentiates the reference formula in eager
PyTorch (exact, but it saves what eager PyTorch saves); the in-place op raises, naming the limitation.
"""
import math
import os
import warnings
import weakref
from typing import NamedTuple

import torch
from torch import Tensor

from .reference import sau_reference

_lib = torch.library.Library('sau_core', 'FRAGMENT')  # noqa: TOR901 (defines the ops; kernels register below)
# flexible_layout: the kernels take any dense layout (NCHW, channels_last, ...) and give their outputs that layout,
# so torch.compile's inductor passes the tensors it has instead of copying them into eager's strides first.
_lib.define('sau(Tensor x, Tensor alpha, Tensor n, bool zero_centred) -> Tensor', tags=(torch.Tag.flexible_layout,))
_lib.define('sau_backward(Tensor grad_y, Tensor saved, Tensor alpha, Tensor n, bool zero_centred, '
            'bool saved_is_output, bool need_alpha, bool need_n) -> (Tensor, Tensor, Tensor)',
            tags=(torch.Tag.flexible_layout,))
_lib.define('_sau_inplace(Tensor(a!) x, Tensor alpha, Tensor n) -> ()')


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
    :class:`Layout`. Contiguous (NCHW) and channels_last inputs are used as they are. The CPU kernels apply the
    same rules in C++ (``dense_layout`` in ``csrc/sau_cpu.cpp``)."""
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


# --- CPU: the C++ kernels register themselves when the library loads. ---------------------------------------------
try:
    from .kernels import cpu as _cpu  # noqa: F401  (loads sau_core._C: TORCH_LIBRARY_IMPL(sau_core, CPU, ...))
except ImportError as error:  # a build without the compiled CPU kernels: CUDA still works, CPU says what to do
    _cpu_missing = str(error)

    def _no_cpu_kernels(*args, **kwargs):
        raise ImportError(_cpu_missing)

    for _name in ('sau', 'sau_backward', '_sau_inplace'):
        _lib.impl(_name, _no_cpu_kernels, 'CPU')


# --- CUDA: the Triton kernels, imported on first call. ------------------------------------------------------------
def _triton():
    from .kernels import triton
    return triton


def _sau_cuda(x, alpha, n, zero_centred):
    x, layout = dense_layout(x, alpha.numel())
    return _triton().forward(x, alpha, n, zero_centred, layout)


def _sau_inplace_cuda(x, alpha, n):
    dense, layout = dense_layout(x, alpha.numel())
    _triton().forward_(dense, alpha, n, layout)
    if dense is not x:  # x was not dense in memory: the kernel ran on a copy
        x.copy_(dense)


def _sau_backward_cuda(grad_y, saved, alpha, n, zero_centred, saved_is_output, need_alpha, need_n):
    saved, layout = dense_layout(saved, alpha.numel())
    if grad_y.stride() == saved.stride():
        grad_x = torch.empty_like(saved)
    else:  # a strided gradient (e.g. from torch.cat's backward): copy it, and compute grad_x in the copy
        grad_y = grad_x = torch.empty_like(saved).copy_(grad_y)
    grad_alpha, grad_n = _triton().backward(
        grad_y, saved, grad_x, alpha, n, zero_centred, saved_is_output, layout, need_alpha, need_n)
    grad_alpha = grad_alpha.to(alpha.dtype) if need_alpha else alpha.new_empty(0)
    grad_n = grad_n.to(n.dtype).reshape(n.shape) if need_n else n.new_empty(0)
    return grad_x, grad_alpha, grad_n


for _name, _kernel in (('sau', _sau_cuda), ('_sau_inplace', _sau_inplace_cuda), ('sau_backward', _sau_backward_cuda)):
    torch.library.register_kernel(f'sau_core::{_name}', 'cuda', _kernel, lib=_lib)


# --- Fake kernels (shapes, dtypes and strides only), for torch.compile and opcheck. -------------------------------
@torch.library.register_fake('sau_core::sau', lib=_lib)
def _sau_fake(x, alpha, n, zero_centred):
    return torch.empty_like(dense_layout(x, alpha.numel())[0])


@torch.library.register_fake('sau_core::sau_backward', lib=_lib)
def _sau_backward_fake(grad_y, saved, alpha, n, zero_centred, saved_is_output, need_alpha, need_n):
    grad_x = torch.empty_like(dense_layout(saved, alpha.numel())[0])
    return (grad_x, alpha.new_empty(alpha.shape if need_alpha else (0,)),
            n.new_empty(n.shape if need_n else (0,)))


@torch.library.register_fake('sau_core::_sau_inplace', lib=_lib)
def _sau_inplace_fake(x, alpha, n):
    return None


# --- Autograd. ----------------------------------------------------------------------------------------------------
def _setup_context(ctx, inputs, output):
    x, alpha, n, zero_centred = inputs
    ctx.save_for_backward(x, alpha, n)
    ctx.zero_centred = zero_centred


def _differentiable_backward(grad_y, x, alpha, n, zero_centred, needs):
    """Double backward: the gradients as a graph autograd can differentiate again, from the reference formula in
    eager PyTorch (fp32 for fp16/bf16 inputs, as the kernels compute). Used only under ``create_graph=True``."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    inputs = [x.to(compute), alpha.to(compute), n.to(compute)]
    a = inputs[1] if alpha.numel() != 1 else inputs[1].reshape(())
    y = sau_reference(inputs[0], a, inputs[2], zero_centred)
    wanted = [t for t, need in zip(inputs, needs) if need and t.requires_grad]
    grads = iter(torch.autograd.grad(y, wanted, grad_y.to(compute), create_graph=True, allow_unused=True)
                 if wanted else ())
    out = []
    for t, need, original in zip(inputs, needs, (x, alpha, n)):
        g = next(grads) if need and t.requires_grad else None
        out.append(None if not need else
                   (torch.zeros_like(original) if g is None else g.to(original.dtype).reshape(original.shape)))
    return out


def _backward(ctx, grad_y):
    saved, alpha, n = ctx.saved_tensors
    needs = ctx.needs_input_grad[:3]
    if torch.is_grad_enabled():  # create_graph=True: the kernels' gradients would not be differentiable
        return (*_differentiable_backward(grad_y, saved, alpha, n, ctx.zero_centred, needs), None)
    need_x, need_alpha, need_n = needs
    grad_x, grad_alpha, grad_n = torch.ops.sau_core.sau_backward(
        grad_y, saved, alpha, n, ctx.zero_centred, False, need_alpha, need_n)
    return (grad_x if need_x else None, grad_alpha if need_alpha else None,
            grad_n if need_n else None, None)


torch.library.register_autograd('sau_core::sau', _backward, setup_context=_setup_context, lib=_lib)

# alpha range in which the backward kernels recover x from SAU(x) to full precision (their Halley step count).
INPLACE_ALPHA_RANGE = (0.01, 100.0)
# fp16 outputs near 0 are subnormal (|y| < 6e-5 where |n*x| < 8): below this alpha, x recovered from them is off
# by up to 41 ulp (6.6 ulp at 0.05).
FP16_INPLACE_ALPHA_MIN = 0.05


class _SAUInplace(torch.autograd.Function):
    """SAU written into x (standard form); saves the output, from which backward recovers x."""

    @staticmethod
    def forward(ctx, x, alpha, n):
        torch.ops.sau_core._sau_inplace(x, alpha, n)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x, alpha, n)
        return x

    @staticmethod
    def backward(ctx, grad_y):
        if torch.is_grad_enabled():
            raise RuntimeError(
                'double backward (create_graph=True) is not supported through the in-place SAU: it keeps only its '
                'output and recovers x from it, which autograd cannot differentiate again. Use SAU(inplace=False) '
                '(or sau(..., inplace=False)) for models that need second derivatives.')
        y, alpha, n = ctx.saved_tensors
        _, need_alpha, need_n = ctx.needs_input_grad
        grad_x, grad_alpha, grad_n = torch.ops.sau_core.sau_backward(
            grad_y, y, alpha, n, False, True, need_alpha, need_n)
        return grad_x, grad_alpha if need_alpha else None, grad_n if need_n else None


def _inplace_blocker(x, alpha, zero_centred, alpha_key=None):
    """Why the in-place op cannot run here: None when it can, else a reason. In place needs the standard form,
    eager mode (under torch.compile the compiler plans memory itself), an x that autograd lets us overwrite (not a
    leaf that requires grad, nor a view that requires grad: autograd refuses some views, e.g. of a leaf or from
    torch.chunk, only after the kernel has written) and every alpha in the range (low, high), as
    :func:`alpha_range` reads it (on a GPU without a device sync, one step late); that last reason comes back as
    the tuple (low, high, alpha_min, alpha_max)."""
    if zero_centred:
        return 'zero-centred form'
    if torch.compiler.is_compiling():
        return 'torch.compile'
    if x.requires_grad and (x.is_leaf or (x._base is not None and not _view_autograd_lets_overwrite(x))):
        return 'input autograd may not overwrite'
    low, high = INPLACE_ALPHA_RANGE
    if x.dtype == torch.float16:
        low = FP16_INPLACE_ALPHA_MIN
    low, high = _stored_bounds(low, high, alpha.dtype)
    alpha_min, alpha_max = alpha_range(alpha_key if alpha_key is not None else alpha, alpha)
    if low <= alpha_min and alpha_max <= high:
        return None
    return low, high, alpha_min, alpha_max


# autograd's private view bookkeeping, looked up once (not on every call); None where torch lacks it
_CREATION_META = getattr(torch._C._autograd, '_get_creation_meta', None)


def _view_autograd_lets_overwrite(view):
    """A view that requires grad may be overwritten when a plain view op made it (``view``, ``reshape``,
    slicing, ``transpose``: Linear's output for a 3-d input is one) from a base that is not a leaf: autograd
    then rebases the base's history (CopySlices). Views of a leaf, views from ``chunk``/``split``/``unbind`` and
    views made under ``no_grad`` it refuses, but only once the kernel has written. The check reads autograd's
    private ``CreationMeta``; without it, no view is overwritten."""
    if _CREATION_META is None:
        return False
    base = view._base
    return _CREATION_META(view) == torch._C._autograd.CreationMeta.DEFAULT and not (base.is_leaf and base.requires_grad)


_BOUNDS = {}


def _stored_bounds(low, high, dtype):
    """The range's ends as alpha's dtype stores them (computed once per dtype: no tensor read per call)."""
    key = (low, high, dtype)
    if key not in _BOUNDS:
        _BOUNDS[key] = tuple(torch.tensor(bound, dtype=dtype).item() for bound in (low, high))
    return _BOUNDS[key]


# Devices whose reads of alpha would wait for the device (a sync): there the range is read asynchronously.
ASYNC_DEVICES = {'cuda'}


class _CudaEvent:
    """What the asynchronous read waits on; tests put a fake one here to run the asynchronous path on CPU."""
    def __new__(cls):
        event = torch.cuda.Event()
        event.record()
        return event


class _AlphaRange:
    """alpha's (min, max) as the host last saw them, read without a device sync.

    On CPU the range is read at each call (a memory read). On a GPU each call enqueues ``aminmax`` and a
    non-blocking copy into pinned host memory, and the decision uses the newest copy that has arrived
    (``Event.query()``, which does not wait): the range lags alpha by about one step (the copy enqueued in one
    step's forward has arrived by the next step's), so an alpha that leaves the range runs one more step in place
    before the layer falls back (and warns). Only a layer's first call waits for its copy."""

    __slots__ = ('bounds', 'pending', '__weakref__')

    def __init__(self):
        self.bounds = None
        self.pending = None

    def read(self, alpha):
        alpha = alpha.detach()
        if alpha.device.type not in ASYNC_DEVICES:
            return tuple(torch.stack(torch.aminmax(alpha)).tolist())  # CPU memory: no sync
        if self.pending is not None and self.pending[1].query():  # a copy has arrived
            self.bounds = tuple(self.pending[0].tolist())  # pinned host memory
            self.pending = None
        if self.pending is None:  # enqueue the next read
            values = torch.stack(torch.aminmax(alpha))
            host = torch.empty(2, dtype=values.dtype, pin_memory=alpha.device.type == 'cuda')
            host._sau_host_copy = True  # tests/test_op_hostsync.py: reading it is no device sync
            host.copy_(values, non_blocking=True)
            self.pending = (host, _CudaEvent())
        if self.bounds is None:  # the layer's first call: wait for its copy once
            self.pending[1].synchronize()
            self.bounds = tuple(self.pending[0].tolist())
            self.pending = None
        return self.bounds


# id(alpha tensor) -> (weak reference to it, _AlphaRange); tensors compare element-wise, so not a WeakKeyDictionary
_alpha_ranges = {}


def alpha_range(key, alpha):
    """(min, max) of ``alpha`` as :class:`_AlphaRange` reads it for the tensor ``key`` (the parameter itself, so
    that the read survives from call to call)."""
    entry = _alpha_ranges.get(id(key))
    if entry is None or entry[0]() is not key:
        ident = id(key)
        entry = _alpha_ranges[ident] = (weakref.ref(key, lambda _, ident=ident: _alpha_ranges.pop(ident, None)),
                                        _AlphaRange())
    return entry[1].read(alpha)


def _is_rank_zero():
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return os.environ.get('RANK', '0') == '0'


def _warn_inplace_fallback(layer, low, high, alpha_min, alpha_max):
    """The one warning of an in-place SAU that runs out of place because its alpha left the range in which x is
    recovered from the output: it then keeps its input for backward, one more feature map per layer. ``layer``
    names it (see :func:`sau_core.name_sau_layers`). Shown on rank 0 only; the caller shows it once."""
    if _is_rank_zero():
        warnings.warn(
            f'in-place SAU {layer}: alpha left [{low:g}, {high:g}] (min {alpha_min:.4g}, max {alpha_max:.4g}), '
            'so it runs out of place and keeps its input for backward (one more activation in memory) while '
            'alpha stays outside; shown once per layer', RuntimeWarning, stacklevel=2)


_functional_warned = set()  # the alpha shapes of functional sau() calls that have warned


def _warn_functional_fallback(alpha, *bounds):
    shape = tuple(alpha.shape)
    if shape not in _functional_warned:
        _functional_warned.add(shape)
        _warn_inplace_fallback(f'(a sau_core.sau call with alpha of shape {shape})', *bounds)


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


_N_MESSAGE = 'SAU needs n > 0 (the Gaussian has standard deviation 1/n)'


def _check_n(n):
    """Rejects n <= 0 without a host sync: a CPU tensor (in eager mode) raises ValueError here; a GPU tensor, or
    any tensor under torch.compile, goes through ``torch._assert_async``, which fails on the device. (Python
    numbers are checked before they become tensors, and SAU checks its n when it is built.)"""
    if n.device.type == 'cpu' and not torch.compiler.is_compiling():
        if not n.item() > 0:
            raise ValueError(f'{_N_MESSAGE}; got n={n.item()}')
    else:
        torch._assert_async(n.detach() > 0, _N_MESSAGE)


# Devices on which torch.compile traces SAU as its formula (sau_core.reference, in fp32 for fp16/bf16 inputs), so
# that inductor fuses it into the neighbouring kernels (the BatchNorm's, as it does for ReLU), instead of calling
# the opaque op. Eager mode always runs the fused kernels. Empty by default: on CPU the compiled opaque op is
# faster than inductor's fusion of the formula (measured); on CUDA it is not measured yet (tools/gpu_check.py
# measures both: add 'cuda' here where the fused formula wins).
COMPILE_FORMULA_DEVICES = set()


def _formula(x, alpha, n, zero_centred):
    """SAU as PyTorch ops for torch.compile to fuse: the reference formula in the kernels' compute dtype."""
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    return sau_reference(x.to(compute), alpha.to(compute), n.to(compute), zero_centred).to(x.dtype)


def sau(x, alpha=0.15, n=20000.0, zero_centred=False, inplace=False):
    """Fused SAU(x; alpha, n), differentiable in x, alpha and n. Returns a tensor of x's dtype.

    ``alpha`` is a number, a one-element tensor, or a tensor of ``x.shape[1]`` values (one per channel, as in
    ``nn.PReLU``); ``n`` is a positive number or one-element tensor. All math runs in fp32 for fp16/bf16
    inputs (``(n*x)^2`` overflows fp16) and in fp64 for fp64 inputs.

    ``inplace=True`` writes the result into x and returns x when x can be recovered from it in backward
    (standard form, every alpha in ``INPLACE_ALPHA_RANGE`` (fp16: from ``FP16_INPLACE_ALPHA_MIN``), eager mode,
    x neither a leaf nor a view that requires grad); otherwise it leaves x alone and returns a new tensor, as
    ``inplace=False`` does, and warns once (rank 0) when the reason is alpha's range. Its dSAU/dx is within 140
    ulp of exact in fp64, 85 in fp32, 7 in fp16 and 1 in bf16 over that range (the out-of-place op: 80, 63, 0.5,
    0.5; test_op_inplace.py). Double backward (``create_graph=True``) works out of place only.
    """
    return fused_sau(x, alpha, n, zero_centred, inplace)


def fused_sau(x, alpha, n, zero_centred, inplace, on_alpha_fallback=None, check_n=True, compile_formula=None):
    """:func:`sau`, with ``on_alpha_fallback(low, high, alpha_min, alpha_max)`` called when the in-place op runs
    out of place because alpha left its range (default: warn once per alpha shape); SAU passes its own, and
    ``check_n=False`` for its fixed n, which it checks when built and when loaded. ``compile_formula`` overrides
    :data:`COMPILE_FORMULA_DEVICES` for this call (under torch.compile: trace the formula, or the op)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f'SAU expects a floating-point tensor, got {got}; convert it first, e.g. x.float()')
    if not isinstance(n, Tensor) and not float(n) > 0:
        raise ValueError(f'{_N_MESSAGE}; got n={n}')
    alpha_key = alpha if isinstance(alpha, Tensor) else None
    alpha = _as_parameter('alpha', alpha, x).reshape(-1)
    n_is_number = not isinstance(n, Tensor)
    n = _as_parameter('n', n, x)
    if n.numel() != 1:
        raise ValueError(f'SAU n must be a single value, got a tensor of shape {tuple(n.shape)}')
    n = n.reshape(())
    if check_n and not n_is_number:
        _check_n(n)
    if alpha.numel() != 1 and (x.dim() < 2 or x.shape[1] != alpha.numel()):
        raise ValueError(f'SAU has {alpha.numel()} per-channel alphas but the input of shape {tuple(x.shape)} '
                         f'has {x.shape[1] if x.dim() >= 2 else "no"} channels along dim 1; '
                         'set num_parameters to the channel count, or 1 for a shared alpha')
    if compile_formula is None:
        compile_formula = x.device.type in COMPILE_FORMULA_DEVICES
    if compile_formula and torch.compiler.is_compiling():
        return _formula(x, alpha, n, zero_centred)
    if inplace:
        blocker = _inplace_blocker(x, alpha, zero_centred, alpha_key)
        if blocker is None:
            return _SAUInplace.apply(x, alpha, n)
        if isinstance(blocker, tuple):  # alpha left the range
            if on_alpha_fallback is None:
                _warn_functional_fallback(alpha, *blocker)
            else:
                on_alpha_fallback(*blocker)
    return torch.ops.sau_core.sau(x, alpha, n, bool(zero_centred))
