"""ONNX translation of ``torch.ops.sau_core.sau`` for ``torch.onnx.export(..., dynamo=True)``.

The exporter has no ONNX function for a custom op (``No ONNX function found for sau_core.sau``); pass
:data:`CUSTOM_TRANSLATION_TABLE` (or :func:`translation_table`) as ``custom_translation_table`` and every SAU
becomes a node of the ONNX local function ``sau_core.SAU`` (standard form) or ``sau_core.SAUZeroCentred``,
whose body is the formula in ONNX operators (the same as :func:`sau_core.sau_reference`)::

    SAU(x) = (1-a)/(n*sqrt(2*pi)) * Exp(-(n*x)^2/2) [* x if zero-centred] + (1+a)/2 * x + (1-a)/2 * x * Erf(n*x/sqrt(2))

so any ONNX runtime runs it and the graph shows the math, not an opaque op. ``alpha`` may hold one value
(shared) or one per channel along dim 1 (``SAU(num_parameters=C)``, as ``nn.PReLU``): it is reshaped to
``(C, 1, ..., 1)`` for inputs of rank > 2. fp16/bf16 inputs are computed in fp32 and cast back, as the fused op
does (``(n*x)^2`` overflows fp16).

    import torch, sau_core.onnx
    torch.onnx.export(model, (x,), 'model.onnx', dynamo=True,
                      custom_translation_table=sau_core.onnx.translation_table())

This module needs ``onnxscript`` (``requirements/deploy.txt``); ``import sau_core`` does not import it.
"""
import math

import onnxscript
import torch
from onnxscript import FLOAT, opset18 as op

#: the domain of the ONNX functions below (an ONNX local function is stored in the model, in its own domain)
DOMAIN = 'sau_core'
_opset = onnxscript.values.Opset(DOMAIN, 1)

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)


@onnxscript.script(_opset, default_opset=op)
def SAU(x: FLOAT, alpha: FLOAT, n: FLOAT) -> FLOAT:
    """SAU(x; alpha, n), standard form; alpha broadcasts against x."""
    one = op.CastLike(1.0, x)
    half = op.CastLike(0.5, x)
    nx = n * x
    gaussian = (one - alpha) / (n * op.CastLike(_SQRT_2PI, x)) * op.Exp(-(nx * nx) * half)
    linear = (one + alpha) * half * x
    smooth = (one - alpha) * half * x * op.Erf(nx * op.CastLike(_INV_SQRT_2, x))
    return gaussian + linear + smooth


@onnxscript.script(_opset, default_opset=op)
def SAUZeroCentred(x: FLOAT, alpha: FLOAT, n: FLOAT) -> FLOAT:
    """The zero-centred variant: the Gaussian term is multiplied by x, so SAU(0) = 0."""
    one = op.CastLike(1.0, x)
    half = op.CastLike(0.5, x)
    nx = n * x
    gaussian = (one - alpha) / (n * op.CastLike(_SQRT_2PI, x)) * op.Exp(-(nx * nx) * half) * x
    linear = (one + alpha) * half * x
    smooth = (one - alpha) * half * x * op.Erf(nx * op.CastLike(_INV_SQRT_2, x))
    return gaussian + linear + smooth


_COMPUTE_IN_FP32 = {onnxscript.ir.DataType.FLOAT16, onnxscript.ir.DataType.BFLOAT16}


def sau_onnx(x, alpha, n, zero_centred: bool = False):
    """The translation of ``sau_core::sau(x, alpha, n, zero_centred)``: alpha laid out for broadcasting,
    fp16/bf16 computed in fp32, then one call of :func:`SAU` or :func:`SAUZeroCentred`."""
    rank = len(x.shape) if x.shape is not None else None
    channels = alpha.shape[0] if alpha.shape is not None and len(alpha.shape) == 1 else None
    if channels != 1:  # per-channel alpha (dim 1 of x); a single alpha broadcasts as it is
        if rank is None:
            raise ValueError('SAU with per-channel alpha: the ONNX exporter gave the input no known rank')
        if rank > 2:
            alpha = op.Reshape(alpha, op.Constant(value_ints=[-1] + [1] * (rank - 2)))
    original = x.dtype
    if original in _COMPUTE_IN_FP32:
        x = op.Cast(x, to=onnxscript.ir.DataType.FLOAT)
    alpha = op.CastLike(alpha, x)
    n = op.CastLike(n, x)
    y = SAUZeroCentred(x, alpha, n) if zero_centred else SAU(x, alpha, n)
    if original in _COMPUTE_IN_FP32:
        y = op.Cast(y, to=original)
    return y


def translation_table():
    """``{torch.ops.sau_core.sau.default: sau_onnx}``, the ``custom_translation_table`` for SAU models."""
    import sau_core.op  # noqa: F401  (registers torch.ops.sau_core.sau)
    return {torch.ops.sau_core.sau.default: sau_onnx}
