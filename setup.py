"""Builds sau_core's CPU kernels (a C++ extension against the installed torch); metadata is in pyproject.toml.

The extension registers the CPU kernels of the ``sau_core`` ops that ``sau_core/op.py`` defines
(``TORCH_LIBRARY_IMPL(sau_core, CPU, ...)`` in ``sau_core/csrc/sau_cpu.cpp``); it has no Python module of its own.

The kernel source is compiled three times, for AVX-512, AVX2 (+FMA, F16C) and portably, and the best one the CPU
supports is chosen at run time (``SAU_CORE_CPU_ISA`` overrides it), so a wheel built here runs on any x86-64 CPU.
"""
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

# The flags ATen builds its own AVX2 and AVX-512 kernels with.
ISA_FLAGS = {'_avx2.cpp': ['-mavx2', '-mfma', '-mf16c'],
             '_avx512.cpp': ['-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mfma']}


class BuildWithIsaSources(BuildExtension):
    """Adds the instruction-set flags to the source files that hold the AVX2 and AVX-512 builds of the kernels."""

    def build_extensions(self):
        compile_source = self.compiler._compile

        def compile_with_isa_flags(obj, src, ext, cc_args, extra_postargs, pp_opts):
            for suffix, flags in ISA_FLAGS.items():
                if src.endswith(suffix):
                    extra_postargs = list(extra_postargs) + flags
            return compile_source(obj, src, ext, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_with_isa_flags
        super().build_extensions()


setup(
    ext_modules=[
        CppExtension(
            'sau_core._C',
            ['sau_core/csrc/sau_cpu.cpp', 'sau_core/csrc/sau_cpu_kernel_avx512.cpp',
             'sau_core/csrc/sau_cpu_kernel_avx2.cpp', 'sau_core/csrc/sau_cpu_kernel_generic.cpp'],
            # OpenMP: at::parallel_for is a header that runs serially unless compiled with it; the libgomp
            # torch ships (soname libgomp.so.1, already loaded with torch) is the one linked at run time.
            extra_compile_args=['-O3', '-std=c++20', '-fopenmp'],
            extra_link_args=['-fopenmp'],
        )
    ],
    cmdclass={'build_ext': BuildWithIsaSources.with_options(use_ninja=False)},
)
