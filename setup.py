"""Builds sau_core's CPU kernels (a C++ extension against the installed torch); metadata is in pyproject.toml.

The kernel source is compiled twice, for AVX2 (+FMA, F16C) and portably, and chosen at run time, so a wheel built
here also runs on CPUs without AVX2.
"""
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

AVX2_FLAGS = ['-mavx2', '-mfma', '-mf16c']


class BuildWithAvx2Sources(BuildExtension):
    """Adds the AVX2 flags to the one source file that holds the AVX2 build of the kernels."""

    def build_extensions(self):
        compile_source = self.compiler._compile

        def compile_with_isa_flags(obj, src, ext, cc_args, extra_postargs, pp_opts):
            if src.endswith('_avx2.cpp'):
                extra_postargs = list(extra_postargs) + AVX2_FLAGS
            return compile_source(obj, src, ext, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = compile_with_isa_flags
        super().build_extensions()


setup(
    ext_modules=[
        CppExtension(
            'sau_core._C',
            ['sau_core/csrc/sau_cpu.cpp', 'sau_core/csrc/sau_cpu_kernel_avx2.cpp',
             'sau_core/csrc/sau_cpu_kernel_generic.cpp'],
            extra_compile_args=['-O3', '-std=c++20'],
        )
    ],
    cmdclass={'build_ext': BuildWithAvx2Sources.with_options(use_ninja=False)},
)
