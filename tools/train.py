"""Train an MMEngine config (detection, segmentation) or a fairseq config (translation).

MMDetection's tools/train.py skeleton: load the config, apply the flags, ``Runner.from_cfg``,
``runner.train()``. ``--act NAME`` swaps every activation of the model (the paper's baselines).
"""
import argparse
import sys

import zoo_cli  # noqa: I100  (first: it quiets mmengine's import-time warnings)
import zoo_dist  # noqa: I100


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
    zoo_cli.add_common_arguments(parser)
    return zoo_cli.parse_args(parser, argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = zoo_cli.load_config(args.config)
    zoo_cli.check_config_kind(cfg, args.config)
    zoo_cli.check_cfg_options(cfg, args.cfg_options)
    zoo_dist.check_launcher(args.launcher)
    zoo_dist.check_amp(args.amp)
    if zoo_cli.is_fairseq(cfg):
        args.cfg_options = {**zoo_dist.fairseq_launcher_options(args.launcher), **(args.cfg_options or {})}
        with zoo_cli.fairseq_option_errors():
            return zoo_cli.translation_runner().train(args)

    zoo_cli.apply_common_options(cfg, args, args.config)
    zoo_cli.check_act_cfgs(cfg)
    from sau_core.mm_hooks import add_reliability_hooks
    add_reliability_hooks(cfg)  # stop on NaN/inf loss, atomic checkpoints, random states kept for --resume
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    # resume is determined in this priority: resume from > auto_resume
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
        from mmengine.runner import find_latest_checkpoint
        latest = find_latest_checkpoint(cfg.work_dir)  # None: nothing to resume, MMEngine starts afresh
        if latest:
            zoo_cli.read_checkpoint(latest, f'checkpoint named in {cfg.work_dir}/last_checkpoint')
    elif args.resume is not None:
        zoo_cli.read_checkpoint(args.resume, '--resume: checkpoint')
        cfg.resume = True
        cfg.load_from = args.resume
    zoo_cli.check_datasets(cfg, ['train_dataloader', 'val_dataloader'])
    zoo_dist.setup_cpu_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with zoo_cli.framework_errors():
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        runner.train()
    if runner.rank == 0:
        print(zoo_cli.train_summary(runner, cfg), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(zoo_cli.run_main(main))
