"""torch.compile with inductor around the opaque op: no layout copies around it, results as in eager.

The ops carry torch.Tag.flexible_layout (their kernels take any dense layout and return it), so inductor passes
the channels_last feature maps its convolutions produce straight to sau_core::sau and ::sau_backward instead of
copying them into eager's strides and back. Compiled in a subprocess with its own inductor cache, so that no
cached graph from another run is reused."""
import os
import subprocess
import sys
import textwrap

import torch

import sau_core  # noqa: F401

PROBE = textwrap.dedent('''
    import re, sys
    import torch
    from torch._inductor.utils import run_and_get_code
    from sau_core import SAU
    torch.manual_seed(0)
    layers = [torch.nn.Conv2d(3, 8, 3, padding=1)]
    for _ in range(4):
        layers += [torch.nn.BatchNorm2d(8), SAU(num_parameters=8, inplace=True), torch.nn.Conv2d(8, 8, 3, padding=1)]
    model = torch.nn.Sequential(*layers)
    x = torch.randn(2, 3, 16, 16)
    eager = model(x)
    eager.sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    compiled = torch.compile(model, fullgraph=True)

    def step():
        out = compiled(x)
        out.sum().backward()
        return out
    out, codes = run_and_get_code(step)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
    for p, g in zip(model.parameters(), expected):  # (a conv bias before BN has a gradient of ~0)
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-3 * g.abs().max().item() + 1e-3)
    source = '\\n'.join(codes)
    calls = re.findall(r'^\\s+(cpp_fused\\w*)\\(', source, re.M)
    strides = re.findall(r"assert_tensor_metadata\\(\\w+, \\(2, 8, 16, 16\\), (\\([\\d, ]+\\)), torch.float32, "
                         r"'torch.ops.sau_core.sau.default'\\)", source)
    print('CALLS', len(calls), 'SAU_COPIES', sum('sau' in c for c in calls), 'OPS',
          source.count('torch.ops.sau_core.sau.default('), source.count('torch.ops.sau_core.sau_backward.default('),
          'STRIDES', sorted(set(strides)))
''')


def test_the_ops_let_inductor_keep_the_layout():
    for op in (torch.ops.sau_core.sau.default, torch.ops.sau_core.sau_backward.default):
        assert torch.Tag.flexible_layout in op.tags


def test_compiled_conv_bn_sau_net_has_no_copies_around_the_op(tmp_path):
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / 'inductor'), TORCHINDUCTOR_FX_GRAPH_CACHE='0',
               TORCHINDUCTOR_AUTOGRAD_CACHE='0')
    proc = subprocess.run([sys.executable, '-c', PROBE], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith('CALLS'))
    words = line.split()
    assert words[3] == '0', line  # no kernel named after the op: no copy into or out of its layout
    assert words[5:7] == ['4', '4'], line  # four forward and four backward calls of the opaque op
    assert "(2048, 1, 128, 8)" in line, line  # it gets inductor's channels_last feature maps as they are


def test_compile_can_trace_the_formula_for_inductor_to_fuse(monkeypatch):
    """sau_core.op.COMPILE_FORMULA_DEVICES (empty by default; tools/gpu_check.py measures whether CUDA wants it):
    under torch.compile the op becomes its formula, fullgraph=True holds, eager keeps the fused kernels, and the
    compiled values and gradients pass the op oracle."""
    from op_cases import CASES, N, check_against_reference, make_grad, make_input
    from sau_core import op, sau
    assert op.COMPILE_FORMULA_DEVICES == set()
    monkeypatch.setattr(op, 'COMPILE_FORMULA_DEVICES', {'cpu'})
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward
    shape, channels, make = CASES['nchw_per_channel']
    for dtype in (torch.float32, torch.bfloat16):
        torch._dynamo.reset()
        x = make_input(shape, dtype, 'cpu', make)
        alpha = torch.linspace(0.05, 0.3, channels)
        n = torch.tensor(N)
        compiled = torch.compile(lambda h, a, n: sau(h, a, n), fullgraph=True, backend=backend)

        def run(grad_y):
            leaf = x.detach().clone().requires_grad_()
            a = alpha.clone().requires_grad_()
            y = compiled(leaf, a, n)
            grad_x, grad_alpha = torch.autograd.grad(y, (leaf, a), grad_y)
            return y.detach(), grad_x, grad_alpha, None
        check_against_reference(run, x, alpha, n, make_grad(tuple(x.shape), dtype, 'cpu'))
    assert graphs and not any('sau_core' in str(node.target) for gm in graphs for node in gm.graph.nodes)
    eager = sau(x.float().requires_grad_(), alpha, n)  # eager: the op as always
    assert 'sau_core' in type(eager.grad_fn).__name__
