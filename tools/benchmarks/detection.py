"""Training-step time and memory of SSD300-VGG16-BN with SAU vs ReLU (or any --acts), same input.

The activations are stepped interleaved in one subprocess per round (``common``); a step is forward +
multibox loss + backward + SGD step on one fixed synthetic batch. Memory: ``common.MemoryMeter``'s step
memory (the peak of tensor bytes one step adds: activations kept for backward, optimizer temporaries; the
gradients stay allocated between steps here, ``zero_grad(set_to_none=False)``).

Usage: python tools/benchmarks/detection.py [--config detection/configs/ssd300_sau.py] [--acts relu,sau]
           [--baseline relu] [--batch 2] [--steps 3] [--warmup 1] [--rounds 1] [--device cpu]
"""
import argparse
import os.path as osp
import sys

from tools.benchmarks.common import (add_arguments, best_of, measure, parse_acts, print_spread, print_table,
                                     ratio_columns, run_workers)
from tools.zoo import REPO_ROOT
from tools.zoo.errors import run_main

DEFAULT_CONFIG = osp.join(REPO_ROOT, 'detection', 'configs', 'ssd300_sau.py')


#: the ratio columns: (result key, label)
COLUMNS = [('step_s', 'time'), ('step_mib', 'step memory')]

def synthetic_batch(batch, device, seed=0):
    """A fixed normalised 300x300 batch with two ground-truth boxes per image."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, 3, 300, 300, generator=gen).to(device)
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(img_shape=(300, 300), pad_shape=(300, 300),
                                             batch_input_shape=(300, 300), scale_factor=(1., 1.)))
        xy = torch.rand(2, 2, generator=gen) * 150
        wh = 40 + torch.rand(2, 2, generator=gen) * 100
        sample.gt_instances = InstanceData(bboxes=torch.cat([xy, xy + wh], 1).to(device),
                                           labels=torch.randint(0, 20, (2,), generator=gen).to(device))
        samples.append(sample)
    return inputs, samples


def worker(args):
    """The activations of ``--worker`` in this process, stepped interleaved; prints one JSON line each."""
    from tools.zoo import config  # (first: it quiets mmengine's import-time warnings)
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    init_default_scope('mmdet')
    device = torch.device(args.device)
    inputs, samples = synthetic_batch(args.batch, device)

    def build(act):
        cfg = config.load_config(args.config)
        config.apply_act(cfg, act)
        import_modules_from_strings(**cfg.custom_imports)
        from mmdet.registry import MODELS
        torch.manual_seed(0)  # after the imports, so that every activation's model starts from the same weights
        model = MODELS.build(cfg.model)
        model.init_weights()  # the config's init, as training applies it (PyTorch's default init diverges here)
        model.to(device).train()
        # the config's SGD at its warm-up's first learning rate, as a training run's first steps: from scratch,
        # at the full 1e-3, SSD diverges in one step (SAU's alphas reached 1e30, leaving the in-place range)
        sgd = cfg.optim_wrapper.optimizer
        warmup = next(s for s in cfg.param_scheduler if s['type'] == 'LinearLR')
        optimizer = torch.optim.SGD(model.parameters(), lr=sgd.lr * warmup['start_factor'], momentum=sgd.momentum,
                                    weight_decay=sgd.weight_decay)

        def step():
            losses = model.loss(inputs, samples)
            loss = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            optimizer.step()
        return step, dict

    measure(build, args.worker.split(','), args.warmup, args.steps, device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    acts = parse_acts(args.acts)
    results = run_workers(__file__, acts, args.rounds,
                          ['--config', args.config, '--batch', str(args.batch), '--steps', str(args.steps),
                           '--warmup', str(args.warmup), '--device', args.device])
    best = best_of(results, ('step_s', 'step_mib'))
    ratios, cells = ratio_columns(results, args.baseline, COLUMNS)
    print(f'SSD300 training step, batch {args.batch}, {args.device}, {args.steps} timed steps '
          f'(median) after {args.warmup} warm-up, interleaved, best of {args.rounds} round(s); config '
          f'{osp.relpath(args.config, REPO_ROOT)}')
    print_table(['activation', 'step ms', 'step memory (MiB)'] + ratios,
                [[act, f'{1000 * b["step_s"]:.1f}', f'{b["step_mib"]:.0f}'] + cells[act] for act, b in best.items()])
    print_spread(results, args.baseline, COLUMNS)
    for act in acts:
        print(f'{act}: step times per round (s): '
              + '; '.join(', '.join(f'{t:.2f}' for t in r['times']) for r in results[act]))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
