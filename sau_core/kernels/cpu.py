"""CPU backend: the C++ kernels in ``sau_core/csrc`` (AVX-512, AVX2 or portable, chosen at run time; the
environment variable ``SAU_CORE_CPU_ISA=avx512|avx2|generic`` forces one)."""
import importlib.util

import torch


def _load_library():
    spec = importlib.util.find_spec('sau_core._C')
    if spec is None or spec.origin is None:
        raise ImportError(
            'sau_core was installed without its compiled CPU kernels (sau_core/_C*.so is missing). '
            'Reinstall it from the repository root with: pip install --no-build-isolation -e .')
    torch.ops.load_library(spec.origin)


_load_library()


def isa():
    """The build of the kernels in use: 'avx512', 'avx2' or 'generic'."""
    return torch.ops.sau_core_cpu.isa()


def forward(x, alpha, n, zero_centred, layout):
    return torch.ops.sau_core_cpu.forward(x, alpha, float(n), zero_centred, *layout)


def forward_(x, alpha, n, layout):
    torch.ops.sau_core_cpu.forward_(x, alpha, float(n), False, *layout)


def backward(grad_y, saved, grad_x, alpha, n, zero_centred, saved_is_output, layout, need_alpha, need_n):
    return torch.ops.sau_core_cpu.backward(grad_y, saved, grad_x, alpha, float(n), zero_centred, saved_is_output,
                                           *layout, need_alpha, need_n)
