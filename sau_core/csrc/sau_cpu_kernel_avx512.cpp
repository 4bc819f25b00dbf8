// AVX-512 build of the kernels; setup.py compiles this file with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma.
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#define SAU_KERNEL_NS avx512
#include "sau_cpu_kernel_impl.h"
