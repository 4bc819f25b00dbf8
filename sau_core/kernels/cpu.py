"""CPU kernels: the C++ extension ``sau_core._C`` (``sau_core/csrc``), built for AVX-512, AVX2 and portably and
chosen at run time (the environment variable ``SAU_CORE_CPU_ISA=avx512|avx2|generic`` forces one).

Loading it registers its kernels for the CPU dispatch key of the ``sau_core`` ops that ``sau_core.op`` defines
(``TORCH_LIBRARY_IMPL(sau_core, CPU, ...)``); there are no Python wrappers to call.
"""
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
    return torch.ops.sau_core._cpu_isa()
