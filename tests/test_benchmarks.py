"""The benchmark tools run end to end at toy sizes and print their tables (their numbers live in the README)."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(*argv):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def table_rows(output):
    """{first cell: cells} of the Markdown table rows in output."""
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in output.splitlines()
            if line.startswith('|') and not line.startswith('|-')]
    return {row[0]: row for row in rows[1:]}


@pytest.mark.parametrize('argv, baseline, ratio_columns', [
    (['tools/benchmarks/detection.py', '--batch', '1', '--steps', '1', '--warmup', '0', '--rounds', '1'], 'relu',
     [3, 4]),
    (['tools/benchmarks/segmentation.py', '--size', '32', '64', '--steps', '1', '--warmup', '0', '--rounds', '1'],
     'relu', [5, 6, 7]),
    (['tools/benchmarks/translation.py', '--layers', '1', '--vocab', '200', '--sentences', '2', '--length', '4',
      '--steps', '1', '--warmup', '0', '--rounds', '1'], 'relu', [4, 5]),
], ids=['detection', 'segmentation', 'translation'])
def test_task_benchmark_prints_ratios_to_the_baseline(argv, baseline, ratio_columns):
    output = run_tool(*argv)
    rows = table_rows(output)
    assert set(rows) == {baseline, 'sau'}
    # one round, one timed step: one paired ratio per column, the table's median of them
    spread = re.search(r'^sau / relu, lowest-highest \(count\) of the paired ratios: time ([0-9.]+)-([0-9.]+) \(1\), '
                       r'step memory ([0-9.]+)-([0-9.]+) \(1\)', output, re.M)
    assert spread and spread[1] == spread[2] == rows['sau'][ratio_columns[0]], output
    assert spread[3] == spread[4] == rows['sau'][ratio_columns[1]]
    for column in ratio_columns:
        assert rows[baseline][column] == '1.000'
        assert 0.2 < float(rows['sau'][column]) < 5
    if 'segmentation' in argv[0]:  # in-place SAU keeps exactly what in-place ReLU keeps for backward
        assert rows['sau'][7] == '1.000'


def test_task_benchmark_runs_as_a_module_against_any_baseline():
    rows = table_rows(run_tool('-m', 'tools.benchmarks.translation', '--acts', 'relu,sau', '--baseline', 'sau',
                               '--layers', '1', '--vocab', '200', '--sentences', '2', '--length', '4', '--steps', '1',
                               '--warmup', '0', '--rounds', '1', '--device', 'cpu'))
    assert rows['sau'][4] == rows['sau'][5] == '1.000' and rows['relu'][4] != '1.000'


def test_task_benchmark_reports_a_failed_worker_in_one_line():
    proc = subprocess.run([sys.executable, 'tools/benchmarks/detection.py', '--acts', 'nosuch'],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.startswith('error: the benchmark of nosuch failed (exit 1):')
    assert "unknown activation 'nosuch'" in proc.stderr


def test_activation_benchmark_times_every_activation():
    output = run_tool('tools/benchmarks/activation.py', '--sizes', '0.01', '--rounds', '1')
    rows = table_rows(output)
    assert rows['GELU'][2] == '1.00'
    assert rows['SAU (fused)'][3] == '1.00' and rows['SAU (fused, in place)'][3] == '1.00'
    assert rows['SAU (eager reference)'][3] == '8.00'
    assert 'M float32 elements (std 0.001) on cpu' in output


def test_step_memory_counts_the_tensor_bytes_a_step_adds():
    """CPU step memory comes from the profiler's memory events, not RSS: exact for a known step, and for
    in-place conv-BN-activation blocks SAU adds what ReLU adds, GELU (keeping its input) one map per block more."""
    import torch
    from mmcv.cnn import ConvModule

    import sau_core.mm  # noqa: F401  (registers SAU with MMCV)
    from tools.benchmarks.common import MemoryMeter
    meter = MemoryMeter(torch.device('cpu'))
    assert 8 <= meter.step_mib(lambda: (torch.ones(2**20) * 2).sum()) < 8.001  # ones and its double, 4 MiB each
    x = torch.randn(4, 16, 64, 64)  # 1 MiB
    step_mib = {}
    for act in ('ReLU', 'SAU', 'GELU'):
        torch.manual_seed(0)
        blocks = torch.nn.Sequential(*[ConvModule(16, 16, 3, padding=1, norm_cfg=dict(type='BN'),
                                                  act_cfg=dict(type=act)) for _ in range(6)])

        def step():
            blocks.zero_grad(set_to_none=True)
            blocks(x).sum().backward()
        step()
        step_mib[act] = meter.step_mib(step)
    assert abs(step_mib['SAU'] - step_mib['ReLU']) < 0.001
    assert step_mib['GELU'] - step_mib['ReLU'] == pytest.approx(6, abs=0.001)
