#!/usr/bin/env python
"""SAU against the native activations, side by side on the same tensors, forward+backward.

    python tools/benchmark_activation.py                     # CPU, 4M and 16M fp32 elements
    python tools/benchmark_activation.py --device cuda --dtype bfloat16
    python tools/benchmark_activation.py --std 1   # inputs like batch-normalised features

Every activation runs once per round, rounds are repeated and the median is reported, so slow drifts of the
machine hit all of them alike. 'saved' is what autograd keeps for backward, in units of the input's size.
In-place modules get a fresh non-leaf copy of the input each time, made outside the timed region. The inputs
are normal with standard deviation --std: the default 1e-3 puts a third of them within 8/n of zero, where the
in-place SAU's backward recovers x by Halley steps (batch-normalised features, std 1: 0.03 %).
On CUDA it also reports the fused kernels' share of the device-to-device copy bandwidth, counting the bytes
they must move (forward: read x, write y; backward: read x and grad_y, write grad_x).
"""
import argparse
import statistics
import time

import torch

from sau_core import SAU, sau_reference


class ReferenceSAU(torch.nn.Module):
    """The formula in eager PyTorch, with the same trainable alpha."""

    def __init__(self):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.tensor(0.15))

    def forward(self, x):
        return sau_reference(x, self.alpha, 20000.0)


def activations():
    return {
        'SAU (fused)': SAU(),
        'SAU (fused, in place)': SAU(inplace=True),
        'SAU (eager reference)': ReferenceSAU(),
        'SAU (torch.compile reference)': torch.compile(ReferenceSAU()),
        'GELU': torch.nn.GELU(),
        'ReLU': torch.nn.ReLU(),
        'LeakyReLU': torch.nn.LeakyReLU(0.01),
        'PReLU': torch.nn.PReLU(),
    }


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


def run(numel, dtype, device, rounds, std):
    torch.manual_seed(0)
    x = (torch.randn(numel, device=device) * std).to(dtype).requires_grad_()
    grad_y = torch.randn(numel, device=device).to(dtype)
    modules = {name: m.to(device) for name, m in activations().items()}
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
    rows = [(name, median[name] * 1e3, median[name] / median['GELU'], saved_input_sizes(m, x))
            for name, m in modules.items()]

    print(f'\n{numel / 2**20:g}M {str(dtype).replace("torch.", "")} elements (std {std:g}) on {device}, '
          f'forward+backward, median of {rounds} rounds')
    print(f'| {"activation":<30} | {"ms":>8} | {"/ GELU":>7} | {"saved (x input)":>15} |')
    print(f'|{"-" * 32}|{"-" * 10}:|{"-" * 8}:|{"-" * 16}:|')
    for name, ms, ratio, saved in rows:
        print(f'| {name:<30} | {ms:8.2f} | {ratio:7.2f} | {saved:15.2f} |')
    if device.type == 'cuda':
        report_bandwidth(x.detach(), grad_y, modules['SAU (fused)'], measure, rounds)


def report_bandwidth(x, grad_y, module, measure, rounds):
    from sau_core.op import dense_layout, backend
    layout = dense_layout(x, 1)[1]
    kernels = backend(x.device)
    alpha, n = module.alpha.detach(), module.n
    copy_out = torch.empty_like(x)
    bytes_per = x.numel() * x.element_size()
    y = kernels.forward(x, alpha, n, False, layout)
    results = {
        'copy': (lambda: copy_out.copy_(x), 2 * bytes_per),
        'SAU forward': (lambda: kernels.forward(x, alpha, n, False, layout), 2 * bytes_per),
        'SAU forward in place': (lambda: kernels.forward_(copy_out, alpha, n, layout), 2 * bytes_per),
        'SAU backward': (lambda: kernels.backward(grad_y, x, copy_out, alpha, n, False, False, layout, True, False),
                         3 * bytes_per),
        'SAU backward from the output': (
            lambda: kernels.backward(grad_y, y, copy_out, alpha, n, False, True, layout, True, False), 3 * bytes_per),
    }
    bandwidth = {}
    for name, (fn, moved) in results.items():
        fn()
        bandwidth[name] = moved / statistics.median(measure(fn) for _ in range(rounds)) / 1e9
    for name in list(results)[1:]:
        print(f'{name}: {bandwidth[name]:.0f} GB/s = {bandwidth[name] / bandwidth["copy"]:.0%} of the '
              f'device-to-device copy ({bandwidth["copy"]:.0f} GB/s)')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16', 'float64'])
    parser.add_argument('--sizes', default='4,16', help='millions (2**20) of elements, comma-separated')
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--std', type=float, default=1e-3, help='standard deviation of the inputs')
    args = parser.parse_args()
    device = torch.device(args.device)
    from sau_core.kernels import cpu
    print(f'torch {torch.__version__}, {torch.get_num_threads()} CPU threads, sau_core CPU kernels: {cpu.isa()}'
          + (f', {torch.cuda.get_device_name(device)}' if device.type == 'cuda' else ''))
    for size in args.sizes.split(','):
        run(int(float(size) * 2**20), getattr(torch, args.dtype), device, args.rounds, args.std)


if __name__ == '__main__':
    main()
