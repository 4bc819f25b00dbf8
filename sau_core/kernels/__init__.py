"""Fused SAU kernels, one module per backend, all with the same three functions.

``forward(x, alpha, n, zero_centred, layout) -> y``, ``forward_(x, alpha, n, layout)`` (standard form, writes
SAU(x) into x) and ``backward(grad_y, saved, grad_x, alpha, n, zero_centred, saved_is_output, layout,
need_alpha, need_n) -> (grad_alpha, grad_n)``, which writes ``grad_x`` (it may be ``grad_y`` itself) from
``saved``: x, or SAU(x) when ``saved_is_output`` (x is then recovered from it). ``layout`` is a
:class:`Layout` from ``sau_core.op``; ``saved``, ``grad_y`` and ``grad_x`` are dense with equal strides.
"""
