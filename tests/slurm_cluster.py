"""A single-node Slurm cluster on this machine, for tests: munged, slurmctld and slurmd on localhost.

Everything lives in one temporary folder: the munge key and socket, ``slurm.conf``/``cgroup.conf``, the state
and spool folders, the daemons' logs and pid files. Nothing under ``/etc`` is read or written: the clients find
the cluster through ``SLURM_CONF`` (``cluster.env``), munge through ``AuthInfo=socket=...``. No accounting
(``AccountingStorageType=accounting_storage/none``): ``sacct`` fails there, as on clusters without slurmdbd.

    cluster = SlurmCluster(tmp_dir)
    cluster.start()                   # seconds; raises ClusterUnavailable with the reason
    subprocess.run(['srun', '-n2', 'hostname'], env=cluster.env)
    cluster.stop()                    # each daemon by its pid

Needs root (slurmd starts jobs as their user; slurmctld and slurmd run as root here) and Debian's
``slurm-wlm`` and ``munge`` packages (``apt-get install slurm-wlm munge``). ``skip_reason()`` says why a test
cannot use it: not root, a binary missing, or ``SAU_ZOO_SLURM_TESTS=0``.
"""
import os
import os.path as osp
import shutil
import signal
import socket
import subprocess
import time

BINARIES = ('munged', 'mungekey', 'slurmctld', 'slurmd', 'srun', 'sbatch', 'squeue', 'scontrol', 'sinfo',
            'scancel')
HOW_TO_ENABLE = ('as root, with Debian\'s slurm-wlm and munge installed (apt-get install slurm-wlm munge; '
                 '.ci/run does this)')


class ClusterUnavailable(RuntimeError):
    """The local cluster could not be started; the message says why (and which log to read)."""


def skip_reason():
    """Why the Slurm tests cannot run here, or None."""
    if os.environ.get('SAU_ZOO_SLURM_TESTS', '1') == '0':
        return 'SAU_ZOO_SLURM_TESTS=0'
    missing = [b for b in BINARIES if shutil.which(b) is None and not osp.exists(f'/usr/sbin/{b}')]
    if missing:
        return f'Slurm/munge binaries missing ({", ".join(missing)}); the Slurm tests run {HOW_TO_ENABLE}'
    if os.geteuid() != 0:
        return f'not root: the local Slurm cluster needs root; the Slurm tests run {HOW_TO_ENABLE}'
    return None


def _binary(name):
    return shutil.which(name) or f'/usr/sbin/{name}'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _mem_mb():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemTotal:'):
                return int(line.split()[1]) // 1024
    return 1024


SLURM_CONF = '''\
# Single-node test cluster written by tests/slurm_cluster.py
ClusterName=sauzoo
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job waits this long before it starts again (default 120 s)
AuthInfo=socket={munge_socket},cred_expire={cred_expire}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
# jobs are requeued (not failed) when their node goes down; finished jobs stay visible to squeue/scontrol
JobRequeue=1
MinJobAge={min_job_age}
KillWait=10
OverTimeLimit=0
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_min_interval=100000
MaxArraySize=10001
PlugStackConfig={root}/plugstack.conf
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
# preemption as clusters with a scavenger queue have it: a job of the higher tier (the urgent partition) that
# needs the CPUs of running jobs of the lower tier requeues them; they get their --signal (USR2) at once and
# GraceTime to save before SIGTERM/SIGKILL (preempt_send_user_signal: Slurm 22.05's name for that option)
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
SlurmctldParameters=preempt_send_user_signal
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 GraceTime=120
PartitionName={urgent_partition} Nodes={node} MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=10 PreemptMode=OFF
'''


class SlurmCluster:
    partition = 'debug'
    urgent_partition = 'urgent'  # its jobs preempt (requeue) the default partition's

    def __init__(self, root, cpus=None, min_job_age=300, cred_expire=10):
        self.root = osp.abspath(str(root))
        self.cpus = cpus or os.cpu_count()
        self.min_job_age = min_job_age
        self.cred_expire = cred_expire
        self.host = socket.gethostname().split('.')[0]
        self.node = self.host
        self.conf = osp.join(self.root, 'slurm.conf')
        self.munge_socket = osp.join(self.root, 'munge', 'munge.socket')
        self.pids = {}  # daemon -> pid
        self.start_seconds = None

    @property
    def env(self):
        """The environment for Slurm's clients (srun, sbatch, squeue, ...) and for submitit."""
        return {**os.environ, 'SLURM_CONF': self.conf}

    def log(self, daemon):
        return osp.join(self.root, f'{daemon}.log')

    def _write_config(self):
        for sub in ('munge', 'state', 'spool'):
            os.makedirs(osp.join(self.root, sub), mode=0o700, exist_ok=True)
        mem_mb = int(_mem_mb() * 0.9)
        with open(self.conf, 'w') as f:
            f.write(SLURM_CONF.format(host=self.host, node=self.node, root=self.root, cpus=self.cpus,
                                      mem_mb=mem_mb, ctld_port=_free_port(), slurmd_port=_free_port(),
                                      munge_socket=self.munge_socket, min_job_age=self.min_job_age,
                                      cred_expire=self.cred_expire,
                                      partition=self.partition, urgent_partition=self.urgent_partition))
        with open(osp.join(self.root, 'cgroup.conf'), 'w') as f:
            f.write('# no cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none\n'
                    'CgroupAutomount=no\n')
        with open(osp.join(self.root, 'plugstack.conf'), 'w') as f:
            f.write('# no SPANK plugins\n')

    def _run(self, argv, what):
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise ClusterUnavailable(f'{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}')
        return proc.stdout

    def _start_munge(self):
        munge = osp.join(self.root, 'munge')
        key = osp.join(munge, 'munge.key')
        self._run([_binary('mungekey'), '--create', f'--keyfile={key}'], 'mungekey --create')
        os.chmod(key, 0o600)
        pid_file = osp.join(munge, 'munged.pid')
        self._run([_binary('munged'), f'--socket={self.munge_socket}', f'--key-file={key}',
                   f'--pid-file={pid_file}', f'--seed-file={munge}/munged.seed',
                   f'--log-file={self.log("munged")}', '--force'], 'munged')
        self.pids['munged'] = self._read_pid(pid_file, 'munged')

    def _read_pid(self, pid_file, daemon, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(pid_file) as f:
                    text = f.read().strip()
                if text:
                    return int(text)
            except (FileNotFoundError, ValueError):
                pass
            time.sleep(0.05)
        raise ClusterUnavailable(f'{daemon} wrote no pid file {pid_file}; see {self.log(daemon)}')

    def start(self, timeout=60):
        """Start munged, slurmctld and slurmd; return when ``sinfo`` shows the node idle."""
        start = time.time()
        self._write_config()
        try:
            self._start_munge()
            # -i: ignore state files from an earlier run (there are none in a fresh folder)
            self._run([_binary('slurmctld'), '-f', self.conf, '-i'], 'slurmctld')
            self.pids['slurmctld'] = self._read_pid(osp.join(self.root, 'slurmctld.pid'), 'slurmctld')
            self._run([_binary('slurmd'), '-f', self.conf, '-N', self.node], 'slurmd')
            self.pids['slurmd'] = self._read_pid(osp.join(self.root, 'slurmd.pid'), 'slurmd')
            self.wait_node_state('idle', timeout=timeout - (time.time() - start))
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.time() - start
        return self

    def node_state(self):
        # one partition: sinfo -N lists the node once per partition (the test cluster has two)
        proc = subprocess.run(['sinfo', '-h', '-N', '-n', self.node, '-p', self.partition, '-o', '%T'],
                              env=self.env, capture_output=True, text=True, timeout=30)
        return proc.stdout.strip().lower() if proc.returncode == 0 else ''

    def wait_node_state(self, state, timeout=60):
        """Wait until the node's state (sinfo's %T, e.g. idle, mixed, allocated, drained) starts with ``state``."""
        deadline = time.time() + max(timeout, 1)
        last = ''
        while time.time() < deadline:
            for daemon in ('slurmctld', 'slurmd'):
                if daemon in self.pids and not _alive(self.pids[daemon]):
                    raise ClusterUnavailable(f'{daemon} exited; see {self.log(daemon)}: {self._log_tail(daemon)}')
            last = self.node_state()
            if last.startswith(state):
                return last
            time.sleep(0.2)
        raise ClusterUnavailable(f'node {self.node} is {last or "unknown"!r}, not {state}, after {timeout:.0f} s; '
                                 f'see {self.log("slurmctld")} and {self.log("slurmd")}')

    def scontrol(self, *args):
        return self._run(['scontrol', *args], 'scontrol ' + ' '.join(args))

    def set_node_state(self, state, reason='test'):
        """``scontrol update nodename=NODE state=STATE`` (drain, down, resume, ...)."""
        extra = [f'reason={reason}'] if state.lower() in ('drain', 'down', 'fail') else []
        try:
            self.scontrol('update', f'nodename={self.node}', f'state={state}', *extra)
        except ClusterUnavailable as e:
            # Slurm refuses to resume a node that is neither down, drained nor failed: with ReturnToService=2 a
            # down node whose slurmd answers comes back by itself (idle, mixed, allocated, completing, ...)
            current = self.node_state()
            back = bool(current) and not current.startswith(('down', 'drain', 'fail'))
            if not (state.lower() == 'resume' and 'Invalid node state' in str(e) and back):
                raise

    def _log_tail(self, daemon, lines=5):
        try:
            with open(self.log(daemon)) as f:
                return ' | '.join(line.strip() for line in f.readlines()[-lines:])
        except OSError:
            return '(no log)'

    def stop(self, timeout=15):
        """Cancel what is still queued or running, then stop slurmd, slurmctld and munged, each by its pid
        (SIGTERM, then SIGKILL), and any job step process of this cluster left behind (by pid too)."""
        if self.pids.get('slurmctld') and _alive(self.pids['slurmctld']):
            subprocess.run(['scancel', '--full', '--user', str(os.geteuid())], env=self.env, capture_output=True,
                           timeout=30)
            deadline = time.time() + 20
            while time.time() < deadline:
                proc = subprocess.run(['squeue', '-h', '-o', '%i'], env=self.env, capture_output=True, text=True,
                                      timeout=30)
                if proc.returncode != 0 or not proc.stdout.strip():
                    break
                time.sleep(0.2)
        for daemon in ('slurmd', 'slurmctld', 'munged'):
            pid = self.pids.pop(daemon, None)
            if pid is None:
                continue
            _terminate(pid, timeout)
        for pid in self.leftover_processes():
            _terminate(pid, 5)

    def leftover_processes(self):
        """Pids of slurmstepd and job processes started by this cluster (their environment names its
        slurm.conf and they run a Slurm job step); the test process itself is never among them."""
        pids = []
        needle = f'SLURM_CONF={self.conf}'.encode()
        for entry in os.listdir('/proc'):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f'/proc/{entry}/environ', 'rb') as f:
                    environ = f.read().split(b'\0')
                with open(f'/proc/{entry}/cmdline', 'rb') as f:
                    cmdline = f.read()
            except OSError:
                continue
            if needle in environ and (cmdline.startswith(b'slurmstepd')
                                      or any(v.startswith(b'SLURM_JOB_ID=') for v in environ)):
                if _alive(int(entry)):
                    pids.append(int(entry))
        return pids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except OSError:
        return False


def _terminate(pid, timeout):
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + timeout
    while time.time() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
