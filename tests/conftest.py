"""Test-session setup shared by all test files."""
import os

import torch

# Without a GPU, run sau_core's Triton kernels in Triton's interpreter so that test_triton_kernels.py covers
# the GPU code path on CPU tensors. Triton reads this when it is first imported, so it is set here, before
# any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')
