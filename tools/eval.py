"""Evaluate a checkpoint: ``runner.test()`` with the config's test_evaluator (or fairseq's generation).

Prints the metric table and writes it as JSON (default ``<checkpoint>.metrics.json``). The checkpoint (a path or
a URL, downloaded and hash-checked) loads with ``weights_only=True``: ``tools.zoo.io.read_checkpoint`` refuses one
that needs a full unpickle before the framework reads it, and the framework's own load runs under
``tools.zoo.io.checkpoint_loading``; ``--trust-checkpoint`` unpickles a local file fully (never a URL).
"""
import argparse
import json
import os.path as osp
import sys

from tools.zoo import config  # noqa: I100  (first: it quiets mmengine's import-time warnings)
from tools.zoo import data_checks
from tools.zoo.errors import InputError, run_main
from tools.zoo.io import atomic_write, check_checkpoint_matches, checkpoint_loading, fetch_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint of the SAU zoo')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or a URL (downloaded once, hash-checked)')
    parser.add_argument('--work-dir', help='the dir to save the evaluation logs')
    parser.add_argument('--out', help='metrics JSON file (default: <checkpoint>.metrics.json)')
    parser.add_argument('--act', metavar='NAME',
                        help='the activation the checkpoint was trained with via train.py --act')
    config.add_common_arguments(parser)
    return config.parse_args(parser, argv)


def format_table(metrics):
    width = max([len(k) for k in metrics] + [6])
    lines = [f'{"metric":<{width}}  value', f'{"-" * width}  ------']
    for key, value in metrics.items():
        shown = f'{value:.4f}' if isinstance(value, float) else str(value)
        lines.append(f'{key:<{width}}  {shown}')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = config.load_config(args.config)
    config.check_config_kind(cfg, args.config)
    config.check_cfg_options(cfg, args.cfg_options)
    checkpoint = fetch_checkpoint(args.checkpoint, trust=args.trust_checkpoint)  # a URL is never trusted
    if not osp.isfile(checkpoint):
        raise InputError(f'checkpoint not found: {checkpoint}')
    config.apply_options(cfg, args.cfg_options, args.act)
    if config.is_fairseq(cfg):
        from translation import runner
        with config.fairseq_option_errors():
            metrics = runner.evaluate(cfg, checkpoint, work_dir=args.work_dir, trust=args.trust_checkpoint)
    else:
        metrics = test_mm(cfg, args, checkpoint)
    metrics = {k: (float(v) if hasattr(v, '__float__') and not isinstance(v, int) else v)
               for k, v in metrics.items()}
    out = args.out or checkpoint + '.metrics.json'
    atomic_write(out, json.dumps(metrics, indent=2))  # whole or absent: tools/sweep.py counts it as done
    print(format_table(metrics))
    print(f'metrics written to {out}')
    return 0


def test_mm(cfg, args, checkpoint):
    config.apply_runner_options(cfg, args)
    config.check_act_cfgs(cfg)
    data_checks.check_datasets(cfg, ['test_dataloader'])
    cfg.load_from = None  # loaded below, strictly: a mismatching checkpoint must not evaluate
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    with config.framework_errors(), data_checks.dataset_errors(cfg, ['test_dataloader']):
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        runner.test_loop  # the property builds the test loop: the dataset (and its checks) before the checkpoint
        model = getattr(runner.model, 'module', runner.model)
        check_checkpoint_matches(model, checkpoint, trust=args.trust_checkpoint)  # refused before MMEngine reads it
        with checkpoint_loading(args.trust_checkpoint):
            runner.load_checkpoint(checkpoint, map_location='cpu', strict=True)
        return runner.test()


if __name__ == '__main__':
    sys.exit(run_main(main))
