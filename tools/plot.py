#!/usr/bin/env python
"""Plots of the zoo (matplotlib, PNG files).

    python tools/plot.py activations act.png                  # SAU for a few alpha and n beside ReLU, LeakyReLU, GELU
    python tools/plot.py alphas CHECKPOINT alphas.png         # the learned SAU alpha of every layer
    python tools/plot.py curves work_dirs/sweep/segmentation curves.png   # training loss per activation
    python tools/plot.py bands ANALYSIS.json [ANALYSIS.json ...] bands.png  # SAU inputs near 0, per layer

``alphas`` reads every state_dict entry whose key ends in ``.alpha`` (an SAU module's slope; one value per
layer, or the mean with a min-max bar for per-channel alphas) from an MMEngine (``state_dict``) or fairseq
(``model``) checkpoint. ``curves`` reads a ``tools/sweep.py`` folder (``<act>/seed<S>/``): MMEngine's
``<timestamp>/vis_data/scalars.json`` (the ``loss`` of every logged iteration, and the validation metrics where
validation ran), or fairseq's ``fairseq_train.log`` (``train_inner`` loss by update, ``valid`` loss by update);
one colour per activation, one line per seed, and a second panel with the validation curves when there are any.
``bands`` reads ``tools/analyze_activations.py``'s ``analysis.json`` files (or their folders): per SAU layer, the
fraction of its inputs with |n*x| < 1, 3, 8 (log scale; a zero fraction is not drawn) and its alpha, one line
style per file (a checkpoint beside the initialisation, say).
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from tools.zoo.errors import InputError, run_main  # noqa: E402
from tools.zoo.io import TRUST_FLAG, read_checkpoint  # noqa: E402

SAU_ALPHAS = (0.0, 0.15, 0.5)
SAU_NS = (1.0, 4.0, 20000.0)


def _save(fig, out):
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches='tight')
    plt.close(fig)
    return out


# ---------------------------------------------------------------- activation functions

def plot_activations(out, alphas=SAU_ALPHAS, ns=SAU_NS, lo=-3.0, hi=3.0):
    """Left: SAU (alpha 0.15; every n) beside ReLU, LeakyReLU (0.01), GELU. Right: SAU for every alpha x n."""
    import torch
    import torch.nn.functional as F
    from sau_core import sau_reference

    x = torch.linspace(lo, hi, 601, dtype=torch.float64)

    def sau(a, n):
        return sau_reference(x, torch.tensor(a, dtype=x.dtype), torch.tensor(n, dtype=x.dtype)).numpy()

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(x, F.relu(x), 'k-', lw=1.5, label='ReLU')
    left.plot(x, F.leaky_relu(x, 0.01), 'k:', lw=1.5, label='LeakyReLU (0.01)')
    left.plot(x, F.gelu(x), 'k--', lw=1.5, label='GELU')
    for n in ns:
        left.plot(x, sau(0.15, n), lw=1.2, label=f'SAU a=0.15, n={n:g}')
    left.set_title('SAU beside the baselines')
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    styles = ['-', '--', ':', '-.']
    for i, a in enumerate(alphas):
        for j, n in enumerate(ns):
            right.plot(x, sau(a, n), color=colours[i % len(colours)], ls=styles[j % len(styles)], lw=1.2,
                       label=f'a={a:g}, n={n:g}')
    right.set_title('SAU(x; a, n)')
    for ax in (left, right):
        ax.axhline(0, color='0.8', lw=0.8)
        ax.axvline(0, color='0.8', lw=0.8)
        ax.set_xlabel('x')
        ax.legend(fontsize=7)
    right.set_ylim(lo / 2, hi)
    left.set_ylim(lo / 2, hi)
    return _save(fig, out)


# ---------------------------------------------------------------- learned alphas

def checkpoint_alphas(path, trust=False):
    """``[(key, tensor)]`` of every state_dict entry ending in ``.alpha``, in the checkpoint's order."""
    ckpt = read_checkpoint(path, trust=trust)
    state = ckpt
    if isinstance(ckpt, dict):
        state = ckpt.get('state_dict', ckpt.get('model', ckpt))
    if not isinstance(state, dict):
        raise InputError(f'{path} holds no state_dict')
    alphas = [(k, v.detach().float().reshape(-1)) for k, v in state.items()
              if k.endswith('.alpha') and hasattr(v, 'detach')]
    if not alphas:
        raise InputError(f'{path} has no SAU alphas (no state_dict key ends in ".alpha"): '
                        'was it trained with another activation?')
    return alphas


def plot_alphas(checkpoint, out, init=0.15, trust=False):
    alphas = checkpoint_alphas(checkpoint, trust)
    means = [float(v.mean()) for _, v in alphas]
    low = [m - float(v.min()) for m, (_, v) in zip(means, alphas)]
    high = [float(v.max()) - m for m, (_, v) in zip(means, alphas)]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(alphas) + 2), 4.5))
    index = range(len(alphas))
    ax.bar(index, means, yerr=[low, high] if any(v.numel() > 1 for _, v in alphas) else None, color='C0')
    ax.axhline(init, color='k', ls='--', lw=1, label=f'initial alpha {init:g}')
    ax.set_xticks(list(index))
    ax.set_xticklabels([k[:-len('.alpha')] for k, _ in alphas], rotation=90, fontsize=6)
    ax.set_ylabel('learned alpha')
    ax.set_title(f'SAU alpha per layer: {osp.basename(checkpoint)} ({len(alphas)} layers)')
    ax.legend()
    _save(fig, out)
    return dict(out=out, keys=[k for k, _ in alphas], means=means)


# ---------------------------------------------------------------- training curves

_FAIRSEQ_TRAIN = re.compile(r'\| train_inner \|.*?\bloss=([-\d.eE+]+).*?\bnum_updates=(\d+)')
_FAIRSEQ_VALID = re.compile(r"\| valid \|.*?\| loss ([-\d.eE+]+) \|.*?\| num_updates (\d+)")


def read_mmengine_scalars(run_dir):
    """``(train, val)``: ``{step: loss}`` and ``{metric: {epoch_or_iter: value}}`` from every scalars.json."""
    train, val = {}, {}
    for path in sorted(glob.glob(osp.join(run_dir, '*', 'vis_data', 'scalars.json'))):  # timestamps, in order
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                entry = json.loads(line)
                if 'loss' in entry:
                    train[int(entry['step'])] = float(entry['loss'])
                else:  # a validation entry: metrics plus data_time/time
                    for key, value in entry.items():
                        if key not in ('step', 'data_time', 'time') and isinstance(value, (int, float)):
                            val.setdefault(key, {})[int(entry['step'])] = float(value)
    return train, val


def read_fairseq_log(path):
    """``(train, val)``: ``{num_updates: loss}`` of the train_inner lines and ``{'valid loss': {...}}``."""
    train, valid = {}, {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            m = _FAIRSEQ_TRAIN.search(line)
            if m:
                train[int(m.group(2))] = float(m.group(1))
                continue
            m = _FAIRSEQ_VALID.search(line)
            if m:
                valid[int(m.group(2))] = float(m.group(1))
    return train, ({'valid loss': valid} if valid else {})


def read_run(run_dir):
    log = osp.join(run_dir, 'fairseq_train.log')
    if osp.isfile(log):
        return read_fairseq_log(log)
    return read_mmengine_scalars(run_dir)


def sweep_curves(sweep_dir):
    """``{act: {seed_name: (train, val)}}`` for every ``<act>/seed*/`` folder that has a training log."""
    if not osp.isdir(sweep_dir):
        raise InputError(f'sweep folder not found: {sweep_dir}')
    curves = {}
    for act in sorted(os.listdir(sweep_dir)):
        for run_dir in sorted(glob.glob(osp.join(sweep_dir, act, 'seed*'))):
            train, val = read_run(run_dir)
            if train:
                curves.setdefault(act, {})[osp.basename(run_dir)] = (train, val)
    if not curves:
        raise InputError(f'no training logs under {sweep_dir}/<act>/seed*/ (MMEngine vis_data/scalars.json or '
                        'fairseq_train.log)')
    return curves


def plot_curves(sweep_dir, out):
    curves = sweep_curves(sweep_dir)
    has_val = any(val for runs in curves.values() for _, val in runs.values())
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(11 if has_val else 6, 4.2), squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for i, (act, runs) in enumerate(curves.items()):
        colour = colours[i % len(colours)]
        for j, (seed, (train, val)) in enumerate(runs.items()):
            steps = sorted(train)
            axes[0][0].plot(steps, [train[s] for s in steps], color=colour, lw=1, alpha=0.8,
                            label=act if j == 0 else None)
            if has_val and val:
                metric = sorted(val)[0] if 'mIoU' not in val else 'mIoU'
                points = sorted(val[metric])
                axes[0][1].plot(points, [val[metric][p] for p in points], 'o-', color=colour, lw=1,
                                label=f'{act} ({metric})' if j == 0 else None)
    axes[0][0].set_title('training loss (one line per seed)')
    axes[0][0].set_xlabel('iteration / update')
    axes[0][0].set_ylabel('loss')
    axes[0][0].legend()
    if has_val:
        axes[0][1].set_title('validation')
        axes[0][1].set_xlabel('epoch / update')
        axes[0][1].legend()
    _save(fig, out)
    return dict(out=out, runs={act: list(runs) for act, runs in curves.items()})


# ---------------------------------------------------------------- SAU's bands (tools/analyze_activations.py)

def read_analysis(path):
    """An ``analysis.json`` of tools/analyze_activations.py (or the folder holding one)."""
    if osp.isdir(path):
        path = osp.join(path, 'analysis.json')
    if not osp.isfile(path):
        raise InputError(f'analysis not found: {path} (write one with tools/analyze_activations.py)')
    try:
        with open(path) as f:
            result = json.load(f)
        result['layers'], result['bands']  # noqa: B018  (the keys this plot reads)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f'{path} is not an analysis.json of tools/analyze_activations.py: {e}') from None
    return result


def plot_bands(analyses, out):
    """Per SAU layer: the fraction of its inputs with |n*x| < 1, 3, 8 (log scale; one colour per band, one line
    style per analysis) and its alpha; ``analyses`` are analysis.json paths (a checkpoint and the init, say)."""
    if isinstance(analyses, str):
        analyses = [analyses]
    results = [read_analysis(path) for path in analyses]
    layers = [row['layer'] for row in results[0]['layers']]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(7.0, 0.3 * len(layers) + 3), 7.5), sharex=True,
                                      gridspec_kw=dict(height_ratios=[2, 1]))
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    styles = ['-', '--', ':', '-.']
    floor = None
    for j, result in enumerate(results):
        rows = {row['layer']: row for row in result['layers']}
        index = [i for i, name in enumerate(layers) if name in rows]
        label = result.get('weights', analyses[j])
        for b, k in enumerate(result['bands']):
            values = [rows[layers[i]].get(f'below_{k}') or 0.0 for i in index]
            positive = [v for v in values if v > 0]
            if positive:
                floor = min(positive + ([floor] if floor else []))
            top.plot(index, [v if v > 0 else float('nan') for v in values], marker='o', ms=3,
                     color=colours[b % len(colours)], ls=styles[j % len(styles)], lw=1.2,
                     label=f'|n x| < {k}: {label}')
        alphas = [rows[layers[i]]['alpha'] for i in index]
        low = [a - rows[layers[i]]['alpha_min'] for a, i in zip(alphas, index)]
        high = [rows[layers[i]]['alpha_max'] - a for a, i in zip(alphas, index)]
        per_channel = any(rows[layers[i]]['alphas'] > 1 for i in index)
        bottom.errorbar(index, alphas, yerr=[low, high] if per_channel else None, marker='s', ms=3, capsize=2,
                        ls=styles[j % len(styles)], color='k', lw=1, label=label)
    top.set_yscale('log')
    if floor:
        top.set_ylim(bottom=floor / 3)
    top.set_ylabel('fraction of the layer\'s inputs')
    n_values = sorted({row['n'] for result in results for row in result['layers']})
    top.set_title(f'SAU inputs within a few 1/n of 0 (n = {", ".join(f"{n:g}" for n in n_values[:4])}'
                  f'{"..." if len(n_values) > 4 else ""}): where SAU differs from Leaky ReLU')
    top.legend(fontsize=7)
    bottom.axhline(0.15, color='0.6', ls='--', lw=1)
    bottom.set_ylabel('alpha')
    bottom.legend(fontsize=7)
    bottom.set_xticks(list(range(len(layers))))
    bottom.set_xticklabels(layers, rotation=90, fontsize=6)
    _save(fig, out)
    return dict(out=out, layers=layers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='what', required=True)
    p = sub.add_parser('activations', help='SAU for a few alpha and n beside ReLU, LeakyReLU, GELU')
    p.add_argument('out', help='PNG file')
    p.add_argument('--alphas', default=','.join(map(str, SAU_ALPHAS)), help='SAU alphas (comma-separated)')
    p.add_argument('--ns', default=','.join(f'{n:g}' for n in SAU_NS), help='SAU n values (comma-separated)')
    p = sub.add_parser('alphas', help='the learned SAU alpha per layer of a checkpoint')
    p.add_argument('checkpoint')
    p.add_argument('out', help='PNG file')
    p.add_argument(TRUST_FLAG, action='store_true',
                   help='fully unpickle a local checkpoint you vouch for (default: weights_only=True)')
    p = sub.add_parser('curves', help='training loss (and validation) per activation of a tools/sweep.py folder')
    p.add_argument('sweep_dir')
    p.add_argument('out', help='PNG file')
    p = sub.add_parser('bands', help='per SAU layer: inputs with |n*x| < 1, 3, 8 and alpha '
                       '(tools/analyze_activations.py output)')
    p.add_argument('analyses', nargs='+', help='analysis.json files or their folders')
    p.add_argument('out', help='PNG file')
    args = parser.parse_args(argv)
    if args.what == 'activations':
        try:
            alphas = [float(a) for a in args.alphas.split(',')]
            ns = [float(n) for n in args.ns.split(',')]
        except ValueError:
            raise InputError(f'--alphas/--ns take comma-separated numbers, not {args.alphas!r} / {args.ns!r}')
        if any(n <= 0 for n in ns):
            raise InputError('--ns: n must be > 0')
        plot_activations(args.out, alphas, ns)
    elif args.what == 'alphas':
        plot_alphas(args.checkpoint, args.out, trust=args.trust_checkpoint)
    elif args.what == 'bands':
        plot_bands(args.analyses, args.out)
    else:
        plot_curves(args.sweep_dir, args.out)
    print(f'written: {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
