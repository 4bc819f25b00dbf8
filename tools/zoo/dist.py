"""Distributed training for tools/train.py: ``--launcher pytorch`` (torchrun) and ``slurm``.

With CUDA GPUs MMEngine and fairseq start the process group themselves (NCCL). Without, both need help:
MMEngine configs get a gloo group and a DDP wrapper without device ids (``setup_cpu_distributed``), fairseq
configs get ``--distributed-backend gloo --ddp-backend legacy_ddp`` (``fairseq_launcher_options``).
"""
import os

from tools.zoo.errors import InputError


def check_launcher(launcher):
    """For both engines: ``--launcher pytorch`` needs the variables torchrun sets, ``--launcher slurm`` CUDA GPUs
    and the variables srun sets; one ``error:`` line otherwise."""
    import torch
    needs = {'pytorch': ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'),
             'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_JOB_NODELIST')}.get(launcher, ())
    if launcher == 'slurm' and not torch.cuda.is_available():
        raise InputError('--launcher slurm needs CUDA GPUs; on CPU start the processes with torchrun '
                               'and --launcher pytorch (gloo)')
    missing = [key for key in needs if key not in os.environ]
    if missing:
        start = ('torchrun (python -m torch.distributed.run --nproc_per_node=N tools/train.py ...)'
                 if launcher == 'pytorch' else 'srun (srun --ntasks=N python -u tools/train.py ...)')
        raise InputError(f'--launcher {launcher}: {", ".join(missing)} not set; start the processes with '
                               f'{start}')


def check_amp(amp):
    """``--amp`` needs a GPU on both engines: MMEngine's ``AmpOptimWrapper`` asserts one, and fairseq's ``--amp``
    autocasts CUDA only (on a CPU it would train in float32 behind a loss scaler, silently)."""
    import torch
    if amp and not torch.cuda.is_available():
        raise InputError('--amp needs a CUDA GPU (MMEngine\'s AmpOptimWrapper; fairseq\'s --amp autocasts '
                               'on CUDA only); on CPU train without it')


def setup_cpu_distributed(cfg, launcher):
    """MMEngine configs, ``--launcher pytorch`` without a GPU: a gloo process group, DDP without device ids.

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
    if launcher == 'pytorch' and not torch.cuda.is_available():
        options = {'fairseq.train.distributed_backend': 'gloo', 'fairseq.train.ddp_backend': 'legacy_ddp'}
    elif launcher == 'slurm':
        options = {'fairseq.train.distributed_port': int(os.environ.get('MASTER_PORT', 29500))}
        if 'SLURM_NTASKS' in os.environ:
            options['fairseq.train.distributed_world_size'] = int(os.environ['SLURM_NTASKS'])
    return options
