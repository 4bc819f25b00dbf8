"""Distributed training for tools/train.py: ``--launcher pytorch`` (torchrun) and ``slurm`` (srun).

With CUDA GPUs MMEngine and fairseq start the process group themselves (NCCL). Without, both need help:
MMEngine configs get a gloo group and a DDP wrapper without device ids (``setup_cpu_distributed``), fairseq
configs get ``--distributed-backend gloo --ddp-backend legacy_ddp`` (``fairseq_launcher_options``).

``--launcher slurm`` on CPU nodes is the torchrun case with torchrun's variables taken from srun's
(``slurm_env``: rank, world size, local rank, the master node and a port derived from the job id, so that two
jobs on one node do not collide); with GPUs MMEngine's and fairseq's own Slurm set-up (NCCL), with that port.
"""
import os

from tools.zoo.errors import InputError


def check_launcher(launcher):
    """For both engines: ``--launcher pytorch`` needs the variables torchrun sets, ``--launcher slurm`` the
    variables srun sets; one ``error:`` line otherwise. On CPU, ``--launcher slurm`` then exports torchrun's
    variables from srun's (``slurm_env``), so that both engines take their torchrun (gloo) path."""
    import torch
    needs = {'pytorch': ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
             'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_JOB_NODELIST')}.get(launcher, ())
    missing = [key for key in needs if key not in os.environ]
    if missing:
        start = ('torchrun (python -m torch.distributed.run --nproc_per_node=N tools/train.py ...)'
                 if launcher == 'pytorch' else 'srun (srun --ntasks=N python -u tools/train.py ...)')
        raise InputError(f'--launcher {launcher}: {", ".join(missing)} not set; start the processes with '
                               f'{start}')
    if launcher == 'slurm':
        if torch.cuda.is_available():  # MMEngine's and fairseq's own Slurm set-up; only the port is ours
            os.environ.setdefault('MASTER_PORT', str(slurm_master_port()))
        else:
            os.environ.update(slurm_env())


def slurm_master_port(environ=None):
    """The rendezvous port of a ``--launcher slurm`` run: ``MASTER_PORT`` when set, else 20000 + the job id mod
    10000, so that two jobs on one node (two array tasks of a sweep, say) do not both take a fixed 29500."""
    environ = os.environ if environ is None else environ
    if environ.get('MASTER_PORT'):
        return int(environ['MASTER_PORT'])
    return 20000 + int(environ.get('SLURM_JOB_ID', '0')) % 10000


def expand_nodelist(nodelist):
    """Slurm's compressed host list (``node[01-03,07],gpu5``) -> host names, as ``scontrol show hostnames``
    prints them (a node without Slurm's client tools has only the variable)."""
    import re
    hosts = []
    for item in re.findall(r'[^,\[]+(?:\[[^\]]*\][^,\[]*)*', nodelist):
        match = re.fullmatch(r'(.*?)\[(.*?)\](.*)', item)
        if not match:
            hosts.append(item)
            continue
        prefix, ranges, suffix = match.groups()
        for part in ranges.split(','):
            low, _, high = part.partition('-')
            hosts += [f'{prefix}{i:0{len(low)}d}{suffix}' for i in range(int(low), int(high or low) + 1)]
    return hosts


def slurm_env(environ=None):
    """torchrun's variables from srun's: RANK=SLURM_PROCID, WORLD_SIZE=SLURM_NTASKS, LOCAL_RANK=SLURM_LOCALID,
    MASTER_ADDR the step's first node (``SLURM_STEP_NODELIST``, else the job's), MASTER_PORT
    ``slurm_master_port()``. Returns the ones to set: variables already set (by the user) are kept."""
    environ = os.environ if environ is None else environ
    nodelist = environ.get('SLURM_STEP_NODELIST') or environ.get('SLURM_JOB_NODELIST', '')
    out = dict(RANK=environ['SLURM_PROCID'], WORLD_SIZE=environ['SLURM_NTASKS'],
               LOCAL_RANK=environ.get('SLURM_LOCALID', '0'),
               MASTER_ADDR=(expand_nodelist(nodelist) or ['127.0.0.1'])[0], MASTER_PORT=str(slurm_master_port(environ)))
    return {k: v for k, v in out.items() if not environ.get(k)}


def check_amp(amp):
    """``--amp`` needs a GPU on both engines: MMEngine's ``AmpOptimWrapper`` asserts one, and fairseq's ``--amp``
    autocasts CUDA only (on a CPU it would train in float32 behind a loss scaler, silently)."""
    import torch
    if amp and not torch.cuda.is_available():
        raise InputError('--amp needs a CUDA GPU (MMEngine\'s AmpOptimWrapper; fairseq\'s --amp autocasts '
                               'on CUDA only); on CPU train without it')


def close_process_group():
    """Destroy the default process group before the interpreter exits, as torch asks: a finished 2-process
    CPU run once aborted in the interpreter's teardown (``terminate called without an active exception``,
    exit -6) with its gloo group still alive."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def setup_cpu_distributed(cfg, launcher):
    """MMEngine configs, ``--launcher pytorch`` or ``slurm`` without a GPU: a gloo process group (``env://``:
    torchrun's variables, or srun's through ``slurm_env``), DDP without device ids.

    MMEngine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` (no NVIDIA driver: a traceback) and its
    DDP wrapper passes ``device_ids=[LOCAL_RANK]``, which torch refuses for a CPU model. With the group
    already initialised here, ``Runner.setup_env`` skips its own ``init_dist``. With GPUs nothing changes.
    """
    import torch
    if launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.get('sync_bn'):
        raise InputError(f'sync_bn={cfg.sync_bn} needs CUDA GPUs (torch\'s SyncBatchNorm runs on GPUs only); '
                               f'on CPU train without it, or with GroupNorm (norm_cfg=dict(type=\'GN\', ...))')
    from datetime import timedelta

    import torch.distributed as dist
    dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {}, backend='gloo')
    cfg.env_cfg = dict(cfg.get('env_cfg') or {}, dist_cfg=dist_cfg)
    dist.init_process_group(backend='gloo', timeout=timedelta(seconds=dist_cfg.get('timeout', 1800)))
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    if wrapper.get('type', 'MMDistributedDataParallel') in ('MMDistributedDataParallel', 'DistributedDataParallel'):
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def fairseq_launcher_options(launcher):
    """fairseq options (``--cfg-options fairseq.train.*`` keys) for ``--launcher``; the user's own win.

    fairseq reads torchrun's variables by itself (``env://``), but defaults to NCCL and to PyTorch DDP with
    ``device_ids=[LOCAL_RANK]``; without a GPU that is gloo and fairseq's ``legacy_ddp`` (all-reduces the
    gradients itself, no device ids). Slurm: fairseq's own inference from ``SLURM_*`` needs a port.
    """
    import torch
    options = {}
    if launcher in ('pytorch', 'slurm') and not torch.cuda.is_available():
        # slurm: check_launcher exported torchrun's variables, fairseq takes its env:// path
        options = {'fairseq.train.distributed_backend': 'gloo', 'fairseq.train.ddp_backend': 'legacy_ddp'}
    elif launcher == 'slurm':
        options = {'fairseq.train.distributed_port': slurm_master_port()}
        if 'SLURM_NTASKS' in os.environ:
            options['fairseq.train.distributed_world_size'] = int(os.environ['SLURM_NTASKS'])
    return options
