"""The Slurm launcher (``tools/zoo/slurm.py``) on a real single-node Slurm cluster started by this file.

The cluster (``tests/slurm_cluster.py``: munged, slurmctld, slurmd on localhost, its config in a temporary
folder, no accounting) is started once per session and stopped by pid at the end. Without root or without
Debian's ``slurm-wlm``/``munge`` the tests skip and say so; ``.ci/run`` installs both. ``SAU_ZOO_SLURM_TESTS=0``
skips them too.

First the launcher with small stand-in commands (a "training" that counts steps, saves a checkpoint per
step and stops on USR2, an "evaluation" that writes the count as the metric), so that the fault handling is
checked in seconds: states, the failing line, scancel and resubmission, the time limit (requeue from a
checkpoint, the requeue bound), drained and downed nodes, and the run folder's markers when Slurm has
forgotten a job (no accounting).
"""
import json
import math
import os
import re
import os.path as osp
import shutil
import subprocess
import sys
import time

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(REPO, 'tests')

import slurm_cluster  # noqa: E402
from tools.zoo import slurm as zs  # noqa: E402

SKIP = slurm_cluster.skip_reason()
needs_slurm = pytest.mark.skipif(SKIP is not None, reason=f'no local Slurm: {SKIP}')
pytest.importorskip('submitit')
#: the cases that take a minute or more each (time limits, preemption, node states, 2-process trainings)
SLOW = pytest.mark.skipif(os.environ.get('SAU_ZOO_SLURM_TESTS') == 'fast',
                          reason='SAU_ZOO_SLURM_TESTS=fast: the slower Slurm cases are skipped')


@pytest.fixture(scope='session')
def cluster(tmp_path_factory):
    """The session's Slurm cluster; SLURM_CONF points this process's clients (and submitit) at it."""
    if SKIP is not None:
        pytest.skip(f'no local Slurm: {SKIP}')
    root = tmp_path_factory.mktemp('slurm')
    c = slurm_cluster.SlurmCluster(root)
    try:
        c.start()
    except slurm_cluster.ClusterUnavailable as e:
        pytest.fail(f'the local Slurm cluster did not start: {e}')
    print(f'\nlocal Slurm: daemons up, node idle in {c.start_seconds:.2f} s ({root})')
    before = os.environ.get('SLURM_CONF')
    os.environ['SLURM_CONF'] = c.conf
    yield c
    if before is None:
        os.environ.pop('SLURM_CONF', None)
    else:
        os.environ['SLURM_CONF'] = before
    c.stop()
    for daemon, pid in c.pids.items():  # stop() forgets each pid it stopped
        pytest.fail(f'{daemon} ({pid}) still registered after stop()')


# ------------------------------------------------------------------ the cluster itself

@needs_slurm
def test_the_cluster_runs_two_srun_tasks_and_has_no_accounting(cluster):
    proc = subprocess.run(['srun', '-n2', 'bash', '-c', 'echo $SLURM_PROCID $SLURM_NTASKS $SLURM_LOCALID '
                           '$SLURM_JOB_NODELIST'], env=cluster.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split('\n')[:2]) == [f'0 2 0 {cluster.node}', f'1 2 1 {cluster.node}']
    cpus = subprocess.run(['sinfo', '-h', '-N', '-p', cluster.partition, '-o', '%c'], env=cluster.env,
                          capture_output=True, text=True).stdout.split()
    assert cpus == [str(os.cpu_count())]
    assert not zs.sacct_available()  # state must come from squeue/scontrol and the markers
    assert cluster.start_seconds < 30


# ------------------------------------------------------------------ stand-in commands

FAKE_TRAIN = r'''
import json, os, signal, sys, time
run_dir, steps, sleep = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
if '--fail' in sys.argv:
    print('loading the config'); print("error: --cfg-options train_cfg.max_iters='abc': expected a number")
    sys.exit(1)
ckpt = os.path.join(run_dir, 'ckpt.json')
step = json.load(open(ckpt))['step'] if '--resume' in sys.argv else 0
print('start at step', step, flush=True)
print('clock', time.time(), flush=True)
stop = []
signal.signal(signal.SIGUSR2, lambda *_: stop.append(step))
while step < steps:
    time.sleep(sleep)
    step += 1
    with open(ckpt + '.tmp', 'w') as f:
        json.dump({'step': step, 'seed': int(os.environ.get('FAKE_SEED', '0'))}, f)
    os.replace(ckpt + '.tmp', ckpt)
    with open(os.path.join(run_dir, 'last_checkpoint'), 'w') as f:
        f.write(ckpt)
    if stop:
        print('USR2: saved at step', step, flush=True)
        sys.exit(3)
print('trained', step, flush=True)
'''
FAKE_EVAL = ('import json, sys; c = json.load(open(sys.argv[1])); '
             'json.dump({"score": 10 * c["step"] + c["seed"]}, open(sys.argv[2], "w"))')


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp('fake')
    script = root / 'fake_train.py'
    script.write_text(FAKE_TRAIN)

    def job(name, steps=4, sleep=0.2, extra=(), seed=0, **kw):
        run_dir = str(root / name)
        os.makedirs(run_dir, exist_ok=True)
        return zs.RunJob(run_dir, [sys.executable, str(script), run_dir, str(steps), str(sleep), *extra],
                         [sys.executable, '-c', FAKE_EVAL, '{checkpoint}', '{metrics}'], zs.PointerCheckpoint(),
                         env={'FAKE_SEED': str(seed)}, **kw)
    return dict(root=root, job=job)


def score(job):
    with open(osp.join(job.run_dir, 'metrics.json')) as f:
        return json.load(f)['score']


def wait_for(predicate, timeout, what, poll=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f'timed out after {timeout} s waiting for {what}')


@needs_slurm
def test_states_failure_line_cancel_and_resubmission(cluster, fake):
    """One array: a run that finishes, one whose command fails, one cancelled mid-training. The failure is
    reported with its log's error line; the cancelled run resumes from its checkpoint when resubmitted and ends
    where an uninterrupted run ends."""
    ok, bad, long = (fake['job']('ok', seed=1), fake['job']('bad', extra=['--fail']),
                     fake['job']('long', steps=60, sleep=0.25, seed=2))
    jobs = [ok, bad, long]
    folder = str(fake['root'] / 'submitit')
    ids, seconds = zs.submit(jobs, folder, zs.Resources(time='5'), 'fake')
    assert len(ids) == 3 and len({i.split('_')[0] for i in ids}) == 1  # one job array
    assert seconds < 10
    states = zs.run_states([j.run_dir for j in jobs])
    assert {s['state'] for s in states.values()} <= {'pending', 'running', 'done', 'failed'}

    # cancel the long run once it has saved a few steps
    wait_for(lambda: (json.load(open(osp.join(long.run_dir, 'ckpt.json')))['step'] >= 5
                      if osp.isfile(osp.join(long.run_dir, 'ckpt.json')) else False), 60, 'the long run to train')
    subprocess.run(['scancel', ids[2]], check=True, env=cluster.env)
    states = zs.wait([j.run_dir for j in jobs], poll_s=1, timeout_s=120)
    assert states[ok.run_dir]['state'] == 'done' and score(ok) == 10 * 4 + 1
    assert states[bad.run_dir]['state'] == 'failed'
    assert states[bad.run_dir]['error'] == "error: --cfg-options train_cfg.max_iters='abc': expected a number"
    assert states[bad.run_dir]['log'] == osp.join(bad.run_dir, 'train.log')
    assert states[long.run_dir]['state'] == 'cancelled'
    saved = json.load(open(osp.join(long.run_dir, 'ckpt.json')))['step']
    assert 5 <= saved < 60

    # the rerun resubmits it; it continues from its checkpoint
    ids2, _ = zs.submit([long], folder, zs.Resources(time='5'), 'fake')
    states = zs.wait([long.run_dir], poll_s=1, timeout_s=120)
    assert states[long.run_dir]['state'] == 'done'
    assert score(long) == 10 * 60 + 2  # the uninterrupted run's value
    log = open(osp.join(long.run_dir, 'train.log')).read()
    assert f'start at step {saved}' in log and log.count('--resume') == 1
    assert json.load(open(osp.join(long.run_dir, zs.JOB_FILE)))['history'] == [ids[2]]


@needs_slurm
@SLOW
def test_time_limit_requeues_from_a_checkpoint_then_the_bound_reports_timed_out(cluster, fake):
    """``--time 1``, USR2 1 s before the limit: Slurm checks limits every 30 s and signals up to 30 s early, so
    each attempt trains 29-59 s and then has at least 29 s to save before it is killed. The 60 s run saves on
    the signal, is requeued, resumes and completes within its 3 requeues; a run allowed none is reported timed
    out, its checkpoint kept."""
    requeued = fake['job']('timelimit', steps=240, sleep=0.25, seed=3, max_requeues=3)
    bounded = fake['job']('bounded', steps=1000, sleep=0.25, seed=4, max_requeues=0)
    start = time.time()
    zs.submit([requeued, bounded], str(fake['root'] / 'submitit'),
              zs.Resources(time='1', signal_delay_s=1), 'fake')
    states = zs.wait([requeued.run_dir, bounded.run_dir], poll_s=2, timeout_s=240)
    assert states[requeued.run_dir]['state'] == 'done', states
    assert score(requeued) == 10 * 240 + 3
    marker = json.load(open(osp.join(requeued.run_dir, zs.STATE_FILE)))
    log = open(osp.join(requeued.run_dir, 'train.log')).read()
    assert marker['state'] == 'done' and 1 <= marker['requeues'] <= 3
    assert log.count('USR2: saved at step') == log.count('--resume') == marker['requeues']
    saved = [int(line.split()[-1]) for line in log.splitlines() if line.startswith('USR2: saved at step')]
    started = [int(line.split()[-1]) for line in log.splitlines() if line.startswith('start at step')]
    assert started == [0] + saved  # each attempt continued where the previous one saved
    assert states[bounded.run_dir]['state'] == 'timed_out'
    assert 'time limit (or preemption) reached 1 times (0 requeues, the bound)' in states[bounded.run_dir]['error']
    assert 0 < json.load(open(osp.join(bounded.run_dir, 'ckpt.json')))['step'] < 1000
    assert 'USR2: saved at step' in open(osp.join(bounded.run_dir, 'train.log')).read()
    assert time.time() - start < 240


@needs_slurm
@SLOW
def test_a_preempted_run_saves_on_the_signal_and_resumes_after_the_preempting_job(cluster, fake):
    """Preemption (preempt/partition_prio, PreemptMode=REQUEUE, send_user_signal): a job of the urgent partition
    that needs all the node's CPUs takes them from a running run. The run gets USR2 at once, saves, is requeued,
    waits while the urgent job runs, resumes from the saved step and ends with the uninterrupted value."""
    run = fake['job']('preempted', steps=80, sleep=0.25, seed=8)
    zs.submit([run], str(fake['root'] / 'submitit'), zs.Resources(time='10'), 'fake')
    ckpt = osp.join(run.run_dir, 'ckpt.json')
    wait_for(lambda: osp.isfile(ckpt) and json.load(open(ckpt))['step'] >= 5, 60, 'the run to save a few steps')
    urgent = fake['root'] / 'urgent.out'
    proc = subprocess.run(['sbatch', f'--partition={cluster.urgent_partition}', f'--cpus-per-task={cluster.cpus}',
                           f'--output={urgent}', '--wrap', 'date +%s.%N; sleep 3; date +%s.%N'],
                          env=cluster.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    states = zs.wait([run.run_dir], poll_s=1, timeout_s=240)
    assert states[run.run_dir]['state'] == 'done', states
    assert score(run) == 10 * 80 + 8  # as if never interrupted
    log = open(osp.join(run.run_dir, 'train.log')).read()
    saved = [int(line.split()[-1]) for line in log.splitlines() if line.startswith('USR2: saved at step')]
    started = [int(line.split()[-1]) for line in log.splitlines() if line.startswith('start at step')]
    clocks = [float(line.split()[-1]) for line in log.splitlines() if line.startswith('clock ')]
    assert len(saved) == 1 and 5 <= saved[0] < 80 and started == [0] + saved
    assert json.load(open(osp.join(run.run_dir, zs.STATE_FILE)))['requeues'] == 1
    urgent_start, urgent_end = map(float, urgent.read_text().split())
    assert clocks[0] < urgent_start < urgent_end <= clocks[1]  # the urgent job had the CPUs in between


@needs_slurm
@SLOW
def test_drained_then_downed_node_loses_nothing(cluster, fake):
    """Drain while a run trains: it goes on, the next one waits (pending). Down: the running run is requeued
    (Slurm's JobRequeue), waits for the node, resumes from its checkpoint and ends with the uninterrupted value."""
    first, second = fake['job']('drain1', steps=40, sleep=0.25, seed=5), fake['job']('drain2', steps=40,
                                                                                         sleep=0.25, seed=6)
    dirs = [first.run_dir, second.run_dir]
    ids, _ = zs.submit([first, second], str(fake['root'] / 'submitit'), zs.Resources(time='5', max_parallel=1),
                       'fake')
    try:
        wait_for(lambda: osp.isfile(osp.join(first.run_dir, 'ckpt.json')), 60, 'the first run to train')
        cluster.set_node_state('drain')
        time.sleep(3)
        states = zs.run_states(dirs)
        assert [states[d]['state'] for d in dirs] == ['running', 'pending']
        assert cluster.node_state().startswith('drain')
        wait_for(lambda: zs.run_state(first.run_dir)['state'] == 'done', 60, 'the first run under drain')
        time.sleep(3)
        assert zs.run_state(second.run_dir)['state'] == 'pending'  # the drained node takes no new job
        cluster.set_node_state('resume')
        wait_for(lambda: osp.isfile(osp.join(second.run_dir, 'ckpt.json')), 60, 'the second run to train')
        cluster.set_node_state('down')
        wait_for(lambda: zs.run_state(second.run_dir)['state'] == 'pending', 30, 'the requeue')
        saved = json.load(open(osp.join(second.run_dir, 'ckpt.json')))['step']
    finally:
        cluster.set_node_state('resume')
    states = zs.wait(dirs, poll_s=1, timeout_s=120)
    assert [states[d]['state'] for d in dirs] == ['done', 'done']
    assert (score(first), score(second)) == (10 * 40 + 5, 10 * 40 + 6)
    log = open(osp.join(second.run_dir, 'train.log')).read()
    assert f'start at step {saved}' in log and saved < 40
    restarts = subprocess.run(['scontrol', 'show', 'job', ids[1]], capture_output=True, text=True).stdout
    assert 'Restarts=1' in restarts


@needs_slurm
def test_multi_task_run_trains_on_every_task_and_evaluates_on_task_0(cluster, fake):
    job = fake['job']('two_tasks', steps=2, seed=7)
    # every task says who it is; task 0 trains (the stand-in's files are not written by two processes)
    job.train = [sys.executable, '-c',
                 'import os, runpy, sys; rank = os.environ["SLURM_PROCID"]; print("rank", rank, "of", '
                 'os.environ["SLURM_NTASKS"], flush=True); sys.argv = sys.argv[1:]; '
                 'rank == "0" and runpy.run_path(sys.argv[0], run_name="__main__")', *job.train[1:]]
    zs.submit([job], str(fake['root'] / 'submitit'), zs.Resources(time='5', tasks_per_node=2), 'fake')
    states = zs.wait([job.run_dir], poll_s=1, timeout_s=60)
    assert states[job.run_dir]['state'] == 'done' and score(job) == 10 * 2 + 7
    assert 'rank 0 of 2' in open(osp.join(job.run_dir, 'train.log')).read()
    assert 'rank 1 of 2' in open(osp.join(job.run_dir, 'train.log.task1')).read()
    assert not osp.exists(osp.join(job.run_dir, 'eval.log.task1'))  # evaluation ran once


# ------------------------------------------------------------------ state without Slurm's memory

def test_markers_decide_once_slurm_has_forgotten_the_job(tmp_path):
    """No accounting and past MinJobAge: squeue/scontrol no longer know the job; the markers say it all."""
    run = tmp_path / 'run'
    run.mkdir()
    assert zs.run_state(str(run), known={})['state'] == 'new'
    (run / zs.JOB_FILE).write_text(json.dumps({'job_id': '17_3', 'stdout': 'x.out'}))
    assert zs.run_state(str(run), known={'17_3': ('PENDING', 'Priority')})['state'] == 'pending'
    assert zs.run_state(str(run), known={'17_3': ('REQUEUED', '')})['state'] == 'pending'
    assert zs.run_state(str(run), known={'17_3': ('RUNNING', '')})['state'] == 'running'
    assert zs.run_state(str(run), known={'17_3': ('TIMEOUT', 'TimeLimit')})['state'] == 'timed_out'
    assert zs.run_state(str(run), known={'17_3': ('CANCELLED', '')})['state'] == 'cancelled'
    # forgotten, no end marker: killed from outside
    forgotten = zs.run_state(str(run), known={})
    assert forgotten['state'] == 'cancelled' and '17_3 ended without an end marker' in forgotten['error']
    (run / zs.STATE_FILE).write_text(json.dumps({'state': 'running'}))
    assert zs.run_state(str(run), known={})['state'] == 'cancelled'
    (run / zs.STATE_FILE).write_text(json.dumps({'state': 'failed', 'error': 'error: bad', 'log': 'l'}))
    assert zs.run_state(str(run), known={}) == dict(state='failed', job_id='17_3', log='l', error='error: bad',
                                                    slurm='unknown to Slurm', slurm_log='x.out')
    # Slurm's FAILED for a run that reached the requeue bound: the marker's timed_out wins
    (run / zs.STATE_FILE).write_text(json.dumps({'state': 'timed_out', 'error': 'time limit reached 4 times'}))
    assert zs.run_state(str(run), known={'17_3': ('FAILED', 'NonZeroExitCode')})['state'] == 'timed_out'
    assert zs.run_state(str(run), known={})['state'] == 'timed_out'
    # a COMPLETED job without metrics.json did not do its work
    (run / zs.STATE_FILE).unlink()
    assert zs.run_state(str(run), known={'17_3': ('COMPLETED', '')})['state'] == 'failed'
    (run / 'metrics.json').write_text('{}')
    assert zs.run_state(str(run), known={'17_3': ('FAILED', '')})['state'] == 'done'


def test_last_error_line(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text('$ tools/train.py\nerror: dataset path not found: x\nmore\n')
    assert zs.last_error_line(str(log)) == 'error: dataset path not found: x'
    log.write_text('Traceback (most recent call last):\n  File "x", line 1\nValueError: bad value\n\n')
    assert zs.last_error_line(str(log)) == 'ValueError: bad value'
    log.write_text('starting\nkilled\n')
    assert zs.last_error_line(str(log)) == 'killed'
    assert zs.last_error_line(str(tmp_path / 'missing.log')) == ''


def test_resources_and_time_formats():
    assert [zs.parse_time(t) for t in ('90', '1:30', '2:00:00', '1-0', '1-02:03', '0:0:1')] == [
        90, 2, 120, 1440, 1563, 1]
    with pytest.raises(zs.SlurmError, match='--time'):
        zs.parse_time('2h')
    assert zs.parse_sbatch_options(['account=proj', '--qos=high', 'exclusive']) == {
        'account': 'proj', 'qos': 'high', 'exclusive': True}
    with pytest.raises(zs.SlurmError, match='KEY=VALUE'):
        zs.parse_sbatch_options(['=x'])
    r = zs.Resources(partition='gpu', gpus_per_run=8, nodes_per_run=2, cpus_per_task=4, mem='64G',
                     time='1-00:00:00', max_parallel=10, sbatch={'account': 'proj'})
    assert (r.tasks_per_node, r.tasks, r.gpus_per_node, r.timeout_min) == (4, 8, 4, 1440)
    p = r.executor_parameters('sau')
    assert (p['nodes'], p['tasks_per_node'], p['gpus_per_node'], p['slurm_array_parallelism'], p['slurm_mem'],
            p['slurm_partition'], p['slurm_additional_parameters']) == (2, 4, 4, 10, '64G', 'gpu', {'account': 'proj'})
    with pytest.raises(zs.SlurmError, match='multiple'):
        zs.Resources(gpus_per_run=3, nodes_per_run=2)
    assert zs.Resources(time='1').signal_delay_s == 15  # a limit shorter than twice the delay: a quarter of it
    assert zs.Resources(time='60').signal_delay_s == 300


def test_job_script_without_srun_says_where_to_run_it(tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(zs.shutil, 'which', lambda name: None if name == 'srun' else real_which(name))
    with pytest.raises(zs.SlurmError, match='srun not found: .* login node'):
        zs.job_script(str(tmp_path / 'submitit'), zs.Resources(), 'sau-seg', 2)


@needs_slurm
def test_job_script_is_one_array_with_the_resources(tmp_path):
    r = zs.Resources(partition='gpu', gpus_per_run=2, cpus_per_task=6, mem='32G', time='12:00:00',
                     max_parallel=3, sbatch={'account': 'proj'})
    script = zs.job_script(str(tmp_path / 'submitit'), r, 'sau-seg', 45)
    for line in ('#SBATCH --array=0-44%3', '#SBATCH --partition=gpu', '#SBATCH --gpus-per-node=2',
                 '#SBATCH --ntasks-per-node=2', '#SBATCH --cpus-per-task=6', '#SBATCH --mem=32G',
                 '#SBATCH --time=720', '#SBATCH --signal=USR2@300', '#SBATCH --account=proj',
                 '#SBATCH --job-name=sau-seg'):
        assert line in script.splitlines(), (line, script)
    assert 'srun --unbuffered' in script and '-m submitit.core._submit' in script


# ------------------------------------------------------------------ the zoo's tasks through Slurm
# The sweep through tools/sweep.py --launcher slurm on the tiny segmentation config, against the same sweep
# run locally (same seeds, one thread per process). Each run trains a few epochs with a checkpoint per epoch,
# so that a cancelled, requeued or downed run has something to resume from.

SEG_EPOCHS = 3
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def sweep_cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, 'tools/sweep.py', *args], cwd=REPO, env=env or ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def tiny_seg(tmp_path_factory):
    from tools.data import make_tiny_cityscapes
    root = str(tmp_path_factory.mktemp('slurm_seg') / 'tiny_cityscapes')
    make_tiny_cityscapes.make_tiny_cityscapes(root, seed=0)
    return root


def seg_options(root, epochs=SEG_EPOCHS, checkpoint_interval=1):
    return [f'train_cfg.max_epochs={epochs}', 'train_cfg.val_begin=1000',
            f'default_hooks.checkpoint.interval={checkpoint_interval}',
            'default_hooks.checkpoint.max_keep_ckpts=2',
            *[f'{k}.dataset.data_root={root}' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]]


@pytest.fixture(scope='module')
def local_sweep(tiny_seg, tmp_path_factory):
    """The reference: relu and sau x 2 seeds, run locally by tools/sweep.py."""
    work_dir = str(tmp_path_factory.mktemp('local') / 'segmentation')
    proc = sweep_cli('segmentation', '--acts', 'relu,sau', '--seeds', '2', '--work-dir', work_dir,
                     '--cfg-options', *seg_options(tiny_seg))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with open(osp.join(work_dir, 'results.json')) as f:
        return dict(work_dir=work_dir, results=json.load(f))


def run_metrics(work_dir, act, seed):
    with open(osp.join(work_dir, act, f'seed{seed}', 'metrics.json')) as f:
        return json.load(f)


def job_id(run_dir):
    return json.load(open(osp.join(run_dir, zs.JOB_FILE)))['job_id']


def status_of(proc, label):
    """The state ``--status`` lists for ``label`` (e.g. ``sau seed0``)."""
    for line in proc.stdout.splitlines():
        if line.startswith(label + ':'):
            return line[len(label) + 1:].split()[0]
    raise AssertionError(f'{label} not listed:\n{proc.stdout}')


@needs_slurm
def test_slurm_sweep_equals_the_local_sweep_and_survives_a_scancel(cluster, tiny_seg, local_sweep,
                                                                     tmp_path_factory):
    """Cases 1 and 3: the same 2 x 2 sweep through Slurm (one job array, 2 runs at a time on this 2-CPU node).
    One run is cancelled (scancel) after its first checkpoint; --status says cancelled; the rerun resubmits only
    it; it resumes from its checkpoint. The collected results.json equals the local sweep's, value for value."""
    work_dir = str(tmp_path_factory.mktemp('slurm_sweep') / 'segmentation')
    args = ['segmentation', '--acts', 'relu,sau', '--seeds', '2', '--work-dir', work_dir, '--launcher', 'slurm',
            '--time', '10', '--max-parallel', '2', '--cfg-options', *seg_options(tiny_seg)]
    start = time.time()
    proc = sweep_cli(*args, env=cluster.env | {'OMP_NUM_THREADS': '1'})
    submit_seconds = time.time() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'submitted 4 runs' in proc.stdout, proc.stdout
    ids = {(a, s): job_id(osp.join(work_dir, a, f'seed{s}')) for a in ('relu', 'sau') for s in (0, 1)}
    assert len({i.split('_')[0] for i in ids.values()}) == 1  # one array
    # cancel sau seed1 (the array's last task) once it has its first checkpoint
    victim = osp.join(work_dir, 'sau', 'seed1')
    wait_for(lambda: osp.isfile(osp.join(victim, 'epoch_1.pth')), 180, 'sau seed1 to save epoch 1', poll=0.1)
    subprocess.run(['scancel', ids[('sau', 1)]], check=True, env=cluster.env)
    wait_for(lambda: zs.run_state(victim)['state'] == 'cancelled', 60, 'the cancel to show')
    wait_for(lambda: all(zs.run_state(osp.join(work_dir, a, f'seed{s}'))['state'] == 'done'
                         for a, s in ids if (a, s) != ('sau', 1)), 300, 'the other runs')
    status = sweep_cli('segmentation', '--acts', 'relu,sau', '--seeds', '2', '--work-dir', work_dir, '--status',
                       env=cluster.env)
    assert status.returncode == 0, status.stderr
    assert status_of(status, 'sau seed1') == 'cancelled'
    assert [status_of(status, f'{a} seed{s}') for a, s in ids if (a, s) != ('sau', 1)] == ['done'] * 3
    assert not osp.isfile(osp.join(victim, 'metrics.json'))
    # the rerun resubmits the cancelled run only, waits for it and collects the table
    table_start = time.time()
    rerun = sweep_cli(*args, '--wait', env=cluster.env | {'OMP_NUM_THREADS': '1'})
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert 'submitted 1 runs' in rerun.stdout
    assert json.load(open(osp.join(victim, zs.JOB_FILE)))['history'] == [ids[('sau', 1)]]
    log = open(osp.join(victim, 'train.log')).read()
    assert log.count('--resume') == 1
    assert re.search(r'resumed epoch: [12], iter', log), log[-3000:]  # from epoch_1 (or 2: the cancel's delay)
    with open(osp.join(work_dir, 'results.json')) as f:
        results = json.load(f)
    assert results == local_sweep['results']  # every value: runs, means, stds, Table-8 counts
    for act in ('relu', 'sau'):
        for seed in (0, 1):
            assert run_metrics(work_dir, act, seed) == run_metrics(local_sweep['work_dir'], act, seed)
    with open(osp.join(work_dir, 'results.md')) as f, open(osp.join(local_sweep['work_dir'], 'results.md')) as g:
        assert f.read() == g.read()
    print(f'\nsubmission of 4 runs: {submit_seconds:.1f} s (the CLI, imports included); rerun to table: '
          f'{time.time() - table_start:.0f} s')


@needs_slurm
def test_a_failing_run_is_reported_with_its_error_line_while_the_others_finish(cluster, tiny_seg, tmp_path_factory):
    """Case 4: one run of the array gets a bad --cfg-options; --status says failed with tools/train.py's error
    line and its log; the other run finishes and is collected."""
    from tools import sweep
    from tools.zoo.tasks import TASKS
    work_dir = str(tmp_path_factory.mktemp('slurm_fail') / 'segmentation')
    options = seg_options(tiny_seg, epochs=1)
    jobs = sweep.slurm_jobs(TASKS['segmentation'], ['relu', 'sau'], [0], work_dir, options, False,
                            zs.Resources(time='10'))
    bad = jobs[('relu', 0)]
    bad.train = bad.train + ['train_cfg.max_epochs=abc']  # the last --cfg-options wins
    zs.submit(list(jobs.values()), osp.join(work_dir, 'slurm'), zs.Resources(time='10'), 'sau-fail')
    zs.wait([j.run_dir for j in jobs.values()], poll_s=1, timeout_s=300)
    status = sweep_cli('segmentation', '--acts', 'relu,sau', '--seeds', '1', '--work-dir', work_dir, '--status',
                       env=cluster.env)
    assert status.returncode == 0, status.stderr
    assert status_of(status, 'sau seed0') == 'done'
    line = next(l for l in status.stdout.splitlines() if l.startswith('relu seed0:'))
    assert line.split()[2] == 'failed'
    assert "error: --cfg-options train_cfg.max_epochs='abc': expected a number" in line
    assert osp.join(work_dir, 'relu', 'seed0', 'train.log') in line
    with open(osp.join(work_dir, 'results.json')) as f:
        results = json.load(f)
    assert results['runs']['sau']['0'] == {k: run_metrics(work_dir, 'sau', 0)[k]
                                           for k in TASKS['segmentation'].metrics.values()}
    assert 'relu' not in results['runs'] and results['missing'] == {'relu': [0]}


#: case 5 trains at least this long, so that no attempt (at most 59 s of a 1-minute limit) can finish it
CASE5_TRAINING_S = 70


def epoch_seconds(train_log):
    """A lower bound of one training epoch's time in an MMEngine ``train.log``: iterations per epoch x the
    median iteration time its ``Epoch(train) [e][i/N] ... time: T`` lines report (an epoch adds the data
    loader's start and the checkpoint hooks)."""
    lines = re.findall(r'Epoch\(train\) +\[\d+\]\[\d+/(\d+)\].* time: ([0-9.]+)', open(train_log).read())
    assert lines, f'no Epoch(train) lines in {train_log}'
    times = sorted(float(t) for _, t in lines)
    return int(lines[0][0]) * times[len(times) // 2]


@needs_slurm
@SLOW
def test_a_run_past_its_time_limit_requeues_resumes_and_completes(cluster, tiny_seg, local_sweep, tmp_path_factory):
    """Case 5: --time 1 (minute): USR2 reaches training 29-59 s in (--signal-delay 1: Slurm signals up to 30 s
    early); it is requeued (submitit, scontrol requeue), resumes from its last checkpoint and completes."""
    work_dir = str(tmp_path_factory.mktemp('slurm_time') / 'segmentation')
    # The run must outlast one attempt on any machine: its epochs are sized from this machine's epoch time in
    # the local sweep (same data and model), for CASE5_TRAINING_S of training, 2 attempts or more
    per_epoch = epoch_seconds(osp.join(local_sweep['work_dir'], 'sau', 'seed0', 'train.log'))
    epochs = max(25, math.ceil(CASE5_TRAINING_S / per_epoch))
    # no regular checkpoints (each costs an epoch's time here): the signal's and the last epoch's are saved
    proc = sweep_cli('segmentation', '--acts', 'sau', '--seeds', '1', '--work-dir', work_dir, '--launcher', 'slurm',
                     '--time', '1', '--signal-delay', '1', '--max-requeues', '12', '--wait',
                     '--cfg-options', *seg_options(tiny_seg, epochs=epochs, checkpoint_interval=1000),
                     env=cluster.env | {'OMP_NUM_THREADS': '1'},
                     timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = osp.join(work_dir, 'sau', 'seed0')
    marker = json.load(open(osp.join(run_dir, zs.STATE_FILE)))
    assert marker['state'] == 'done' and marker['requeues'] >= 1
    log = open(osp.join(run_dir, 'train.log')).read()
    # one training command per attempt that trained (a signal during evaluation requeues evaluation only); each
    # checkpoint saved on the signal is the one the next attempt resumes from
    assert 2 <= log.count('$ ') <= marker['requeues'] + 1
    assert 1 <= log.count('--resume') <= marker['requeues']
    saved = re.findall(r'SignalCheckpointHook: SIGUSR2: checkpoint saved after epoch (\d+)', log)
    resumed = re.findall(r'resumed epoch: (\d+), iter', log)
    assert saved and resumed[:len(saved)] == saved
    assert f'Epoch(train) [{epochs}]' in log and osp.isfile(osp.join(run_dir, f'epoch_{epochs}.pth'))
    assert 'mIoU' in run_metrics(work_dir, 'sau', 0)


@needs_slurm
@SLOW
def test_drained_and_downed_node_mid_run_loses_nothing(cluster, tiny_seg, local_sweep, tmp_path_factory):
    """Case 6: two runs, one at a time. Drain while the first trains: it finishes, the second waits. Resume, then
    down while the second trains: Slurm requeues it; it resumes from its checkpoint. Both end with the local
    sweep's metrics."""
    work_dir = str(tmp_path_factory.mktemp('slurm_drain') / 'segmentation')
    args = ['segmentation', '--acts', 'relu', '--seeds', '2', '--work-dir', work_dir, '--launcher', 'slurm',
            '--time', '10', '--max-parallel', '1', '--cfg-options', *seg_options(tiny_seg)]
    proc = sweep_cli(*args, env=cluster.env | {'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first, second = (osp.join(work_dir, 'relu', f'seed{s}') for s in (0, 1))
    try:
        wait_for(lambda: osp.isfile(osp.join(first, 'train.log')), 120, 'the first run to start', poll=0.2)
        cluster.set_node_state('drain')
        assert [zs.run_state(d)['state'] for d in (first, second)] == ['running', 'pending']
        wait_for(lambda: zs.run_state(first)['state'] == 'done', 180, 'the first run under drain')
        time.sleep(2)
        assert zs.run_state(second)['state'] == 'pending' and cluster.node_state().startswith('drain')
        cluster.set_node_state('resume')
        wait_for(lambda: osp.isfile(osp.join(second, 'epoch_1.pth')), 180, 'the second run to save', poll=0.1)
        cluster.set_node_state('down')
        wait_for(lambda: zs.run_state(second)['state'] == 'pending', 60, 'the requeue after down')
    finally:
        cluster.set_node_state('resume')
    rerun = sweep_cli(*args, '--wait', env=cluster.env | {'OMP_NUM_THREADS': '1'})
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert 'nothing to submit' in rerun.stdout  # Slurm requeued the downed run itself
    assert '--resume' in open(osp.join(second, 'train.log')).read()
    assert 'Restarts=1' in subprocess.run(['scontrol', 'show', 'job', job_id(second)], capture_output=True,
                                          text=True, env=cluster.env).stdout
    for seed in (0, 1):
        assert run_metrics(work_dir, 'relu', seed) == run_metrics(local_sweep['work_dir'], 'relu', seed)


# ------------------------------------------------------------------ tools/train.py --launcher slurm (CPU, gloo)

def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def final_weights(work_dir, fairseq):
    import torch
    if fairseq:
        return torch.load(osp.join(work_dir, 'checkpoint_last.pt'), map_location='cpu', weights_only=False)['model']
    pointer = open(osp.join(work_dir, 'last_checkpoint')).read().strip()
    return torch.load(pointer, map_location='cpu', weights_only=False)['state_dict']


@needs_slurm
@SLOW
@pytest.mark.parametrize('task', ['segmentation', 'translation'])
def test_srun_two_tasks_train_as_torchrun_two_processes(cluster, task, tiny_seg, tmp_path):
    """Case 2: ``srun -n2 tools/train.py --launcher slurm`` (gloo; rank, world size and master from Slurm's
    variables) trains the same weights as ``torchrun --nproc_per_node=2 tools/train.py --launcher pytorch``."""
    import torch
    from tools.zoo.tasks import TASKS
    config = TASKS[task].config
    if task == 'segmentation':
        options = ['--cfg-options', *seg_options(tiny_seg, epochs=2)]
    else:
        options = ['--cfg-options', 'fairseq.train.max_update=6']
    common = [config, '--seed', '0', *options]
    env = {**cluster.env, 'OMP_NUM_THREADS': '1', 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD': '1'}
    runs = {}
    torchrun = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_addr=127.0.0.1',
         f'--master_port={free_port()}', 'tools/train.py', '--work-dir', str(tmp_path / 'torchrun'), *common,
         '--launcher', 'pytorch'], cwd=REPO, env={k: v for k, v in env.items() if not k.startswith('SLURM_J')},
        capture_output=True, text=True, timeout=600)
    assert torchrun.returncode == 0, torchrun.stdout[-2000:] + torchrun.stderr[-3000:]
    srun = subprocess.run(
        ['srun', '-n2', '--cpus-per-task=1', '--kill-on-bad-exit=1', sys.executable, '-u', 'tools/train.py',
         '--work-dir', str(tmp_path / 'srun'), *common, '--launcher', 'slurm'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert srun.returncode == 0, srun.stdout[-2000:] + srun.stderr[-3000:]
    # the same summary lines (MMEngine: rank 0's; the fairseq runner: each rank's)
    assert srun.stdout.count('train done') == torchrun.stdout.count('train done') >= 1
    fairseq = task == 'translation'
    for name in ('torchrun', 'srun'):
        runs[name] = final_weights(tmp_path / name, fairseq)
    assert runs['srun'].keys() == runs['torchrun'].keys()
    for key, value in runs['torchrun'].items():
        if key.endswith('_float_tensor'):  # fairseq's sinusoidal positions keep an uninitialised 1-element dummy
            continue
        assert torch.equal(runs['srun'][key], value), key  # the same computation: bitwise
    assert any('alpha' in k for k in runs['srun'])  # SAU's alphas are among the weights compared


def test_launcher_slurm_takes_torchruns_variables_from_sruns():
    """``--launcher slurm`` on CPU: rank, world size, local rank and master from Slurm's variables; the port
    from the job id (two array tasks on one node get two ports), MASTER_PORT and set variables kept."""
    from tools.zoo import dist
    env = dict(SLURM_PROCID='3', SLURM_NTASKS='4', SLURM_LOCALID='1', SLURM_JOB_ID='123457',
               SLURM_JOB_NODELIST='gpu[07-08]', SLURM_STEP_NODELIST='gpu[08-09]')
    assert dist.slurm_env(env) == dict(RANK='3', WORLD_SIZE='4', LOCAL_RANK='1', MASTER_ADDR='gpu08',
                                       MASTER_PORT='23457')
    other = dict(env, SLURM_JOB_ID='123458')
    assert dist.slurm_env(other)['MASTER_PORT'] == '23458'  # another job on the node: another port
    assert dist.slurm_env(dict(env, MASTER_PORT='31000', MASTER_ADDR='head')) == dict(RANK='3', WORLD_SIZE='4',
                                                                                     LOCAL_RANK='1')
    assert dist.expand_nodelist('node[01-03,07],gpu5') == ['node01', 'node02', 'node03', 'node07', 'gpu5']
    assert dist.expand_nodelist('a[9-11]-ib,vm') == ['a9-ib', 'a10-ib', 'a11-ib', 'vm']
