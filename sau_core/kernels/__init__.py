"""Fused SAU kernels per device, registered for the ``sau_core`` ops defined in ``sau_core.op``.

``cpu``: loads the C++ extension, whose ``TORCH_LIBRARY_IMPL(sau_core, CPU, ...)`` registers the CPU kernels.
``triton``: the GPU kernels and their launchers, ``forward(x, alpha, n, zero_centred, layout) -> y``,
``forward_(x, alpha, n, layout)`` (standard form, writes SAU(x) into x) and ``backward(grad_y, saved, grad_x,
alpha, n, zero_centred, saved_is_output, layout, need_alpha, need_n) -> (grad_alpha, grad_n)``, which writes
``grad_x`` (it may be ``grad_y`` itself) from ``saved``: x, or SAU(x) when ``saved_is_output`` (x is then
recovered from it). ``layout`` is a :class:`sau_core.op.Layout`; ``saved``, ``grad_y`` and ``grad_x`` are dense
with equal strides. ``sau_core.op`` registers them for CUDA with ``torch.library.register_kernel`` and imports
the module on the first CUDA call.
"""
