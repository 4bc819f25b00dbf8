#!/usr/bin/env python
"""SAU against the native activations, side by side on the same tensors, forward+backward.

    python tools/benchmarks/activation.py                     # CPU, 4M and 16M fp32 elements
    python tools/benchmarks/activation.py --device cuda --dtype bfloat16
    python tools/benchmarks/activation.py --std 1   # inputs like batch-normalised features only
    python tools/benchmarks/activation.py --acts sau,sau_inplace,relu --baseline relu

The flags the four benchmarks share: ``--acts a,b,...`` (comma-separated names, default all of
:data:`ACTIVATIONS`), ``--baseline NAME`` (the activation the ratio column divides by, default gelu; no ratios
when it is not measured), ``--device {cpu,cuda}``, ``--rounds N``; and ``--dtype``, ``--sizes``, ``--std``
(comma-separated: each standard deviation gets its own tables). Besides the baseline's ratio, each table ends with
the ratio to LeakyReLU (what SAU costs outside its band, where the kernels take Leaky-ReLU math).

Every activation runs once per round, rounds are repeated and the median is reported, so slow drifts of the
machine hit all of them alike. 'saved' is what autograd keeps for backward, in units of the input's size.
In-place modules get a fresh non-leaf copy of the input each time, made outside the timed region. The inputs
are normal with standard deviation --std, by default both 1e-3 and 1: 1e-3 (the worst case) puts a third of them
within 8/n of zero, SAU's band, where the kernels evaluate exp and erf and the in-place SAU's backward recovers x by
Halley steps; std 1 (batch-normalised features) puts 0.03 % there, and nearly every vector of the CPU kernels takes
the out-of-band fast path.
On CUDA it also reports the fused kernels' share of the device-to-device copy bandwidth, counting the bytes
they must move (forward: read x, write y; backward: read x and grad_y, write grad_x).
"""
import argparse
import statistics
import sys
import time

import torch

from sau_core import ACT_CFGS, SAU, create_act_layer, sau_reference
from tools.zoo.errors import InputError, run_main


class ReferenceSAU(torch.nn.Module):
    """The formula in eager PyTorch, with the same trainable alpha."""

    def __init__(self):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(0.15))

    def forward(self, x):
        return sau_reference(x, self.alpha, 20000.0)


#: name -> (row label, module factory); the default --acts, in this order.
ACTIVATIONS = {
    'sau': ('SAU (fused)', SAU),
    'sau_inplace': ('SAU (fused, in place)', lambda: SAU(inplace=True)),
    'sau_eager': ('SAU (eager reference)', ReferenceSAU),
    'sau_compiled': ('SAU (torch.compile reference)', lambda: torch.compile(ReferenceSAU())),
    'gelu': ('GELU', torch.nn.GELU),
    'relu': ('ReLU', torch.nn.ReLU),
    'leaky_relu': ('LeakyReLU', lambda: torch.nn.LeakyReLU(0.01)),
    'prelu': ('PReLU', torch.nn.PReLU),
}
# The zoo's other activations (sau_core.ACT_CFGS) by their names, labelled by their module class.
for _name in ACT_CFGS:
    if _name not in ACTIVATIONS:
        ACTIVATIONS[_name] = (ACT_CFGS[_name]['type'], lambda _name=_name: create_act_layer(_name))


def parse_acts(text):
    """The names of --acts, checked against :data:`ACTIVATIONS`."""
    names = [a.strip() for a in text.split(',') if a.strip()]
    if not names:
        raise InputError('--acts: give at least one activation')
    unknown = [a for a in names if a not in ACTIVATIONS]
    if unknown:
        raise InputError(f'unknown activation {unknown[0]!r}; choose from: {", ".join(ACTIVATIONS)}')
    return names


def module_input(module, x):
    """x, or for an in-place module a copy it may overwrite (a non-leaf, so that gradients reach x)."""
    return x.clone() if getattr(module, 'inplace', False) else x


def saved_input_sizes(module, x):
    """Bytes autograd saves for backward, divided by the input's bytes."""
    saved = []
    inputs = module_input(module, x)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        module(inputs)
    input_bytes = x.numel() * x.element_size()
    return sum(t.numel() * t.element_size() for t in saved if t.numel() > 1) / input_bytes


def timer(device):
    if device.type == 'cuda':
        def measure(fn):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
    else:
        def measure(fn):
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
    return measure


def run(numel, dtype, device, rounds, std, acts, baseline):
    torch.manual_seed(0)
    x = (torch.randn(numel, device=device) * std).to(dtype).requires_grad_()
    grad_y = torch.randn(numel, device=device).to(dtype)
    modules = {name: ACTIVATIONS[name][1]().to(device) for name in acts}
    measure = timer(device)

    def step(module):
        inputs = module_input(module, x)

        def fn():
            module(inputs).backward(grad_y)
        return fn

    times = {name: [] for name in modules}
    for name, module in modules.items():  # warm-up (and compilation)
        step(module)()
        step(module)()
    for _ in range(rounds):
        for name, module in modules.items():
            times[name].append(measure(step(module)))
    median = {name: statistics.median(t) for name, t in times.items()}
    base = median.get(baseline)
    base_label = ACTIVATIONS[baseline][0] if baseline in ACTIVATIONS else baseline
    leaky = median.get('leaky_relu') if baseline != 'leaky_relu' else None
    rows = [(ACTIVATIONS[name][0], median[name] * 1e3, None if base is None else median[name] / base,
             saved_input_sizes(m, x), None if leaky is None else median[name] / leaky)
            for name, m in modules.items()]

    print(f'\n{numel / 2**20:g}M {str(dtype).replace("torch.", "")} elements (std {std:g}) on {device}, '
          f'forward+backward, median of {rounds} rounds')
    ratio = f'/ {base_label}'
    width = max([30] + [len(label) for label, *_ in rows])
    extra = leaky is not None
    print(f'| {"activation":<{width}} | {"ms":>8} | {ratio:>7} | {"saved (x input)":>15} |'
          + (' / LeakyReLU |' if extra else ''))
    print(f'|{"-" * (width + 2)}|{"-" * 9}:|{"-" * (max(len(ratio), 7) + 1)}:|{"-" * 16}:|'
          + ('-' * 12 + ':|' if extra else ''))
    for label, ms, rel, saved, rel_leaky in rows:
        rel_text = '-' if rel is None else f'{rel:.2f}'
        print(f'| {label:<{width}} | {ms:8.2f} | {rel_text:>{max(len(ratio), 7)}} | {saved:15.2f} |'
              + (f' {rel_leaky:11.2f} |' if extra else ''))
    if device.type == 'cuda' and 'sau' in modules:
        report_bandwidth(x.detach(), grad_y, modules['sau'], measure, rounds)


def report_bandwidth(x, grad_y, module, measure, rounds):
    """The fused kernels through the sau_core ops (forward, in place, backward from x and from the output)."""
    ops = torch.ops.sau_core
    alpha, n = module.alpha.detach(), module.n
    copy_out = torch.empty_like(x)
    bytes_per = x.numel() * x.element_size()
    y = ops.sau(x, alpha, n, False)
    results = {
        'copy': (lambda: copy_out.copy_(x), 2 * bytes_per),
        'SAU forward': (lambda: ops.sau(x, alpha, n, False), 2 * bytes_per),
        'SAU forward in place': (lambda: ops._sau_inplace(copy_out, alpha, n), 2 * bytes_per),
        'SAU backward': (lambda: ops.sau_backward(grad_y, x, alpha, n, False, False, True, False), 3 * bytes_per),
        'SAU backward from the output': (
            lambda: ops.sau_backward(grad_y, y, alpha, n, False, True, True, False), 3 * bytes_per),
    }
    bandwidth = {}
    for name, (fn, moved) in results.items():
        fn()
        bandwidth[name] = moved / statistics.median(measure(fn) for _ in range(rounds)) / 1e9
    for name in list(results)[1:]:
        print(f'{name}: {bandwidth[name]:.0f} GB/s = {bandwidth[name] / bandwidth["copy"]:.0%} of the '
              f'device-to-device copy ({bandwidth["copy"]:.0f} GB/s)')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--acts', default=','.join(list(ACTIVATIONS)[:8]),
                        help=f'comma-separated activations, from: {", ".join(ACTIVATIONS)} (default: the first 8)')
    parser.add_argument('--baseline', default='gelu', help='the activation the ratio column divides by '
                                                           '(default gelu)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16', 'float64'])
    parser.add_argument('--sizes', default='4,16', help='millions (2**20) of elements, comma-separated')
    parser.add_argument('--std', default='1e-3,1',
                        help='standard deviations of the inputs, comma-separated (default 1e-3,1)')
    args = parser.parse_args(argv)
    acts = parse_acts(args.acts)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device is available')
    from sau_core.kernels import cpu
    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads, sau_core CPU kernels: {cpu.isa()}'
          + (f', {torch.cuda.get_device_name(device)}' if device.type == 'cuda' else ''))
    try:
        stds = [float(v) for v in args.std.split(',') if v.strip()]
    except ValueError:
        raise InputError(f'--std: expected comma-separated numbers, got {args.std!r}') from None
    for std in stds:
        for size in args.sizes.split(','):
            run(int(float(size) * 2**20), getattr(torch, args.dtype), device, args.rounds, std, acts,
                args.baseline)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
