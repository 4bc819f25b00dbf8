#!/usr/bin/env python
"""One prepared GPU check of the SAU op, needing only torch and triton (no MMCV, MMEngine or fairseq).

    PYTHONPATH=.:tests python tools/gpu_check.py --out gpu_check     # on the GPU machine, a few minutes
    PYTHONPATH=.:tests TRITON_INTERPRET=1 python tools/gpu_check.py --device cpu --small --no-compile --out /tmp/g

(from the repository root: it runs outside the zoo's venv, where only torch and triton are installed, so the
checkout (sau_core) and tests/ (the op oracle, tests/op_cases.py) come from PYTHONPATH.)

It writes ``report.md`` and ``report.json`` under --out, with:

1. the op oracle of tests/op_cases.py (element-wise, inside and outside the band) on the device: fp32, fp16,
   bf16 (and fp64), shared and per-channel alpha, NCHW and channels_last, out of place, in place and
   zero-centred. On CUDA through the public op (the Triton kernels registered for CUDA); on CPU (--device cpu,
   with TRITON_INTERPRET=1) through the same CUDA kernel functions called on CPU tensors, as the tests do;
2. the Triton kernels' share of the device-to-device copy bandwidth, forward, forward in place, backward and
   backward from the output (target >= 85 %);
3. one training step of a conv-BN-activation network, SAU (in place) against ReLU, eager and under torch.compile,
   where compiled SAU is either the opaque op or its formula (sau_core.op.COMPILE_FORMULA_DEVICES, which lets
   inductor fuse it into the BatchNorm kernels): the measurement that chooses that option's default for CUDA;
4. the device syncs (CUDA's sync debug mode) and host reads (Tensor.item, tolist, ... ) in steady-state training
   steps of that network (target 0); on CPU through the GPU's asynchronous path (sau_core.op.ASYNC_DEVICES).

sau_core's C++ extension is not needed on CUDA (import sau_core works without it); nothing of the zoo is imported.
"""
import argparse
import json
import os
import statistics
import sys
import time
import warnings

import torch

try:
    import op_cases  # noqa: F401  (tests/op_cases.py: the oracle)
    import sau_core
    from sau_core import SAU, op
except ImportError as e:
    sys.exit(f'error: {e}; run from the repository root as PYTHONPATH=.:tests python tools/gpu_check.py ...')


def oracle(device, small):
    """The op oracle per dtype / layout / form; returns rows (what, dtype, worst err/bound or the failure)."""
    from op_cases import CASES, N, check_against_reference, make_grad, make_input, op_path, param_dtype, \
        alpha_sets, TOLERANCES, TRITON_INTERPRETER_TOLERANCES
    interpreted = device.type == 'cpu'
    tolerances = TRITON_INTERPRETER_TOLERANCES if interpreted else TOLERANCES
    cases = ['nchw_shared_alpha', 'nchw_per_channel', 'channels_last_per_channel', 'matrix_per_channel']
    dtypes = [torch.float32, torch.float16, torch.bfloat16] + ([] if small else [torch.float64])
    ns = [N] if small else [3.0, N]
    forms = [('out of place', False, False), ('in place', False, True), ('zero-centred', True, False)]
    rows = []
    for case in cases:
        shape, channels, make = CASES[case]
        for dtype in dtypes:
            if interpreted and dtype == torch.float16:
                continue  # the interpreter's fp16 path is not what a GPU runs; covered on CUDA
            for n_value in ns:
                x = make_input(shape, dtype, device, make, n=n_value)
                grad_y = make_grad(tuple(x.shape), dtype, device)
                n = torch.tensor(n_value, dtype=param_dtype(dtype), device=device)
                for form, zero_centred, inplace in forms:
                    alpha = alpha_sets(channels, dtype, inplace=inplace)['paper'].to(device)
                    run = (interpreted_path(x, alpha, n, zero_centred, inplace) if interpreted
                           else op_path(x, alpha, n, zero_centred, inplace))
                    what = f'{case}, n={n_value:g}, {form}'
                    try:
                        report = check_against_reference(run, x, alpha, n, grad_y, zero_centred, inplace,
                                                         tolerances=tolerances)
                        rows.append((what, str(dtype).replace('torch.', ''), max(report.values(), default=0.0)))
                    except AssertionError as error:
                        rows.append((what, str(dtype).replace('torch.', ''), f'FAILED: {error}'))
    return rows


def interpreted_path(x, alpha, n, zero_centred, inplace):
    """The CUDA kernel functions of sau_core.op on CPU tensors (Triton's interpreter), as test_triton_kernels."""
    def run(grad_y):
        if inplace:
            y = x.clone()
            op._sau_inplace_cuda(y, alpha, n)
        else:
            y = op._sau_cuda(x, alpha, n, zero_centred)
        grad_x, grad_alpha, grad_n = op._sau_backward_cuda(grad_y, y if inplace else x, alpha, n, zero_centred,
                                                           inplace, True, True)
        return y, grad_x, grad_alpha, grad_n
    return run


def timer(device):
    def measure(fn):
        if device.type == 'cuda':
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    return measure


def bandwidth(device, small, rounds):
    """GB/s of the kernels and their share of the device-to-device copy, per dtype."""
    if device.type == 'cuda':
        kernels = {'forward': lambda x, g, y, a, n, out: op._sau_cuda(x, a, n, False),
                   'forward in place': lambda x, g, y, a, n, out: op._sau_inplace_cuda(out, a, n),
                   'backward': lambda x, g, y, a, n, out: op._sau_backward_cuda(g, x, a, n, False, False, True,
                                                                                False),
                   'backward from the output': lambda x, g, y, a, n, out: op._sau_backward_cuda(
                       g, y, a, n, False, True, True, False)}
    else:
        kernels = {'forward': lambda x, g, y, a, n, out: op._sau_cuda(x, a, n, False),
                   'backward': lambda x, g, y, a, n, out: op._sau_backward_cuda(g, x, a, n, False, False, True,
                                                                                False)}
    numel = 2 ** 14 if small else 2 ** 26
    measure = timer(device)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for std in (1e-3, 1.0):
            x = (torch.randn(numel, device=device) * std).to(dtype)
            g = torch.randn(numel, device=device).to(dtype)
            a = torch.tensor([0.15], device=device)
            n = torch.tensor(20000.0, device=device)
            y = op._sau_cuda(x, a, n, False)
            out = torch.empty_like(x)
            moved = {'forward': 2, 'forward in place': 2, 'backward': 3, 'backward from the output': 3}
            copy = lambda: out.copy_(x)  # noqa: E731
            copy()
            copy_s = statistics.median(measure(copy) for _ in range(rounds))
            copy_gbs = 2 * x.numel() * x.element_size() / copy_s / 1e9
            for name, kernel in kernels.items():
                fn = lambda kernel=kernel: kernel(x, g, y, a, n, out)  # noqa: E731
                fn()
                seconds = statistics.median(measure(fn) for _ in range(rounds))
                gbs = moved[name] * x.numel() * x.element_size() / seconds / 1e9
                rows.append((str(dtype).replace('torch.', ''), std, name, gbs, gbs / copy_gbs))
    return rows


class Net(torch.nn.Module):
    """conv-BN-activation blocks, the activation in place as MMCV's ConvModule asks."""

    def __init__(self, act, channels, blocks):
        super().__init__()
        layers = [torch.nn.Conv2d(3, channels, 3, padding=1, bias=False)]
        for _ in range(blocks):
            layers += [torch.nn.BatchNorm2d(channels), act(channels),
                       torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)]
        self.body = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class FormulaSAU(SAU):
    """SAU whose compiled form is its formula (sau_core.op.COMPILE_FORMULA_DEVICES), which inductor fuses into
    the neighbouring kernels; eager it is the fused op like SAU."""

    def __init__(self, channels):
        super().__init__(num_parameters=channels, inplace=True)

    def forward(self, x):
        return op.fused_sau(x, self.alpha, self.n, False, True, self._warn_inplace_fallback, check_n=False,
                            compile_formula=True)


ACTS = {'relu': lambda c: torch.nn.ReLU(inplace=True), 'sau': lambda c: SAU(num_parameters=c, inplace=True),
        'sau_formula': FormulaSAU}


def network_steps(device, small, rounds, compile_too):
    """ms per training step (forward, backward, SGD step), and peak memory on CUDA, per variant."""
    channels, blocks, shape = (8, 2, (2, 3, 16, 16)) if small else (64, 8, (16, 3, 128, 128))
    variants = [('relu', 'eager'), ('sau', 'eager')]
    if compile_too:
        variants += [('relu', 'compiled'), ('sau', 'compiled (opaque op)'), ('sau_formula', 'compiled (fused formula)')]
    measure = timer(device)
    x = torch.randn(shape, device=device)
    steps = {}
    for act, mode in variants:
        torch.manual_seed(0)
        model = Net(ACTS[act], channels, blocks).to(device)
        if device.type == 'cuda':
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        run = torch.compile(model, fullgraph=True) if mode != 'eager' else model

        def step(run=run, optimizer=optimizer):
            optimizer.zero_grad(set_to_none=True)
            run(x).square().mean().backward()
            optimizer.step()
        for _ in range(3):
            step()
        steps[(act, mode)] = (step, model)
    times = {key: [] for key in steps}
    for _ in range(rounds):  # interleaved rounds
        for key, (step, _) in steps.items():
            times[key].append(measure(step))
    rows = []
    for (act, mode), samples in times.items():
        peak = None
        if device.type == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            steps[(act, mode)][0]()
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        rows.append((act, mode, statistics.median(samples) * 1e3, min(samples) * 1e3, max(samples) * 1e3, peak))
    return rows, {key: model for key, (_, model) in steps.items()}


class _ArrivedEvent:
    """On CPU: the asynchronous range read's event, always arrived (as tests/test_op_hostsync.py fakes it)."""

    def query(self):
        return True

    def synchronize(self):
        pass


READS = ('item', 'tolist', '__bool__', '__float__', '__int__', '__index__', 'numpy')


def host_syncs(device, small):
    """Device syncs (CUDA's sync debug mode) and host reads in three steady-state steps of the in-place SAU net."""
    torch.manual_seed(0)
    channels, blocks, shape = (8, 2, (2, 3, 16, 16)) if small else (32, 8, (4, 3, 64, 64))
    model = Net(ACTS['sau'], channels, blocks).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(shape, device=device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        model(x).square().mean().backward()
        optimizer.step()
    restore = op.ASYNC_DEVICES, op._CudaEvent
    if device.type == 'cpu':  # CPU reads alpha's range at every call (no sync there); check the GPU's logic
        op.ASYNC_DEVICES, op._CudaEvent = {'cpu'}, _ArrivedEvent
    for _ in range(2):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    reads = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name, original):
        def counted(self, *args, **kwargs):
            if not getattr(self, '_sau_host_copy', False):
                reads.append(name)
            return original(self, *args, **kwargs)
        return counted
    syncs = 0
    try:
        for name, original in originals.items():
            setattr(torch.Tensor, name, counting(name, original))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            if device.type == 'cuda':
                torch.cuda.set_sync_debug_mode('warn')
            for _ in range(3):
                step()
            if device.type == 'cuda':
                torch.cuda.set_sync_debug_mode('default')
        syncs = sum('synchroniz' in str(w.message) for w in caught)
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
        op.ASYNC_DEVICES, op._CudaEvent = restore
    return {'steps': 3, 'device_syncs': syncs if device.type == 'cuda' else None, 'host_reads': len(reads),
            'layers': blocks}


def markdown(report):
    lines = [f"# GPU check: {report['device']}", '', f"torch {report['torch']}, triton {report['triton']}, "
             f"sau_core C++ kernels: {report['cpu_kernels']}, {report['seconds']:.0f} s", '']
    lines += ['## Op oracle (worst error / bound; <= 1 passes)', '', '| case | dtype | worst |', '|---|---|---:|']
    for what, dtype, worst in report['oracle']:
        lines.append(f'| {what} | {dtype} | {worst if isinstance(worst, str) else f"{worst:.3f}"} |')
    lines += ['', '## Bandwidth (share of the device-to-device copy; target >= 85 %)', '',
              '| dtype | input std | kernel | GB/s | share |', '|---|---:|---|---:|---:|']
    for dtype, std, name, gbs, share in report['bandwidth']:
        lines.append(f'| {dtype} | {std:g} | {name} | {gbs:.0f} | {share:.0%} |')
    lines += ['', '## Conv-BN-activation training step (interleaved rounds)', '',
              '| activation | mode | median ms | min | max | / ReLU (same mode) | peak MiB |',
              '|---|---|---:|---:|---:|---:|---:|']
    relu = {mode.split(' ')[0]: ms for act, mode, ms, *_ in report['network'] if act == 'relu'}
    for act, mode, ms, low, high, peak in report['network']:
        base = relu.get(mode.split(' ')[0])
        lines.append(f'| {act} | {mode} | {ms:.2f} | {low:.2f} | {high:.2f} | '
                     f'{"-" if base is None else f"{ms / base:.3f}"} | {"-" if peak is None else f"{peak:.1f}"} |')
    sync = report['host_sync']
    lines += ['', '## Host syncs', '', f"{sync['steps']} steady-state steps of a {sync['layers']}-layer in-place "
              f"SAU network: {sync['device_syncs']} device syncs (CUDA sync debug mode), {sync['host_reads']} "
              'host reads (target 0 each)', '']
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='gpu_check', help='folder for report.md and report.json')
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda',
                        help='cuda (default), or cpu for a smoke test of this script under TRITON_INTERPRET=1')
    parser.add_argument('--small', action='store_true', help='tiny sizes (the CPU smoke test)')
    parser.add_argument('--no-compile', action='store_true', help='skip the torch.compile variants')
    parser.add_argument('--rounds', type=int, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda but no CUDA device is available (use --device cpu with TRITON_INTERPRET=1 for '
              'a smoke test)', file=sys.stderr)
        return 2
    if device.type == 'cpu' and os.environ.get('TRITON_INTERPRET') != '1':
        print('error: --device cpu runs the Triton kernels in the interpreter: set TRITON_INTERPRET=1',
              file=sys.stderr)
        return 2
    import triton
    rounds = args.rounds or (3 if args.small else 20)
    start = time.perf_counter()
    try:
        cpu_kernels = sau_core.kernels.cpu.isa()
    except Exception:  # noqa: BLE001  (the C++ extension is optional here)
        cpu_kernels = 'not built'
    report = {'device': torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu (Triton interpreter)',
              'torch': torch.__version__, 'triton': triton.__version__, 'cpu_kernels': cpu_kernels}
    os.makedirs(args.out, exist_ok=True)
    report['oracle'] = oracle(device, args.small)
    report['bandwidth'] = bandwidth(device, args.small, rounds)
    report['network'], _ = network_steps(device, args.small, rounds, not args.no_compile)
    report['host_sync'] = host_syncs(device, args.small)
    report['seconds'] = time.perf_counter() - start
    text = markdown(report)
    with open(os.path.join(args.out, 'report.md'), 'w') as f:
        f.write(text)
    with open(os.path.join(args.out, 'report.json'), 'w') as f:
        json.dump(report, f, indent=1, default=str)
    print(text)
    failed = [row for row in report['oracle'] if isinstance(row[2], str)]
    return 1 if failed or report['host_sync']['host_reads'] or report['host_sync']['device_syncs'] else 0


if __name__ == '__main__':
    sys.exit(main())
