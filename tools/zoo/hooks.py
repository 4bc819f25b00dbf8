"""MMEngine hooks for safe training runs: stop on a non-finite loss, atomic checkpoints, exact resume.

- ``FiniteLossHook``: after every training step, raises ``FloatingPointError`` naming the iteration and
  each non-finite ``loss*`` term, before any checkpoint of the broken weights is written.
- ``AtomicCheckpointHook``: MMEngine's ``CheckpointHook`` whose files (checkpoints, ``last_checkpoint``)
  are written to a temporary file in the same folder, fsynced and renamed over the final name
  (``os.replace``), and which removes outdated checkpoints only after the new one is complete. A run
  killed while saving keeps its previous checkpoint and leaves no partial file under a checkpoint name.
- ``RandomStateHook``: stores the Python, NumPy and torch random states in every checkpoint and restores
  them on ``resume`` of an ``EpochBasedTrainLoop``, so a resumed run draws the same augmentations as an
  uninterrupted one (``IterBasedTrainLoop`` gets there by itself, see the class).

``add_reliability_hooks(cfg)`` puts the three into a config (``tools/train.py``). Without it, from the
command line: ``--cfg-options default_hooks.checkpoint.type=tools.zoo.hooks.AtomicCheckpointHook
default_hooks.finite_loss.type=tools.zoo.hooks.FiniteLossHook
default_hooks.random_state.type=tools.zoo.hooks.RandomStateHook`` (MMEngine imports dotted types); in a
config, ``custom_imports = dict(imports=['tools.zoo.hooks'])`` registers them under their class names.
"""
import glob
import os
import os.path as osp
import random

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from tools.zoo.io import PARTIAL_SUFFIX, atomic_write


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend with atomic ``put``/``put_text`` (``backend_args=dict(backend='atomic_local')``).

    ``mmengine.runner.checkpoint.save_checkpoint`` serialises the checkpoint to memory and hands the bytes
    to the backend's ``put``, which in ``LocalBackend`` opens the final path with ``'wb'`` and writes.
    """

    def put(self, obj, filepath):
        atomic_write(filepath, obj)

    def put_text(self, obj, filepath, encoding='utf-8'):
        atomic_write(filepath, obj.encode(encoding))


register_backend('atomic_local', AtomicLocalBackend, force=True)  # force: re-importing must not fail


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Stop training at the first NaN/inf loss term, naming the iteration and the term.

    Checks every entry of the step's log vars whose name contains ``loss`` (what MMEngine's
    ``BaseModel.parse_losses`` sums into the total ``loss``). Its priority runs it before the
    ``CheckpointHook`` and the ``LoggerHook``, so the weights of that step are never saved.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if not isinstance(outputs, dict):
            return
        bad = {}
        for name, value in outputs.items():
            if 'loss' not in name:
                continue
            value = torch.as_tensor(value).detach()
            if not torch.isfinite(value).all():
                bad[name] = value.item() if value.numel() == 1 else 'non-finite elements'
        if not bad:
            return
        terms = {k: v for k, v in bad.items() if k != 'loss'} or bad  # the total only if no term is
        listed = ', '.join(f'{k}={v}' for k, v in terms.items())
        raise FloatingPointError(
            f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): {listed}; '
            f'training stopped before saving these weights (lower the learning rate, check the data, '
            f'or resume from the last checkpoint)')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with atomic writes and outdated checkpoints removed after, not before, saving.

    A local ``out_dir`` (the default: the work dir) with no ``backend_args`` gets the ``atomic_local``
    backend; other backends (``s3://``, ...) are used as given. Leftover ``.*.partial`` files of a run
    killed while saving are removed when training starts.
    """

    #: the MMEngine release whose private CheckpointHook._save_checkpoint_with_step the override below copies
    MMENGINE_VERSION = '0.10.7'

    def before_train(self, runner):
        import mmengine

        from tools.zoo.errors import check_version
        check_version('mmengine', mmengine.__version__, self.MMENGINE_VERSION,
                      'tools.zoo.hooks.AtomicCheckpointHook._save_checkpoint_with_step',
                      "mmengine/hooks/checkpoint_hook.py CheckpointHook._save_checkpoint_with_step (its "
                      "keep_ckpt_ids / last_ckpt bookkeeping and its runner.save_checkpoint call) against the copy")
        out_dir = self.out_dir if self.out_dir is not None else runner.work_dir
        if self.backend_args is None and self.file_client_args is None and '://' not in str(out_dir):
            self.backend_args = dict(backend='atomic_local')
        super().before_train(runner)
        if self.backend_args == dict(backend='atomic_local') and is_main_process():
            for leftover in glob.glob(osp.join(glob.escape(self.out_dir), '.*' + PARTIAL_SUFFIX)):
                runner.logger.warning(f'removing {leftover}: a checkpoint left half-written by a killed run')
                os.remove(leftover)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine 0.10.7's CheckpointHook._save_checkpoint_with_step, reordered: with max_keep_ckpts it
        # removes the oldest checkpoint before writing the new one, so a kill in between (or a failed
        # write) leaves no checkpoint at all; here the removal comes last, and last_checkpoint is
        # replaced atomically.
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), str(self.last_ckpt).encode('utf-8'))
        for old in outdated:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random states (Python, NumPy, torch CPU and CUDA) in checkpoints; restore them on resume.

    MMEngine's ``resume`` restores model, optimizer, schedulers and the sampler's epoch, but reseeds
    the random generators from the seed, so with ``EpochBasedTrainLoop`` the random augmentations after
    a resume differ from those of an uninterrupted run. The states are restored in ``before_train``
    (lowest priority: after the other hooks' set-up) when the run resumed (its iteration is past 0),
    not for ``load_from``. ``IterBasedTrainLoop`` is left alone: after ``before_train`` it replays the
    dataloader up to the resumed iteration, which from the reseeded state redraws the same
    augmentations as the uninterrupted run (restoring first would make it draw past them). Only rank
    0's states are saved, so they are restored in single-process runs only.
    """

    priority = 'LOWEST'

    def __init__(self):
        self._loaded = None

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['rng_states'] = dict(
            python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state(),
            cuda=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)

    def after_load_checkpoint(self, runner, checkpoint):
        self._loaded = checkpoint.get('rng_states')

    def before_train(self, runner):
        states, self._loaded = self._loaded, None
        if states is None or runner.iter == 0:
            return
        if isinstance(runner.train_loop, IterBasedTrainLoop):
            return
        if runner.world_size > 1:
            runner.logger.warning('RandomStateHook: random states are not restored in distributed runs')
            return
        random.setstate(states['python'])
        np.random.set_state(states['numpy'])
        torch.set_rng_state(states['torch'].cpu())
        if states.get('cuda') is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in states['cuda']])
        runner.logger.info('RandomStateHook: random states restored from the checkpoint')


RELIABILITY_HOOKS = ('FiniteLossHook', 'RandomStateHook')


def _type_name(hook_cfg):
    kind = hook_cfg.get('type') if isinstance(hook_cfg, dict) else type(hook_cfg)
    return (kind if isinstance(kind, str) else getattr(kind, '__name__', str(kind))).rsplit('.', 1)[-1]


def add_reliability_hooks(cfg):
    """Make an MMEngine config use the hooks above (idempotent; a hook already there is kept).

    The plain ``CheckpointHook`` (also MMEngine's implicit default) becomes ``AtomicCheckpointHook``
    with the same arguments; ``FiniteLossHook`` and ``RandomStateHook`` are appended to
    ``custom_hooks``. ``default_hooks.checkpoint=None`` (checkpoints disabled) stays None.
    """
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    default_hooks = cfg.default_hooks  # Config.setdefault would return the dict before conversion
    if 'checkpoint' not in default_hooks:
        default_hooks['checkpoint'] = dict(type='AtomicCheckpointHook', interval=1)  # MMEngine's default
    elif isinstance(default_hooks['checkpoint'], dict) and \
            _type_name(default_hooks['checkpoint']) == 'CheckpointHook':
        default_hooks['checkpoint']['type'] = 'AtomicCheckpointHook'
    custom_hooks = list(cfg.get('custom_hooks') or [])
    present = {_type_name(h) for h in custom_hooks + [h for h in default_hooks.values() if h is not None]}
    custom_hooks += [dict(type=name) for name in RELIABILITY_HOOKS if name not in present]
    cfg.custom_hooks = custom_hooks
    return cfg


# ------------------------------------------------------------- Slurm: a checkpoint when the time limit is near

@HOOKS.register_module()
class SignalCheckpointHook(Hook):
    """Save a checkpoint and exit when Slurm warns that the job's time limit or a preemption is near.

    ``tools/sweep.py --launcher slurm`` submits with ``sbatch --signal=USR2@DELAY``; Slurm sends USR2 to every
    process of the job, this one included (``tools.zoo.slurm.CheckpointSignal``). Iteration-based loops stop
    after the current iteration, epoch-based loops at the end of the current epoch (MMEngine resumes those at
    epoch boundaries, so the requeued run then continues exactly as an uninterrupted one would; keep the epoch
    shorter than the delay). The checkpoint is the run's own ``CheckpointHook``'s (atomic, ``last_checkpoint``
    updated) unless it has just saved that step; then the process exits with status
    ``tools.zoo.slurm.EXIT_CHECKPOINTED`` (3), which the Slurm job takes as "requeue me" and resumes with
    ``--resume``. In a distributed run the ranks agree on the step with one all-reduce of a flag per check.
    """

    priority = 'LOWEST'  # after the CheckpointHook: its own save at this step comes first

    def __init__(self):
        self._signal = None

    def before_train(self, runner):
        import threading

        import mmengine

        from tools.zoo.errors import check_version
        from tools.zoo.slurm import CheckpointSignal
        check_version('mmengine', mmengine.__version__, AtomicCheckpointHook.MMENGINE_VERSION,
                      'tools.zoo.hooks.SignalCheckpointHook._save_and_exit',
                      "mmengine/hooks/checkpoint_hook.py CheckpointHook's private _save_checkpoint and its "
                      "file_backend / filename_tmpl / last_ckpt attributes, which it calls and reads")
        if threading.current_thread() is threading.main_thread():
            self._signal = CheckpointSignal().install()

    def after_train(self, runner):
        if self._signal is not None:
            self._signal.uninstall()

    def _requested(self, runner):
        if self._signal is None:
            return False
        if runner.world_size > 1:
            import torch.distributed as torch_dist
            return self._signal.requested(torch_dist.all_reduce)
        return self._signal.requested()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if isinstance(runner.train_loop, IterBasedTrainLoop) and self._requested(runner):
            self._save_and_exit(runner, f'iteration {runner.iter + 1}')

    def after_train_epoch(self, runner):
        if not isinstance(runner.train_loop, IterBasedTrainLoop) and self._requested(runner):
            self._save_and_exit(runner, f'epoch {runner.epoch + 1}')

    def _save_and_exit(self, runner, where):
        from tools.zoo.slurm import EXIT_CHECKPOINTED
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None:  # checkpoints disabled in the config: save one anyway, the requeue needs it
            name = f'epoch_{runner.epoch + 1}.pth' if not isinstance(runner.train_loop, IterBasedTrainLoop) \
                else f'iter_{runner.iter + 1}.pth'
            runner.save_checkpoint(runner.work_dir, name)
            if is_main_process():
                atomic_write(osp.join(runner.work_dir, 'last_checkpoint'),
                             osp.join(runner.work_dir, name).encode('utf-8'))
        else:
            step = runner.epoch + 1 if hook.by_epoch else runner.iter + 1
            saved = hook.file_backend.join_path(hook.out_dir, hook.filename_tmpl.format(step))
            if getattr(hook, 'last_ckpt', None) != saved:
                hook._save_checkpoint(runner)
        runner.logger.info(f'SignalCheckpointHook: {self._signal.received}: checkpoint saved after {where}; '
                           f'exiting with status {EXIT_CHECKPOINTED} to be requeued')
        raise SystemExit(EXIT_CHECKPOINTED)


def add_signal_checkpoint_hook(cfg):
    """Append ``SignalCheckpointHook`` to an MMEngine config's ``custom_hooks`` (idempotent)."""
    custom_hooks = list(cfg.get('custom_hooks') or [])
    if 'SignalCheckpointHook' not in {_type_name(h) for h in custom_hooks}:
        custom_hooks.append(dict(type='SignalCheckpointHook'))
    cfg.custom_hooks = custom_hooks
    return cfg


__all__ = ['AtomicCheckpointHook', 'AtomicLocalBackend', 'FiniteLossHook', 'RandomStateHook', 'SignalCheckpointHook',
           'add_reliability_hooks', 'add_signal_checkpoint_hook']
