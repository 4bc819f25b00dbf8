// AVX2 build of the kernels; setup.py compiles this file with -mavx2 -mfma -mf16c.
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#define SAU_KERNEL_NS avx2
#include "sau_cpu_kernel_impl.h"
