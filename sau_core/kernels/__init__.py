"""Fused SAU kernels, one module per backend, all with the same two functions.

``forward(x, alpha, n, zero_centred, layout) -> y`` and
``backward(grad_y, x, alpha, n, zero_centred, layout, need_alpha, need_n) -> (grad_x, grad_alpha, grad_n)``,
where ``layout`` is a :class:`Layout` from ``sau_core.op`` and ``x``/``grad_y`` are dense with equal strides.
"""
