"""sau_core needs torch alone: in a fresh interpreter where the frameworks and numpy cannot be imported, the op,
the module and the activation table still work (the MMEngine and fairseq integrations import their framework
only when they are imported themselves)."""
import os
import subprocess
import sys
import textwrap

BLOCKED = ('mmengine', 'mmcv', 'mmdet', 'mmseg', 'fairseq', 'fairseq_cli', 'hydra', 'omegaconf', 'numpy',
           'scipy', 'triton', 'onnx', 'onnxscript', 'onnxruntime')

PROGRAM = textwrap.dedent('''
    import importlib.abc
    import sys

    BLOCKED = {blocked!r}

    class Unimportable(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ModuleNotFoundError(f'{{name}} is made unimportable by this test', name=name)
            return None

    sys.meta_path.insert(0, Unimportable())

    import torch
    import sau_core
    from sau_core import ACT_CFGS, SAU, create_act_layer, sau

    x = torch.randn(2, 4, 5, requires_grad=True)
    module = SAU(num_parameters=4)
    module(x * 1).sum().backward()
    assert x.grad is not None and module.alpha.grad.shape == (4,)
    for name in ACT_CFGS:
        layer = create_act_layer(name)
        h = x * 1
        layer(h).sum().backward()
    inplace = SAU(inplace=True)
    h = x * 1
    assert inplace(h) is h
    h.sum().backward()
    assert sau(torch.zeros(3), 0.15, 20000.0).gt(0).all()
    loaded = sorted(name for name in sys.modules if name.split('.')[0] in BLOCKED)
    assert not loaded, loaded
    print('ok', sau_core.kernels.cpu.isa())
''')


def test_sau_core_works_with_torch_alone():
    program = PROGRAM.format(blocked=BLOCKED)
    proc = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TRITON_INTERPRET='0'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith('ok'), proc.stdout


def test_the_block_is_real():
    """The same finder makes the frameworks fail to import (so the test above proves something)."""
    program = PROGRAM.format(blocked=BLOCKED).split('import torch')[0] + 'import mmengine\n'
    proc = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'made unimportable by this test' in proc.stderr
