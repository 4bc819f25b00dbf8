"""tools/gpu_check.py end to end on CPU (the Triton kernels under the interpreter, tiny sizes): it runs, imports
no framework of the zoo, and writes its report with every section."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_runs_on_cpu_under_the_interpreter(tmp_path):
    blocker = tmp_path / 'blocker'
    blocker.mkdir()
    for name in ('mmcv', 'mmengine', 'mmdet', 'mmseg', 'fairseq'):  # importing any of them fails
        (blocker / f'{name}.py').write_text(f'raise ImportError("gpu_check must not import {name}")\n')
    env = dict(os.environ, TRITON_INTERPRET='1',
               PYTHONPATH=os.pathsep.join([str(blocker), REPO, os.path.join(REPO, 'tests'),
                                           os.environ.get('PYTHONPATH', '')]))
    out = tmp_path / 'report'
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'gpu_check.py'), '--device', 'cpu', '--small',
                           '--no-compile', '--rounds', '1', '--out', str(out)],
                          env=env, capture_output=True, text=True, timeout=1200, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / 'report.json').read_text())
    assert report['oracle'] and all(not isinstance(worst, str) and worst <= 1 for _, _, worst in report['oracle'])
    forms = {what.rsplit(', ', 1)[1] for what, _, _ in report['oracle']}
    assert forms == {'out of place', 'in place', 'zero-centred'}
    assert {dtype for _, dtype, _ in report['oracle']} == {'float32', 'bfloat16'}
    assert {name for _, _, name, _, _ in report['bandwidth']} == {'forward', 'backward'}
    assert {(act, mode) for act, mode, *_ in report['network']} == {('relu', 'eager'), ('sau', 'eager')}
    assert report['host_sync']['host_reads'] == 0
    text = (out / 'report.md').read_text()
    for section in ('## Op oracle', '## Bandwidth', '## Conv-BN-activation training step', '## Host syncs'):
        assert section in text


def test_gpu_check_says_how_to_run_it_without_its_path(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'gpu_check.py'), '--out', str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith('error: No module named')
    assert 'PYTHONPATH=.:tests python tools/gpu_check.py' in proc.stderr


def test_gpu_check_refuses_cpu_without_the_interpreter(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['PYTHONPATH'] = os.pathsep.join([REPO, os.path.join(REPO, 'tests')])
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'gpu_check.py'), '--device', 'cpu',
                           '--out', str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and 'TRITON_INTERPRET=1' in proc.stderr
