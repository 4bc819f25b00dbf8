"""Test-session setup shared by all test files."""
import os

import pytest
import torch

# Without a GPU, run sau_core's Triton kernels in Triton's interpreter so that test_triton_kernels.py covers
# the GPU code path on CPU tensors. Triton reads this when it is first imported, so it is set here, before
# any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')


@pytest.fixture(scope='module')
def one_torch_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads spin-waiting on each other make the
    training tests ~3x slower. Use with ``pytestmark = pytest.mark.usefixtures('one_torch_thread')``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
