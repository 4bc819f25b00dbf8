"""Train an MMEngine config (detection, segmentation) or a fairseq config (translation).

MMDetection's tools/train.py skeleton: load the config, apply the flags, ``Runner.from_cfg``,
``runner.train()``. ``--act NAME`` swaps every activation of the model (the paper's baselines).
``--resume`` checkpoints load with ``weights_only=True`` (checked by ``tools.zoo.io.read_checkpoint`` before the
framework reads them, and the framework's own load scoped by ``tools.zoo.io.checkpoint_loading``);
``--trust-checkpoint`` unpickles a local one fully.
"""
import argparse
import sys

from tools.zoo import config  # noqa: I100  (first: it quiets mmengine's import-time warnings)
from tools.zoo import data_checks, dist
from tools.zoo.errors import InputError, run_main
from tools.zoo.io import TRUST_FLAG, check_trust, checkpoint_loading, read_checkpoint

from sau_core import name_sau_layers


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model of the SAU zoo')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', default=False,
                        help='enable automatic-mixed-precision training (needs a GPU)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or, with no path, from the latest '
                        'checkpoint in the work directory')
    parser.add_argument('--act', metavar='NAME',
                        help='replace every activation of the model (act_cfg) by this one: '
                        'relu, swish, leaky_relu, elu, softplus, gelu, prelu, relu6, sau')
    parser.add_argument('--seed', type=int, help='random seed (overrides randomness.seed)')
    config.add_common_arguments(parser)
    return config.parse_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = config.load_config(args.config)
    config.check_config_kind(cfg, args.config)
    config.check_cfg_options(cfg, args.cfg_options)
    dist.check_launcher(args.launcher)
    dist.check_amp(args.amp)
    if config.is_fairseq(cfg):
        config.apply_options(cfg, {**dist.fairseq_launcher_options(args.launcher), **(args.cfg_options or {})},
                             args.act)
        from translation import runner
        with config.fairseq_option_errors():
            return runner.train(cfg, config.work_dir(cfg, args.work_dir, args.config), seed=args.seed,
                                amp=args.amp, resume=args.resume, trust=args.trust_checkpoint)

    config.apply_options(cfg, args.cfg_options, args.act)
    config.apply_runner_options(cfg, args)
    config.check_act_cfgs(cfg)
    from tools.zoo.hooks import add_reliability_hooks
    add_reliability_hooks(cfg)  # stop on NaN/inf loss, atomic checkpoints, random states kept for --resume
    from tools.zoo.hooks import add_signal_checkpoint_hook
    add_signal_checkpoint_hook(cfg)  # on Slurm's USR2 (time limit, preemption): save, exit 3, be requeued
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    trust = args.trust_checkpoint
    if trust:
        check_trusted_loads(cfg, args.resume)
    if args.resume is None and cfg.get('load_from') and '://' not in cfg.load_from:  # fine-tuning
        read_checkpoint(cfg.load_from, 'load_from: checkpoint', trust=trust)
    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
        from mmengine.runner import find_latest_checkpoint
        latest = find_latest_checkpoint(cfg.work_dir)  # None: nothing to resume, MMEngine starts afresh
        if latest:
            read_checkpoint(latest, f'checkpoint named in {cfg.work_dir}/last_checkpoint', trust=trust)
    elif args.resume is not None:
        read_checkpoint(args.resume, '--resume: checkpoint', trust=trust)
        cfg.resume = True
        cfg.load_from = args.resume
    loaders = ['train_dataloader', 'val_dataloader']
    data_checks.check_datasets(cfg, loaders)
    dist.setup_cpu_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with config.framework_errors(), data_checks.dataset_errors(cfg, loaders), checkpoint_loading(trust):
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        name_sau_layers(getattr(runner.model, 'module', runner.model))  # SAU's warnings name their layer
        runner.train()
    if runner.rank == 0:
        print(train_summary(runner, cfg), flush=True)
    dist.close_process_group()
    return 0


def _is_checkpoint_source(key, value):
    """A string the config loads a checkpoint from: ``load_from`` and the ``checkpoint``/``pretrained``
    entries (``init_cfg=dict(type='Pretrained', checkpoint=...)``)."""
    return key in ('load_from', 'checkpoint', 'pretrained') and isinstance(value, str)


def check_trusted_loads(cfg, resume):
    """``--trust-checkpoint`` is for local checkpoints (``--resume``, a local ``load_from``); MMEngine's loads
    cannot be told apart, so it is refused when the config also loads a checkpoint by URL."""
    check_trust(True, resume)
    sources = cfg.to_dict()
    if resume is not None:
        sources.pop('load_from', None)  # replaced by the --resume checkpoint
    for key, _, _, source in config.config_entries(sources, _is_checkpoint_source):
        if '://' in source:
            raise InputError(f'{TRUST_FLAG} would also reach {source} ({key} in the config), a URL: it is for a '
                             'local file you vouch for, never for a download; download and check that file, '
                             'then pass its local path')


def train_summary(runner, cfg):
    """One line after training: the last validation metric (the checkpoint hook's ``save_best`` metric, else
    every plain metric) and where the checkpoints are."""
    scalars = {key[len('val/'):]: buffer.current() for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith('val/')}
    best = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('save_best')
    keys = [best] if isinstance(best, str) and best in scalars else [
        key for key in scalars if '.' not in key and key not in ('time', 'data_time')]
    shown = ', '.join(f'{key} {scalars[key]:.4g}' for key in keys) or 'no validation ran'
    return f'train done: last validation {shown}; checkpoints in {cfg.work_dir}'


if __name__ == '__main__':
    sys.exit(run_main(main))
