"""Evaluate a checkpoint: ``runner.test()`` with the config's test_evaluator (or fairseq's generation).

Prints the metric table and writes it as JSON (default ``<checkpoint>.metrics.json``).
"""
import argparse
import json
import os.path as osp
import sys

import zoo_cli  # noqa: I100  (first: it quiets mmengine's import-time warnings)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint of the SAU zoo')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or a URL (downloaded once, hash-checked)')
    parser.add_argument('--work-dir', help='the dir to save the evaluation logs')
    parser.add_argument('--out', help='metrics JSON file (default: <checkpoint>.metrics.json)')
    parser.add_argument('--act', metavar='NAME',
                        help='the activation the checkpoint was trained with via train.py --act')
    zoo_cli.add_common_arguments(parser)
    return zoo_cli.parse_args(parser, argv)


def format_table(metrics):
    width = max([len(k) for k in metrics] + [6])
    lines = [f'{"metric":<{width}}  value', f'{"-" * width}  ------']
    for key, value in metrics.items():
        shown = f'{value:.4f}' if isinstance(value, float) else str(value)
        lines.append(f'{key:<{width}}  {shown}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = zoo_cli.load_config(args.config)
    zoo_cli.check_config_kind(cfg, args.config)
    zoo_cli.check_cfg_options(cfg, args.cfg_options)
    args.checkpoint = zoo_cli.fetch_checkpoint(args.checkpoint)
    if not osp.isfile(args.checkpoint):
        raise zoo_cli.CLIError(f'checkpoint not found: {args.checkpoint}')
    if zoo_cli.is_fairseq(cfg):
        with zoo_cli.fairseq_option_errors():
            metrics = zoo_cli.translation_runner().evaluate(args)
    else:
        metrics = test_mm(cfg, args)
    metrics = {k: (float(v) if hasattr(v, '__float__') and not isinstance(v, int) else v)
               for k, v in metrics.items()}
    out = args.out or args.checkpoint + '.metrics.json'
    with open(out, 'w') as f:
        json.dump(metrics, f, indent=2)
    print(format_table(metrics))
    print(f'metrics written to {out}')
    return 0


def test_mm(cfg, args):
    zoo_cli.apply_common_options(cfg, args, args.config)
    zoo_cli.check_act_cfgs(cfg)
    zoo_cli.check_datasets(cfg, ['test_dataloader'])
    cfg.load_from = None  # loaded below, strictly: a mismatching checkpoint must not evaluate
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with zoo_cli.framework_errors():
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        zoo_cli.check_checkpoint_matches(getattr(runner.model, "module", runner.model), args.checkpoint)
        runner.load_checkpoint(args.checkpoint, map_location='cpu', strict=True)
        return runner.test()


if __name__ == '__main__':
    sys.exit(zoo_cli.run_main(main))
