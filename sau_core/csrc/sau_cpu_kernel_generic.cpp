// Portable build of the kernels, for CPUs without AVX2.
#define CPU_CAPABILITY DEFAULT
#define SAU_KERNEL_NS generic
#include "sau_cpu_kernel_impl.h"
