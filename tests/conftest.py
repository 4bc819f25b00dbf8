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


#: the frameworks' top-level loggers, made here (at NOTSET, as their imports leave them) so that a test which
#: first imports one still counts it as existing; submitit is left out: its import sets its level itself
WATCHED_LOGGERS = ('fairseq', 'fairseq_cli', 'hydra', 'mmengine', 'mmdet', 'mmseg', 'onnx_ir', 'onnxscript',
                   'sacrebleu')


def _logger_levels():
    import logging
    for name in WATCHED_LOGGERS:
        logging.getLogger(name)
    return {name: logger.level for name, logger in logging.Logger.manager.loggerDict.items()
            if isinstance(logger, logging.Logger)}


@pytest.fixture(autouse=True)
def process_state_kept():
    """The tools' ``main`` run in this process (as a notebook or a sweep would call them) must hand the process
    back as they found it: autograd on, the same thread count, every existing logger at its level. A leak here
    breaks a later, unrelated test far from its cause (tools/export.py once left autograd off for every op
    gradient test after it; tools/infer.py left fairseq's loggers at WARNING, emptying the next training log),
    so each test is checked where the leak happens."""
    grad, threads, levels = torch.is_grad_enabled(), torch.get_num_threads(), _logger_levels()
    yield
    after = _logger_levels()
    changed = {name: (level, after[name]) for name, level in levels.items() if after[name] != level}
    assert (torch.is_grad_enabled(), torch.get_num_threads(), changed) == (grad, threads, {}), \
        'the test left autograd, the thread count or these loggers (name: (before, after)) changed'
