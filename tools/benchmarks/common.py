"""What the task benchmarks (``tools/benchmark_{detection,segmentation,translation}.py``) share.

Each activation runs in a subprocess of its own, so that its memory high-water mark is its own; the
subprocesses alternate over rounds (reversing the order every other round) so that slow drifts of a shared
machine hit every activation alike, and the best round of each is reported as ratios to the first
activation. In the worker, :class:`MemoryMeter` reads the peak memory (CPU: peak RSS; CUDA: peak allocated).
"""
import json
import resource
import subprocess
import sys
import time


class MemoryMeter:
    """Peak memory of this process in bytes: ``total()`` since it started, ``growth()`` over what it held
    when ``start()`` was called (model and input: the rest is what the training steps add)."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'
        self.base = 0

    def _now(self):
        import torch
        if self.cuda:
            return torch.cuda.memory_allocated()
        with open('/proc/self/statm') as f:  # resident pages now
            return int(f.read().split()[1]) * resource.getpagesize()

    def start(self):
        if self.cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()
        self.base = self._now()

    def total(self):
        if self.cuda:
            import torch
            return torch.cuda.max_memory_allocated()
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    def growth(self):
        return self.total() - self.base


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
    """Runs ``python script --worker ACT *worker_args`` for each activation, ``rounds`` times interleaved;
    each worker prints one JSON object as its last line. Returns {act: [result of each round]}; exits with
    the worker's last lines of stderr when one fails."""
    results = {act: [] for act in acts}
    for r in range(rounds):
        for act in (acts if r % 2 == 0 else acts[::-1]):
            proc = subprocess.run([sys.executable, script, '--worker', act, *worker_args],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tail = '\n'.join(proc.stderr.strip().splitlines()[-5:])
                raise SystemExit(f'error: the benchmark of {act} failed (exit {proc.returncode}):\n{tail}')
            results[act].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def best_of(results, keys):
    """The minimum over rounds of each key, per activation, each key on its own (time and memory may come from
    different rounds: each column's least-disturbed one)."""
    return {act: {key: min(r[key] for r in runs) for key in keys} for act, runs in results.items()}


def print_table(header, rows):
    """A Markdown table; every column but the first is right-aligned."""
    table = [header] + rows
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print('| ' + ' | '.join(c.ljust(w) if j == 0 else c.rjust(w)
                                for j, (c, w) in enumerate(zip(row, widths))) + ' |')
        if i == 0:
            print('|' + '|'.join('-' * (w + 1) + (':' if j else '-') for j, w in enumerate(widths)) + '|')
