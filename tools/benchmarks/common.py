"""What the task benchmarks (``tools/benchmarks/{detection,segmentation,translation}.py``) share.

One convention: ``--acts a,b`` (comma-separated activations), ``--baseline NAME`` (the activation the ratio
columns divide by, default relu; no ratios when it is not measured), ``--device {cpu,cuda}``, ``--rounds N``.

Each activation runs in a subprocess of its own (``python -m tools.benchmarks.<task> --worker ACT``), so that
its memory high-water mark is its own; the subprocesses alternate over rounds (reversing the order every other
round) so that slow drifts of a shared machine hit every activation alike, and the best round of each is
reported. Memory has one definition, :class:`MemoryMeter`'s *step memory*.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from tools.zoo import REPO_ROOT
from tools.zoo.errors import InputError


class MemoryMeter:
    """Step memory, the benchmarks' one memory figure: the peak of the tensor bytes live during one training
    step above what was live when it began: what a step adds (the activations kept for backward, the
    gradients where the step makes them, the optimizer's temporaries). Allocator-independent on both devices:
    CUDA from the caching allocator's counters, CPU from the PyTorch profiler's memory events (each op's
    allocations and frees, in time order), so the RSS a heap keeps or returns does not enter it. Measured on
    one extra step after the timed ones (the profiler would slow those)."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'

    def step_mib(self, step):
        """Run ``step()`` once and return its step memory in MiB."""
        import torch
        if self.cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            return (torch.cuda.max_memory_allocated() - base) / 2**20
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        live = peak = 0
        for event in sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start):
            live += event.self_cpu_memory_usage
            peak = max(peak, live)
        return peak / 2**20


def add_arguments(parser, acts='relu,sau', rounds=1):
    """The flags every task benchmark takes, and the internal ``--worker``."""
    parser.add_argument('--acts', default=acts, help=f'comma-separated activations (default {acts})')
    parser.add_argument('--baseline', default='relu', help='the activation the ratios divide by (default relu)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--rounds', type=int, default=rounds,
                        help=f'alternate the activations this often, report the best (default {rounds})')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # internal: run one activation, print JSON


def parse_acts(text):
    acts = [a.strip() for a in text.split(',') if a.strip()]
    if not acts:
        raise InputError('--acts: give at least one activation')
    return acts


def time_steps(step, warmup, steps, device):
    """Runs ``step()`` warmup + steps times; the seconds of the timed ones."""
    import torch
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        step()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def run_workers(script, acts, rounds, worker_args):
    """Runs ``python -m <script's module> --worker ACT *worker_args`` for each activation, ``rounds`` times
    interleaved; each worker prints one JSON object as its last line. Returns {act: [result of each round]};
    InputError with the worker's last lines of stderr when one fails.

    As modules: run as a file, ``tools/benchmarks/`` would come first on the worker's path, and its
    ``detection.py`` and ``segmentation.py`` would hide the task packages the configs import.
    """
    module = osp.splitext(osp.relpath(osp.abspath(script), REPO_ROOT))[0].replace(os.sep, '.')
    results = {act: [] for act in acts}
    for r in range(rounds):
        for act in (acts if r % 2 == 0 else acts[::-1]):
            proc = subprocess.run([sys.executable, '-m', module, '--worker', act, *worker_args],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tail = '\n'.join(proc.stderr.strip().splitlines()[-5:])
                raise InputError(f'the benchmark of {act} failed (exit {proc.returncode}):', details=tail)
            results[act].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def best_of(results, keys):
    """The minimum over rounds of each key, per activation, each key on its own (time and memory may come from
    different rounds: each column's least-disturbed one)."""
    return {act: {key: min(r[key] for r in runs) for key in keys} for act, runs in results.items()}


def ratio_columns(best, baseline, columns):
    """``(header cells, {act: cells})``: each of ``columns`` (``[(key, label)]``) divided by the baseline's,
    to 3 decimals; none when the baseline was not among the activations measured."""
    base = best.get(baseline)
    if base is None:
        return [], {act: [] for act in best}
    return ([f'{label} / {baseline}' for _, label in columns],
            {act: [f'{b[key] / base[key]:.3f}' for key, _ in columns] for act, b in best.items()})


def print_spread(results, baseline, columns):
    """One line per activation under the table: the lowest and highest of its round-by-round ratios to the
    baseline (rounds alternate the activations, so round r of each is measured side by side), to tell an
    effect from the machine's noise; nothing when the baseline was not measured."""
    base = results.get(baseline)
    if base is None:
        return
    for act, runs in results.items():
        if act == baseline:
            continue
        spans = []
        for key, label in columns:
            ratios = [r[key] / b[key] for r, b in zip(runs, base)]
            spans.append(f'{label} {min(ratios):.3f}-{max(ratios):.3f}')
        print(f'{act} / {baseline} over {len(runs)} round(s): ' + ', '.join(spans))


def print_table(header, rows):
    """A Markdown table; every column but the first is right-aligned."""
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print('| ' + ' | '.join(c.ljust(w) if j == 0 else c.rjust(w)
                                for j, (c, w) in enumerate(zip(row, widths))) + ' |')
        if i == 0:
            print('|' + '|'.join('-' * (w + 1) + (':' if j else '-') for j, w in enumerate(widths)) + '|')
