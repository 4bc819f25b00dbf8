"""Training-step time and peak memory of SSD300-VGG16-BN with SAU vs ReLU (or any --acts), same input.

Each activation runs in its own subprocess, alternating over --rounds (``benchmark_common``); a step is
forward + multibox loss + backward + SGD step on one fixed synthetic batch. Memory: the peak (CUDA
``max_memory_allocated``; CPU peak RSS) over the training steps, as a total and as the growth over what the
process held before its first step (model and input): that growth is the activations, gradients and
optimizer state of a step.

Usage: python tools/benchmark_detection.py [--config detection/configs/ssd300_sau.py]
           [--acts relu,sau] [--batch 2] [--steps 3] [--warmup 1] [--rounds 1] [--device cpu]
"""
import argparse
import json
import os.path as osp
import statistics
import sys

import zoo_cli  # noqa: I100  (first: it quiets mmengine's import-time warnings)
from benchmark_common import MemoryMeter, best_of, print_table, run_workers, time_steps

DEFAULT_CONFIG = osp.join(zoo_cli.REPO_ROOT, 'detection', 'configs', 'ssd300_sau.py')


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
    """One activation in this process; prints one JSON line."""
    import torch
    from mmengine.registry import init_default_scope
    torch.manual_seed(0)
    cfg = zoo_cli.load_config(args.config)
    zoo_cli.apply_act(cfg, args.worker)
    init_default_scope('mmdet')
    from mmengine.utils import import_modules_from_strings
    import_modules_from_strings(**cfg.custom_imports)
    from mmdet.registry import MODELS
    device = torch.device(args.device)
    model = MODELS.build(cfg.model).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    inputs, samples = synthetic_batch(args.batch, device)

    def step():
        losses = model.loss(inputs, samples)
        loss = sum(v if torch.is_tensor(v) else sum(v) for v in losses.values())
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()

    memory = MemoryMeter(device)
    memory.start()
    times = time_steps(step, args.warmup, args.steps, device)
    print(json.dumps(dict(act=args.worker, step_s=statistics.median(times), times=times,
                          step_mib=memory.growth() / 2**20, total_mib=memory.total() / 2**20)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--acts', default='relu,sau', help='comma-separated; the first is the baseline')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=1, help='alternate the activations this often')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # internal: run one activation, print JSON
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    acts = args.acts.split(',')
    results = run_workers(osp.abspath(__file__), acts, args.rounds,
                          ['--config', args.config, '--batch', str(args.batch), '--steps', str(args.steps),
                           '--warmup', str(args.warmup), '--device', args.device])
    best = best_of(results, ('step_s', 'step_mib', 'total_mib'))
    base = best[acts[0]]
    print(f'SSD300 training step, batch {args.batch}, {args.device}, {args.steps} timed steps '
          f'(median) after {args.warmup} warm-up, best of {args.rounds} round(s); config '
          f'{osp.relpath(args.config, zoo_cli.REPO_ROOT)}')
    print_table(['activation', 'step time (s)', 'step memory (MiB)', 'peak memory (MiB)', f'time / {acts[0]}',
                 f'step memory / {acts[0]}', f'peak memory / {acts[0]}'],
                [[act, f'{b["step_s"]:.3f}', f'{b["step_mib"]:.0f}', f'{b["total_mib"]:.0f}',
                  f'{b["step_s"] / base["step_s"]:.3f}', f'{b["step_mib"] / base["step_mib"]:.3f}',
                  f'{b["total_mib"] / base["total_mib"]:.3f}'] for act, b in best.items()])
    for act in acts:
        print(f'{act}: step times per round (s): '
              + '; '.join(', '.join(f'{t:.2f}' for t in r['times']) for r in results[act]))
    return 0


if __name__ == '__main__':
    sys.exit(zoo_cli.run_main(main))
