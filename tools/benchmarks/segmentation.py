"""Training-step time and memory of the segmentation U-Net with SAU vs ReLU, side by side.

    python tools/benchmarks/segmentation.py                       # full-width U-Net, batch 2 of 128x256
    python tools/benchmarks/segmentation.py --acts sau,relu,gelu --size 64 128 --batch 4 --threads 1
    python tools/benchmarks/segmentation.py --acts relu,sau,sau:inplace=False   # SAU without MMCV's in-place

MMCV's ConvModule asks its activation to run in place: ReLU and SAU then overwrite the BN output and keep only
their output for backward; an activation that keeps its input (GELU, SAU with inplace=False) keeps one more
activation-sized tensor per layer.
The activations are stepped interleaved in one subprocess per round (``common``), on the same seeded input and
labels, the same config with only ``act_cfg`` changed (``sau_core.act_cfg``). A step is forward + loss +
backward + Adam update of the model as the config builds it (data loading excluded). Time: the median over the
timed steps, the minimum over ``--rounds`` (step ms); the ratio is the median of the paired step ratios. Memory:
``common.MemoryMeter``'s step memory (the peak of tensor bytes one step adds: activations kept for backward,
gradients, optimizer temporaries), and ``saved MiB``: the unique storages autograd saves for backward in one
forward.
"""
import argparse
import json
import os
import os.path as osp
import sys

from tools.benchmarks.common import (add_arguments, best_of, measure, parse_acts, print_spread, print_table,
                                     ratio_columns, run_workers)
from tools.zoo import REPO_ROOT
from tools.zoo.errors import run_main

DEFAULT_CONFIG = osp.join(REPO_ROOT, 'segmentation', 'configs', 'unet_sau_cityscapes.py')


#: the ratio columns: (result key, label)
COLUMNS = [('step_s', 'time'), ('step_mib', 'step memory'), ('saved_mib', 'saved')]

def parse_act(spec):
    """``NAME`` or ``NAME:key=value:...`` (e.g. ``sau:inplace=False``) -> an ``act_cfg`` dict."""
    import ast

    import sau_core
    name, *options = spec.split(':')
    act = sau_core.act_cfg(name)
    for item in filter(None, options):
        key, _, value = item.partition('=')
        act[key] = ast.literal_eval(value)
    return act


def worker(args):
    """The activations of ``--worker`` in this process, stepped interleaved; prints one JSON line each."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.structures import PixelData
    from mmengine.utils import import_modules_from_strings

    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    import_modules_from_strings(cfg.custom_imports['imports'])
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    h, w = args.size
    x = torch.randn(args.batch, 3, h, w, generator=gen).to(device)
    num_classes = cfg.model.decode_head.num_classes
    samples = []
    for _ in range(args.batch):
        seg = torch.randint(0, num_classes, (1, h, w), generator=gen)
        seg[:, :h // 8] = 255
        s = SegDataSample(gt_sem_seg=PixelData(data=seg.to(device)))
        s.set_metainfo(dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w)))
        samples.append(s)

    def build(spec):
        act = parse_act(spec)
        model_cfg = cfg.model.copy()
        for part in ('backbone', 'decode_head', 'auxiliary_head'):
            model_cfg[part] = dict(model_cfg[part], act_cfg=act)
        torch.manual_seed(0)
        model = MODELS.build(model_cfg)
        model.init_weights()
        model.to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.optim_wrapper.optimizer.lr)

        def step():
            losses = model(x, samples, mode='loss')
            loss = sum(v for k, v in losses.items() if k.endswith('loss_ce'))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def info():
            # Allocator-independent: the bytes autograd keeps for backward in one forward (unique storages).
            saved = {}

            def pack(t):
                storage = t.untyped_storage()
                saved[(storage.device.type, storage.data_ptr())] = storage.nbytes()
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                losses = model(x, samples, mode='loss')
            del losses
            return dict(saved_mib=sum(saved.values()) / 2**20,
                        activations=sum(type(m).__name__ == act['type'] for m in model.modules()))
        return step, info

    measure(build, args.worker.split(','), args.warmup, args.steps, device)


def run(args):
    results = run_workers(__file__, parse_acts(args.acts), args.rounds,
                          ['--config', args.config, '--batch', str(args.batch), '--size', *map(str, args.size),
                           '--steps', str(args.steps), '--warmup', str(args.warmup), '--threads', str(args.threads),
                           '--device', args.device])
    best = best_of(results, ('step_s', 'step_mib', 'saved_mib', 'activations'))
    ratios, cells = ratio_columns(results, args.baseline, COLUMNS)
    print(f'config {osp.relpath(args.config, REPO_ROOT)}; batch {args.batch} x 3 x {args.size[0]} x {args.size[1]}; '
          f'device {args.device}; {args.threads} thread(s); {args.steps} timed steps after {args.warmup}, '
          f'interleaved, best of {args.rounds} runs')
    print_table(['activation', 'layers', 'step ms', 'step memory (MiB)', 'saved MiB'] + ratios,
                [[act, str(b['activations']), f'{1000 * b["step_s"]:.1f}', f'{b["step_mib"]:.1f}',
                  f'{b["saved_mib"]:.1f}'] + cells[act] for act, b in best.items()])
    print_spread(results, args.baseline, COLUMNS)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(settings=vars(args), runs=results, best=best), f, indent=2)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=(128, 256), metavar=('H', 'W'))
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', 1)))
    parser.add_argument('--json', help='also write the raw runs here')
    add_arguments(parser, rounds=2)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
    else:
        run(args)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
