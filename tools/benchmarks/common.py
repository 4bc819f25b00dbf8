"""What the task benchmarks (``tools/benchmarks/{detection,segmentation,translation}.py``) share.

One convention: ``--acts a,b`` (comma-separated activations), ``--baseline NAME`` (the activation the ratio
columns divide by, default relu; no ratios when it is not measured), ``--device {cpu,cuda}``, ``--rounds N``.

Each round is one subprocess (``python -m tools.benchmarks.<task> --worker a,b``) that builds every
activation's model and steps them interleaved: step i of each activation in turn, the order rotating, so that
a shared machine's drifts (its load, its clock) reach them alike; the order of the builds reverses every other
round. A time ratio is the median, over every timed step of every round, of a step's time over the baseline's
step next to it; the spread of those ratios is printed under the table. Memory has one definition,
:class:`MemoryMeter`'s *step memory*, which counts tensor bytes and so does not depend on what else the
process holds.
"""
import argparse
import json
import os
import os.path as osp
import statistics
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
                        help=f'subprocesses, each stepping every activation interleaved (default {rounds})')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # internal: measure these activations, print JSON


def parse_acts(text):
    acts = [a.strip() for a in text.split(',') if a.strip()]
    if not acts:
        raise InputError('--acts: give at least one activation')
    return acts


def measure(build, acts, warmup, steps, device):
    """In a worker: ``build(act)`` gives each activation's ``(step, info)``; run warmup + steps rounds of one
    step of each activation in turn (the order rotating), then each one's step memory, and print one JSON line
    per activation: its median step time, the times of its timed steps, its step memory and ``info()``."""
    import torch
    built = {act: build(act) for act in acts}
    times = {act: [] for act in acts}
    for i in range(warmup + steps):
        for act in acts[i % len(acts):] + acts[:i % len(acts)]:
            start = time.perf_counter()
            built[act][0]()
            if device.type == 'cuda':
                torch.cuda.synchronize()
            if i >= warmup:
                times[act].append(time.perf_counter() - start)
    for act, (step, info) in built.items():
        print(json.dumps(dict(act=act, step_s=statistics.median(times[act]), times=times[act],
                              step_mib=MemoryMeter(device).step_mib(step), **info())))


def run_workers(script, acts, rounds, worker_args):
    """Runs ``python -m <script's module> --worker a,b,... *worker_args`` ``rounds`` times (the activations'
    order reversed every other round); each prints one JSON line per activation last. Returns
    {act: [result of each round]}; InputError with the worker's last lines of stderr when one fails.

    As modules: run as a file, ``tools/benchmarks/`` would come first on the worker's path, and its
    ``detection.py`` and ``segmentation.py`` would hide the task packages the configs import.
    """
    module = osp.splitext(osp.relpath(osp.abspath(script), REPO_ROOT))[0].replace(os.sep, '.')
    results = {act: [] for act in acts}
    for r in range(rounds):
        order = acts if r % 2 == 0 else acts[::-1]
        proc = subprocess.run([sys.executable, '-m', module, '--worker', ','.join(order), *worker_args],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = '\n'.join(proc.stderr.strip().splitlines()[-5:])
            raise InputError(f'the benchmark of {",".join(order)} failed (exit {proc.returncode}):', details=tail)
        for line in proc.stdout.strip().splitlines()[-len(acts):]:
            result = json.loads(line)
            results[result['act']].append(result)
    return results


def best_of(results, keys):
    """The minimum over rounds of each key, per activation, each key on its own (time and memory may come from
    different rounds: each column's least-disturbed one)."""
    return {act: {key: min(r[key] for r in runs) for key in keys} for act, runs in results.items()}


def paired_ratios(runs, base, key):
    """An activation's ratios to the baseline for ``key``: for the step time, every timed step over the
    baseline's step run next to it (``measure`` interleaves them), in every round; otherwise round by round."""
    if key == 'step_s':
        return [t / b for run, base_run in zip(runs, base) for t, b in zip(run['times'], base_run['times'])]
    return [run[key] / base_run[key] for run, base_run in zip(runs, base)]


def ratio_columns(results, baseline, columns):
    """``(header cells, {act: cells})``: for each of ``columns`` (``[(key, label)]``) the median of the
    activation's :func:`paired_ratios`, to 3 decimals; none when the baseline was not among those measured."""
    base = results.get(baseline)
    if base is None:
        return [], {act: [] for act in results}
    return ([f'{label} / {baseline}' for _, label in columns],
            {act: [f'{statistics.median(paired_ratios(runs, base, key)):.3f}' for key, _ in columns]
             for act, runs in results.items()})


def print_spread(results, baseline, columns):
    """One line per activation under the table: the lowest and highest of its :func:`paired_ratios` (the
    table holds their median) and how many there are, to tell an effect from the machine's noise; nothing
    without the baseline."""
    base = results.get(baseline)
    if base is None:
        return
    for act, runs in results.items():
        if act == baseline:
            continue
        spans = []
        for key, label in columns:
            ratios = paired_ratios(runs, base, key)
            spans.append(f'{label} {min(ratios):.3f}-{max(ratios):.3f} ({len(ratios)})')
        print(f'{act} / {baseline}, lowest-highest (count) of the paired ratios: ' + ', '.join(spans))


def print_table(header, rows):
    """A Markdown table; every column but the first is right-aligned."""
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print('| ' + ' | '.join(c.ljust(w) if j == 0 else c.rjust(w)
                                for j, (c, w) in enumerate(zip(row, widths))) + ' |')
        if i == 0:
            print('|' + '|'.join('-' * (w + 1) + (':' if j else '-') for j, w in enumerate(widths)) + '|')
