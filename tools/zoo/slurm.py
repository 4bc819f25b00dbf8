"""Slurm for the sweep: one submitit job array per submission, one array task per (activation, seed) run.

Each array task is a ``RunJob`` (a ``submitit.helpers.Checkpointable``): it runs the same ``tools/train.py``
and ``tools/eval.py`` commands as the local sweep, into the same run folder, with ``--resume`` whenever the
folder holds a checkpoint (a requeued, rerun or restarted run continues instead of starting over). A run that
spans several Slurm tasks (GPUs or nodes) runs training in every task (``--launcher slurm``) and evaluation in
task 0 only.

Faults (see ``run_state`` for how they are told apart, with or without Slurm accounting):

- time limit / preemption: Slurm sends ``USR2`` ``signal_delay_s`` before the limit (``sbatch --signal``), to
  every process of the job step, the training subprocess included; submitit calls ``RunJob.checkpoint``, which
  forwards the signal to the training subprocess (in case it was not reached), waits until it has saved and
  exited, and returns the requeued call; submitit then ``scontrol requeue``s the task. After ``max_requeues``
  requeues the run is marked timed out instead (and can be resubmitted by a rerun of the sweep).
- ``scancel``, node down, a failing command: the run folder's markers say what happened; a rerun of the sweep
  resubmits the run, which resumes from its last checkpoint.

The run folder's own markers, next to the local sweep's ``train.done`` and ``metrics.json``:

- ``slurm_job.json``: written at submission: the Slurm job id (``ARRAY_TASK`` form), the submitit folder, its
  log files, the submission time and the ids of earlier submissions;
- ``slurm_state.json``: written by the running task 0: ``running``, ``requeued`` (with the count),
  ``failed`` (with the failing log and its last error line), ``timed_out``, ``cancelled`` (killed by a
  signal from outside), ``done``.
"""
import json
import os
import os.path as osp
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

JOB_FILE = 'slurm_job.json'
STATE_FILE = 'slurm_state.json'
#: the sweep's states, as ``--status`` shows them
STATES = ('new', 'pending', 'running', 'done', 'failed', 'cancelled', 'timed_out')
#: the states a rerun of the sweep (re)submits; ``pending`` and ``running`` runs are left to Slurm
RESUBMIT = ('new', 'failed', 'cancelled', 'timed_out')
#: Slurm job states (squeue/scontrol/sacct) -> the sweep's
SLURM_STATES = {
    'PENDING': 'pending', 'CONFIGURING': 'pending', 'REQUEUED': 'pending', 'REQUEUE_FED': 'pending',
    'REQUEUE_HOLD': 'pending', 'RESV_DEL_HOLD': 'pending', 'SUSPENDED': 'pending', 'RESIZING': 'pending',
    'RUNNING': 'running', 'COMPLETING': 'running', 'STAGE_OUT': 'running', 'SIGNALING': 'running',
    'COMPLETED': 'done',
    'FAILED': 'failed', 'BOOT_FAIL': 'failed', 'NODE_FAIL': 'failed', 'OUT_OF_MEMORY': 'failed',
    'DEADLINE': 'failed', 'SPECIAL_EXIT': 'failed', 'REVOKED': 'cancelled',
    'CANCELLED': 'cancelled', 'PREEMPTED': 'cancelled',
    'TIMEOUT': 'timed_out',
}
#: the signal Slurm sends before the time limit (submitit's ``SUBMITIT_PREEMPT_SIGNAL``, default USR2); the
#: training subprocess saves a checkpoint and exits when it gets it
CHECKPOINT_SIGNAL = signal.SIGUSR2
#: exit status of a training that saved a checkpoint on CHECKPOINT_SIGNAL and stopped early
EXIT_CHECKPOINTED = 3


class CheckpointSignal:
    """Set when the time-limit/preemption signal (``CHECKPOINT_SIGNAL``, USR2) arrives; the training loops ask
    ``requested()`` at their next save point (MMEngine: ``tools.zoo.hooks.SignalCheckpointHook``; fairseq:
    ``translation/runner.py``), save a checkpoint and exit with ``EXIT_CHECKPOINTED``.

    ``install()`` must run in the main thread. In a distributed run every rank has to stop at the same step,
    or the others would wait in the next collective forever: ``requested(all_reduce)`` takes a function that
    sums a tensor over the ranks (one small all-reduce per call), so the ranks agree even when the signal
    reached them between two steps.
    """

    def __init__(self, signals=(CHECKPOINT_SIGNAL,)):
        self.signals = tuple(signals)
        self.received = None
        self._previous = {}

    def install(self):
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handler)
        return self

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handler(self, signum, frame):
        if self.received is None:
            self.received = signal.Signals(signum).name
            print(f'{self.received} received (Slurm: time limit or preemption near): saving a checkpoint at the '
                  f'next save point, then exiting with status {EXIT_CHECKPOINTED} for the requeue', flush=True)

    def requested(self, all_reduce=None):
        if all_reduce is None:
            return self.received is not None
        import torch
        flag = torch.tensor([1.0 if self.received is not None else 0.0])
        if torch.cuda.is_available() and torch.distributed.is_initialized() and \
                torch.distributed.get_backend() == 'nccl':
            flag = flag.cuda()
        result = all_reduce(flag)  # in place (torch.distributed.all_reduce) or returned (fairseq's all_reduce)
        flag = result if isinstance(result, torch.Tensor) else flag
        return bool(flag.item() > 0)


class SlurmError(Exception):
    """Bad input or a failed submission; reported as one line."""


class RunFailed(Exception):
    """A run's command failed; the message is its log's last error line."""


# ------------------------------------------------------------------ resources

def parse_time(text):
    """Slurm's time formats (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``) -> minutes
    (rounded up, at least 1)."""
    text = str(text).strip()
    match = re.fullmatch(r'(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?', text)
    if not match:
        raise SlurmError(f'--time {text!r}: expected minutes, MM:SS, HH:MM:SS or D-HH:MM:SS')
    days, a, b, c = match.groups()
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:  # MM:SS
        seconds = int(a) * 60 + int(b)
    else:  # MM
        seconds = int(a) * 60
    return max(1, -(-seconds // 60))


def parse_sbatch_options(options):
    """``--sbatch KEY=VALUE`` / ``--KEY=VALUE`` / ``KEY`` (a flag) -> submitit's ``additional_parameters``."""
    out = {}
    for option in options or ():
        key, eq, value = option.lstrip('-').partition('=')
        if not key or not re.fullmatch(r'[A-Za-z][A-Za-z0-9_-]*', key):
            raise SlurmError(f'--sbatch {option!r}: expected KEY=VALUE (an sbatch option without its dashes, e.g. '
                             f'account=myproj, qos=high, constraint=a100)')
        out[key.replace('_', '-')] = value if eq else True
    return out


@dataclass
class Resources:
    """What one run gets from Slurm (``tools/sweep.py --launcher slurm`` flags)."""
    partition: str = None
    gpus_per_run: int = 0
    nodes_per_run: int = 1
    tasks_per_node: int = None  # default: one task per GPU of the node, one task without GPUs
    cpus_per_task: int = None
    mem: str = None  # sbatch --mem, e.g. 32G
    time: str = '60'  # sbatch --time
    max_parallel: int = 256  # slurm_array_parallelism: array tasks running at once
    signal_delay_s: int = 300  # USR2 this long before the time limit
    max_requeues: int = 3  # time-limit/preemption requeues of one run before it is reported timed out
    sbatch: dict = field(default_factory=dict)  # other sbatch options, KEY -> VALUE

    def __post_init__(self):
        for name in ('gpus_per_run', 'nodes_per_run', 'max_parallel', 'max_requeues', 'signal_delay_s'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name in ('gpus_per_run', 'max_requeues') else 1):
                raise SlurmError(f'--{name.replace("_", "-")} {value!r}: expected a '
                                 f'{"non-negative" if name in ("gpus_per_run", "max_requeues") else "positive"} '
                                 f'integer')
        if self.gpus_per_run % self.nodes_per_run:
            raise SlurmError(f'--gpus-per-run {self.gpus_per_run} is not a multiple of --nodes-per-run '
                             f'{self.nodes_per_run} (each node gets the same number of GPUs)')
        if self.tasks_per_node is None:
            self.tasks_per_node = max(1, self.gpus_per_run // self.nodes_per_run)
        self.timeout_min = parse_time(self.time)
        if 2 * self.signal_delay_s >= self.timeout_min * 60:
            # a limit shorter than twice the delay (a test cluster's 1-2 min limits): a quarter of it. Slurm checks
            # limits every 30 s and may signal up to that much early, and kills at the first check past the limit
            self.signal_delay_s = max(1, self.timeout_min * 15)

    @property
    def gpus_per_node(self):
        return self.gpus_per_run // self.nodes_per_run

    @property
    def tasks(self):
        return self.nodes_per_run * self.tasks_per_node

    def executor_parameters(self, job_name):
        """``submitit.AutoExecutor.update_parameters`` keywords."""
        params = dict(timeout_min=self.timeout_min, nodes=self.nodes_per_run, tasks_per_node=self.tasks_per_node,
                      slurm_job_name=job_name, slurm_array_parallelism=self.max_parallel,
                      slurm_signal_delay_s=self.signal_delay_s,
                      slurm_setup=[f'cd {shlex.quote(REPO)}',
                                   f'export PYTHONPATH={shlex.quote(REPO)}${{PYTHONPATH:+:$PYTHONPATH}}'])
        if self.gpus_per_node:
            params['gpus_per_node'] = self.gpus_per_node
        if self.cpus_per_task:
            params['cpus_per_task'] = self.cpus_per_task
        if self.partition:
            params['slurm_partition'] = self.partition
        if self.mem:
            params['slurm_mem'] = self.mem
        if self.sbatch:
            params['slurm_additional_parameters'] = dict(self.sbatch)
        return params

    def describe(self):
        parts = [f'partition {self.partition or "(the default)"}', f'{self.nodes_per_run} node(s)',
                 f'{self.tasks} task(s) ({self.tasks_per_node} per node)', f'{self.gpus_per_run} GPU(s)',
                 f'{self.cpus_per_task or "default"} CPU(s) per task', f'memory {self.mem or "(the default)"}',
                 f'time {self.timeout_min} min', f'at most {self.max_parallel} runs at once',
                 f'USR2 {self.signal_delay_s} s before the limit, at most {self.max_requeues} requeues']
        if self.sbatch:
            parts.append('sbatch ' + ' '.join(f'--{k}' if v is True else f'--{k}={v}' for k, v in self.sbatch.items()))
        return ', '.join(parts)


# ------------------------------------------------------------------ the array task

def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(data, f, indent=2)
        f.write('\n')
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def last_error_line(log):
    """The last line of ``log`` that reads as an error (``error: ...`` first, then a Python exception line),
    else its last non-empty line; '' without a log."""
    try:
        with open(log, errors='replace') as f:
            lines = [line.rstrip() for line in f if line.strip()]
    except OSError:
        return ''
    for pattern in (r'^error: ', r'^([A-Za-z_][\w.]*(Error|Exception)|KeyboardInterrupt)(:|$)', r'(?i)\berror\b'):
        for line in reversed(lines):
            if re.search(pattern, line.strip()):
                return line.strip()
    return lines[-1].strip() if lines else ''


def _slurm_env():
    return {k: v for k, v in os.environ.items() if k.startswith('SLURM_')}


class RunJob:
    """One (activation, seed) run as a Slurm array task: training then evaluation in the run's folder.

    ``train`` and ``evaluate`` are argv lists (the interpreter included); ``evaluate`` may hold ``{checkpoint}``,
    replaced by ``checkpoint(run_dir)``'s answer after training, and ``{metrics}`` by the metrics file to write.
    ``resume_flag`` is inserted into ``train`` at ``resume_at`` (default: appended) when the folder already holds
    a checkpoint. Picklable (submitit pickles it at submission and on requeue).
    """

    def __init__(self, run_dir, train, evaluate, checkpoint, resume_flag=('--resume',), env=None,
                 max_requeues=3, requeues=0, resume_at=None, checkpoint_wait_s=240):
        self.run_dir = run_dir
        self.train = list(train)
        self.evaluate = list(evaluate)
        self.checkpoint_of = checkpoint  # run_dir -> checkpoint path or None (a picklable function)
        self.resume_flag = list(resume_flag)
        self.env = dict(env or {})
        self.max_requeues = max_requeues
        self.requeues = requeues
        self.resume_at = resume_at
        self.checkpoint_wait_s = checkpoint_wait_s  # how long checkpoint() waits for training to save and exit
        self._child = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['_child'] = None
        return state

    # --- helpers
    @staticmethod
    def rank():
        return int(os.environ.get('SLURM_PROCID', '0'))

    def _state(self, state, **extra):
        if self.rank() != 0:
            return
        _write_json(osp.join(self.run_dir, STATE_FILE),
                    dict(state=state, job_id=_job_id_from_env(), requeues=self.requeues, host=os.uname().nodename,
                         time=time.strftime('%Y-%m-%d %H:%M:%S'), **extra))

    def _run(self, argv, log, mode):
        env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), **self.env}
        with open(log, mode) as f:
            f.write(f'$ {shlex.join(argv)}    # slurm job {_job_id_from_env()}, task {self.rank()}\n')
            f.flush()
            self._child = subprocess.Popen(argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=env)
            try:
                # poll, not wait(): Popen.wait holds a lock that checkpoint(), running in a signal handler on
                # top of this frame, would wait for forever
                while (rc := self._child.poll()) is None:
                    time.sleep(0.2)
                return rc
            finally:
                self._child = None

    def _log(self, name):
        # every task but 0 logs beside (train.log.task1, ...): the same file would interleave
        return osp.join(self.run_dir, name if self.rank() == 0 else f'{name}.task{self.rank()}')

    # --- the job
    def __call__(self):
        os.makedirs(self.run_dir, exist_ok=True)
        metrics = osp.join(self.run_dir, 'metrics.json')
        if osp.isfile(metrics):
            self._state('done')
            return metrics
        self._state('running')
        if not osp.isfile(osp.join(self.run_dir, 'train.done')):
            resume = self.checkpoint_of(self.run_dir) is not None
            at = len(self.train) if self.resume_at is None else self.resume_at
            argv = self.train[:at] + (self.resume_flag if resume else []) + self.train[at:]
            log = self._log('train.log')
            rc = self._run(argv, log, 'a' if resume else 'w')
            if rc != 0:
                self._ended(rc, log)
            if self.rank() != 0:
                return None
            with open(osp.join(self.run_dir, 'train.done'), 'w') as f:
                f.write(time.strftime('%Y-%m-%d %H:%M:%S\n'))
        if self.rank() != 0:
            return None
        checkpoint = self.checkpoint_of(self.run_dir)
        if checkpoint is None:
            self._fail(f'training finished but left no checkpoint in {self.run_dir}', self._log('train.log'))
        tmp = metrics + '.tmp'
        argv = [a.replace('{checkpoint}', checkpoint).replace('{metrics}', tmp) for a in self.evaluate]
        log = self._log('eval.log')
        rc = self._run(argv, log, 'w')
        if rc != 0:
            self._ended(rc, log)
        os.replace(tmp, metrics)
        self._state('done')
        return metrics

    def _fail(self, line, log):
        self._state('failed', error=line, log=log)
        raise RunFailed(f'{line} (see {log})')

    def _ended(self, rc, log):
        """A command ended with ``rc`` != 0: checkpointed for a requeue, killed from outside, or failed."""
        if rc == EXIT_CHECKPOINTED or rc == -CHECKPOINT_SIGNAL:
            # the time-limit/preemption signal reached the subprocess first; submitit's handler (checkpoint below)
            # runs in this process any moment now and requeues or ends the job
            deadline = time.time() + 120
            while time.time() < deadline:
                time.sleep(1)
        if rc < 0:
            name = signal.Signals(-rc).name
            self._state('cancelled', error=f'killed by {name} (scancel, node failure or preemption)', log=log)
            raise RunFailed(f'{osp.basename(log)}: killed by {name}')
        self._fail(last_error_line(log) or f'exit status {rc}', log)

    def checkpoint(self, *args, **kwargs):
        """submitit, on USR2 (time limit or preemption), in task 0: let training save, then requeue or stop."""
        import submitit
        child = self._child
        if child is not None and not _exited(child.pid):
            try:
                child.send_signal(CHECKPOINT_SIGNAL)  # in case Slurm's own signal did not reach it
            except ProcessLookupError:
                pass
            # wait until it has saved and exited; no Popen method here (see _run), /proc says it is a zombie.
            # Past the wait, requeue anyway (Slurm kills it at the limit; the last regular checkpoint is kept)
            deadline = time.time() + max(5, getattr(self, 'checkpoint_wait_s', 240))
            while time.time() < deadline and not _exited(child.pid):
                time.sleep(0.2)
            if not _exited(child.pid):
                print(f'training did not exit within {self.checkpoint_wait_s} s of the signal; requeueing without '
                      f'its checkpoint', flush=True)
        if self.requeues >= self.max_requeues:
            self._state('timed_out', error=f'time limit (or preemption) reached {self.requeues + 1} times '
                                           f'({self.requeues} requeues, the bound); rerun the sweep to resubmit',
                        log=osp.join(self.run_dir, 'train.log'))
            return None  # submitit: not requeued, the job ends
        requeued = RunJob(self.run_dir, self.train, self.evaluate, self.checkpoint_of, self.resume_flag, self.env,
                          self.max_requeues, self.requeues + 1, self.resume_at, getattr(self, 'checkpoint_wait_s', 240))
        self.requeues += 1
        self._state('requeued')
        return submitit.helpers.DelayedSubmission(requeued)


def _exited(pid):
    """True once ``pid`` has exited (a zombie not yet reaped counts) or is gone."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[-1].split()[0] in ('Z', 'X')
    except OSError:
        return True


class PointerCheckpoint:
    """``RunJob``'s ``checkpoint``: the file a pointer file in the run folder names (MMEngine's
    ``last_checkpoint``; relative paths are from the repository root), or a fixed file name (fairseq's
    ``checkpoint_last.pt``); None when there is none yet. A class, so that it pickles by reference."""

    def __init__(self, pointer='last_checkpoint', fixed=None):
        self.pointer, self.fixed = pointer, fixed

    def __call__(self, run_dir):
        if self.fixed:
            path = osp.join(run_dir, self.fixed)
            return path if osp.isfile(path) else None
        pointer = osp.join(run_dir, self.pointer)
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            path = f.read().strip()
        path = path if osp.isabs(path) else osp.join(REPO, path)
        return path if osp.isfile(path) else None


def _job_id_from_env():
    env = os.environ
    if env.get('SLURM_ARRAY_JOB_ID') and env.get('SLURM_ARRAY_TASK_ID'):
        return f'{env["SLURM_ARRAY_JOB_ID"]}_{env["SLURM_ARRAY_TASK_ID"]}'
    return env.get('SLURM_JOB_ID', '')


# ------------------------------------------------------------------ submission

def make_executor(folder, resources, job_name):
    import submitit
    # the requeue bound is RunJob's (it marks the run timed out); submitit's own must not be reached first
    executor = submitit.AutoExecutor(folder=folder, cluster='slurm', slurm_max_num_timeout=resources.max_requeues + 1)
    executor.update_parameters(**resources.executor_parameters(job_name))
    return executor


def job_script(folder, resources, job_name, n_runs):
    """The sbatch script the array is submitted with (``--dry-run`` prints it)."""
    if shutil.which('srun') is None:  # submitit's SlurmExecutor refuses to exist without it
        raise SlurmError('srun not found: the job script is rendered by submitit, which needs Slurm on PATH; '
                         'run --dry-run on a Slurm login node (or use --launcher local)')
    import submitit
    from submitit.slurm.slurm import _make_sbatch_string
    executor = make_executor(folder, resources, job_name)
    inner = executor._executor
    command = ' '.join([inner.python, '-u -m submitit.core._submit', shlex.quote(str(folder))])
    params = dict(inner.parameters)
    params['map_count'] = n_runs if n_runs > 1 else None
    del submitit
    return _make_sbatch_string(command=command, folder=folder, **params)


def submit(jobs, folder, resources, job_name='sau-zoo', log=print):
    """Submit ``jobs`` (RunJob) as one job array; write each run's ``slurm_job.json``; return
    ``(job ids, seconds)``. Returns at once: Slurm runs them."""
    if not jobs:
        return [], 0.0
    if shutil.which('sbatch') is None:
        raise SlurmError('sbatch not found: --launcher slurm submits from a Slurm login node (or use '
                         '--launcher local)')
    os.makedirs(folder, exist_ok=True)
    executor = make_executor(folder, resources, job_name)
    start = time.time()
    try:
        submitted = executor.submit_array(jobs)
    except Exception as e:  # sbatch refused: bad partition, resources, ...
        message = str(e).strip().splitlines()
        raise SlurmError(f'sbatch refused the array: {message[-1] if message else e}') from None
    seconds = time.time() - start
    ids = []
    for job, sub in zip(jobs, submitted):
        path = osp.join(job.run_dir, JOB_FILE)
        earlier = _read_json(path) or {}
        history = earlier.get('history', []) + ([earlier['job_id']] if earlier.get('job_id') else [])
        os.makedirs(job.run_dir, exist_ok=True)
        # a new submission: the previous attempt's end state no longer describes the run
        state_file = osp.join(job.run_dir, STATE_FILE)
        if osp.isfile(state_file):
            os.replace(state_file, state_file + '.prev')
        _write_json(path, dict(job_id=sub.job_id, folder=str(folder), stdout=str(sub.paths.stdout),
                               stderr=str(sub.paths.stderr), submitted=time.strftime('%Y-%m-%d %H:%M:%S'),
                               submitted_unix=time.time(), history=history))
        ids.append(sub.job_id)
    return ids, seconds


# ------------------------------------------------------------------ state

def _run_cmd(argv, timeout=60):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def sacct_available():
    """True when Slurm accounting answers (``sacct`` exits 0)."""
    if shutil.which('sacct') is None:
        return False
    return _run_cmd(['sacct', '-n', '-X', '-P', '-o', 'JobID', '-S', 'now']) is not None


def slurm_states(job_ids, use_sacct=None):
    """Job id (``A_T`` or ``J``) -> (Slurm state, reason, restarts) for the jobs Slurm still knows.

    ``squeue --states=all`` first (pending and running jobs, and finished ones for ``MinJobAge``), then
    ``sacct`` where accounting exists (finished jobs, for as long as the database keeps them); the caller
    falls back to the run folder's markers for the rest.
    """
    job_ids = [j for j in job_ids if j]
    out = {}
    if not job_ids:
        return out
    mains = sorted({j.split('_')[0] for j in job_ids})
    text = _run_cmd(['squeue', '-h', '-r', '--states=all', '-o', '%i|%T|%r', '-j', ','.join(mains)])
    if text is None:  # one unknown id makes squeue fail for all: ask one at a time
        text = ''.join(_run_cmd(['squeue', '-h', '-r', '--states=all', '-o', '%i|%T|%r', '-j', m]) or ''
                       for m in mains)
    for line in text.splitlines():
        parts = line.strip().split('|')
        if len(parts) >= 2:
            out[parts[0]] = (parts[1].split()[0], parts[2] if len(parts) > 2 else '')
    missing = [j for j in job_ids if j not in out]
    if missing and (use_sacct if use_sacct is not None else sacct_available()):
        text = _run_cmd(['sacct', '-n', '-X', '-P', '-o', 'JobID,State', '-j', ','.join(missing)]) or ''
        for line in text.splitlines():
            parts = line.strip().split('|')
            if len(parts) >= 2 and parts[0] in missing:
                out[parts[0]] = (parts[1].split()[0], 'sacct')
    missing = [j for j in job_ids if j not in out]
    for job_id in missing:  # scontrol knows what squeue knows, but answers per job id (single jobs, old arrays)
        text = _run_cmd(['scontrol', 'show', 'job', '-o', job_id]) or ''
        match = re.search(r'\bJobState=(\S+)', text)
        if match:
            reason = re.search(r'\bReason=(\S+)', text)
            out[job_id] = (match.group(1), reason.group(1) if reason else '')
    return out


def run_state(run_dir, known=None):
    """The state of one run: dict(state, job_id, log, error, slurm).

    ``done``: ``metrics.json`` exists. Otherwise, for a submitted run: what Slurm says while it knows the job
    (squeue/scontrol, sacct with accounting), refined by the run's markers (a job that ended with an error is
    ``timed_out`` when its marker says the requeue bound was reached); once Slurm has forgotten it, the
    markers alone: ``failed``/``timed_out``/``cancelled`` as written by the job, ``running``/``requeued`` or
    no marker at all: it ended without a word (``cancelled``: scancel, its node failed). ``new``: never
    submitted.
    """
    job = _read_json(osp.join(run_dir, JOB_FILE)) or {}
    marker = _read_json(osp.join(run_dir, STATE_FILE)) or {}
    job_id = job.get('job_id')
    logs = [p for p in (osp.join(run_dir, 'eval.log'), osp.join(run_dir, 'train.log')) if osp.isfile(p)]
    newest = max(logs, key=osp.getmtime) if logs else None
    out = dict(state='new', job_id=job_id, log=newest or job.get('stdout'), error='', slurm='',
               slurm_log=job.get('stdout'))
    if osp.isfile(osp.join(run_dir, 'metrics.json')):
        out['state'] = 'done'
        return out
    if not job_id:
        return out
    if known is None:
        known = slurm_states([job_id])
    slurm_state, reason = known.get(job_id, (None, ''))
    out['slurm'] = f'{slurm_state} ({reason})' if slurm_state and reason else (slurm_state or 'unknown to Slurm')
    mark = marker.get('state')
    if marker.get('error'):
        out['error'] = marker['error']
    if marker.get('log'):
        out['log'] = marker['log']
    state = SLURM_STATES.get(slurm_state) if slurm_state else None
    if state in ('pending', 'running'):
        out['state'] = state
        out['error'] = ''
    elif state is not None:
        # Slurm says it ended: the markers know better why (an UncompletedJobError is FAILED to Slurm)
        if mark in ('failed', 'timed_out', 'cancelled') and state != 'timed_out':
            state = mark
        elif state == 'done':
            state = 'failed'  # COMPLETED without metrics.json
            out['error'] = out['error'] or 'the job completed but wrote no metrics.json'
        elif state == 'failed' and not out['error'] and job.get('stderr'):
            # it failed before RunJob ran (e.g. the pickled call did not load): submitit's own log says why
            out['error'] = last_error_line(job['stderr'])
            out['log'] = job['stderr']
        if state in ('failed', 'cancelled') and not out['error']:
            out['error'] = f'Slurm: {slurm_state}' + (f' ({reason})' if reason else '')
        out['state'] = state
    elif mark in ('failed', 'timed_out', 'cancelled'):
        out['state'] = mark
    else:  # Slurm forgot the job and it left no end marker: killed from outside
        out['state'] = 'cancelled'
        out['error'] = out['error'] or (f'job {job_id} ended without an end marker (scancel, node failure?); '
                                        f'last marker: {mark or "none"}')
    if out['state'] == 'failed' and not out['error']:
        out['error'] = last_error_line(out['log']) if out['log'] else ''
    return out


def run_states(run_dirs, use_sacct=None):
    """``run_state`` for many runs with one squeue (and sacct) call."""
    jobs = {d: (_read_json(osp.join(d, JOB_FILE)) or {}).get('job_id') for d in run_dirs}
    known = slurm_states([j for d, j in jobs.items() if j and not osp.isfile(osp.join(d, 'metrics.json'))],
                         use_sacct=use_sacct)
    return {d: run_state(d, known) for d in run_dirs}


def state_line(label, state):
    """``LABEL: STATE  job J  log PATH[  ERROR]``, one line per run of ``--status``."""
    parts = [f'{label}: {state["state"]}']
    if state.get('job_id'):
        parts.append(f'job {state["job_id"]}')
    if state.get('log'):
        parts.append(f'log {state["log"]}')
    if state['state'] in ('failed', 'cancelled', 'timed_out') and state.get('error'):
        parts.append(state['error'])
    return '  '.join(parts)


def wait(run_dirs, poll_s=5, timeout_s=None, log=None):
    """Block until no run is pending or running; return the final ``run_states``."""
    start = time.time()
    last = None
    while True:
        states = run_states(run_dirs)
        live = {d: s['state'] for d, s in states.items() if s['state'] in ('pending', 'running')}
        if log is not None:
            summary = ', '.join(f'{n} {k}' for k, n in _count(s['state'] for s in states.values()).items())
            if summary != last:
                log(f'[{time.time() - start:.0f} s] {summary}')
                last = summary
        if not live:
            return states
        if timeout_s is not None and time.time() - start > timeout_s:
            return states
        time.sleep(poll_s)


def _count(values):
    out = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


if __name__ == '__main__':  # pragma: no cover
    sys.exit('tools/zoo/slurm.py is a module; use tools/sweep.py TASK --launcher slurm')
