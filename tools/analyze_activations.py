#!/usr/bin/env python
"""Where does each SAU layer's input fall relative to the Gaussian's width 1/n: is SAU a Leaky ReLU there?

    python tools/analyze_activations.py CONFIG [CHECKPOINT] [--act NAME] [--split train] [--batches 1]
                                        [--seed 0] [--eval-mode] [--out-dir DIR] [--plot PNG] [--cfg-options ...]

SAU(x; a, n) is Leaky ReLU (slope a) convolved with a Gaussian of standard deviation 1/n, so the two differ by
at most (1-a)/(n*sqrt(2*pi)) (at x = 0; the "bound" column) and only where |n*x| is below a few units. For every
SAU layer of the config's model (``--act`` as in tools/train.py; any ``sau*`` activation of the zoo's table),
with the CHECKPOINT's weights or, without one, at initialisation (the config's init, seeded by ``--seed``), this
runs ``--batches`` batches of the ``--split`` data loader through the model and records, from each layer's
input x (a forward pre-hook: before an in-place SAU overwrites it):

- the fraction of elements with |n*x| < 1, 3 and 8 (``|nx|<k``),
- the layer's alpha (mean, and min..max for one alpha per channel) and n,
- the largest |SAU(x) - LeakyReLU_alpha(x)| over the elements seen, in float64 from the formula
  (``sau_core.sau_reference``: the smoothing's own effect, free of the kernels' rounding),
- the fraction of elements on which SAU and LeakyReLU_alpha still differ after rounding both to float32
  (``fp32 differs``): where, at fp32 precision, SAU is not a PReLU.

The model runs in training mode (batch statistics in BN, dropout on: the distribution SAU sees while training),
under ``torch.no_grad()``; ``--eval-mode`` gives the test-time one (BN running statistics). It writes
``analysis.md`` and ``analysis.json`` to ``--out-dir`` (default ``work_dirs/analyze/<config>/<checkpoint or
init>``) and, with ``--plot``, ``tools/plot.py bands``'s figure of them.

    python tools/analyze_activations.py --summarize ANALYSIS.json [ANALYSIS.json ...]

prints one row per analysis (its "all layers" row, with the range of the layers' alphas): the README's table.
"""
import argparse
import json
import math
import os.path as osp
import sys

from tools.zoo import config  # noqa: I100  (first: it quiets mmengine's import-time warnings)
from tools.zoo import REPO_ROOT, data_checks
from tools.zoo.errors import InputError, run_main
from tools.zoo.io import atomic_write, check_checkpoint_matches, fetch_checkpoint, read_checkpoint

BANDS = (1, 3, 8)
SQRT_2PI = math.sqrt(2 * math.pi)
_CHUNK = 1 << 20  # elements per float64 chunk


# ---------------------------------------------------------------- the statistics

def sau_layers(model):
    """``[(name, module)]`` of every SAU module (per-channel and lazily sized ones included), in model order."""
    from sau_core.module import SAU
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SAU)]


def layer_params(module):
    """(alpha as a float64 1-d tensor, n as a float, zero_centred, channel dim of the per-channel alphas)."""
    import torch
    alpha = module.alpha.detach().to(torch.float64).reshape(-1)
    return alpha, float(module.n.detach()), bool(getattr(module, 'zero_centred', False)), \
        int(getattr(module, 'channel_dim', 1))


def band_counts(x, alpha, n, zero_centred=False, channel_dim=1, bands=BANDS):
    """Counts over the elements of ``x`` (one SAU layer's input): ``total``, ``below`` (``{k: #|n*x| < k}``),
    ``max_diff`` (max |SAU(x) - LeakyReLU_alpha(x)|, float64) and ``fp32_differs`` (#elements where the two,
    each rounded to float32, differ). ``alpha``: one value, or one per channel along ``channel_dim``."""
    import torch
    from sau_core.reference import sau_reference
    x = x.detach()
    alpha = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1)
    channels = alpha.numel()
    if channels > 1:
        if x.dim() < 2 or x.shape[channel_dim] != channels:
            raise ValueError(f'{channels} per-channel alphas for an input of shape {tuple(x.shape)} '
                             f'(channel dim {channel_dim})')
        rows = x.movedim(channel_dim, -1).reshape(-1, channels)
    else:
        rows = x.reshape(-1, 1)
    a = alpha.reshape(1, -1)
    out = dict(total=rows.numel(), below={k: 0 for k in bands}, max_diff=0.0, fp32_differs=0)
    step = max(1, _CHUNK // max(1, channels))
    for start in range(0, rows.shape[0], step):
        chunk = rows[start:start + step].to(torch.float64)
        scaled = (chunk * n).abs()
        for k in bands:
            out['below'][k] += int((scaled < k).sum())
        smooth = sau_reference(chunk, alpha if channels > 1 else float(alpha), n, zero_centred)
        leaky = torch.where(chunk >= 0, chunk, a * chunk)
        if chunk.numel():
            out['max_diff'] = max(out['max_diff'], float((smooth - leaky).abs().max()))
        out['fp32_differs'] += int((smooth.float() != leaky.float()).sum())
    return out


def bound(alpha, n):
    """The largest possible |SAU - LeakyReLU_alpha| over all x: (1 - alpha)/(n sqrt(2 pi)), at x = 0 (for one
    alpha per channel, the largest over the channels)."""
    import torch
    alpha = torch.as_tensor(alpha, dtype=torch.float64).reshape(-1)
    return float((1 - alpha).abs().max()) / (n * SQRT_2PI)


class Recorder:
    """Forward pre-hooks on every SAU layer of a model, adding each input to that layer's counts."""

    def __init__(self, model, bands=BANDS):
        self.layers = sau_layers(model)
        if not self.layers:
            raise InputError('the model has no SAU layer to analyse: pass a config or --act with an SAU '
                             'activation (sau, sau_n20, ...)')
        self.bands = bands
        self.counts = {name: None for name, _ in self.layers}
        self.handles = [m.register_forward_pre_hook(self._hook(name)) for name, m in self.layers]

    def _hook(self, name):
        def hook(module, args):
            alpha, n, zero_centred, channel_dim = layer_params(module) if not _lazy(module) else (None,) * 4
            if alpha is None:
                return  # sized by this very call (lazy per-channel SAU): counted from the next batch on
            c = band_counts(args[0], alpha, n, zero_centred, channel_dim, self.bands)
            acc = self.counts[name]
            if acc is None:
                self.counts[name] = c
            else:
                acc['total'] += c['total']
                acc['fp32_differs'] += c['fp32_differs']
                acc['max_diff'] = max(acc['max_diff'], c['max_diff'])
                for k in self.bands:
                    acc['below'][k] += c['below'][k]
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()

    def results(self):
        """One row per layer (its parameters as they are now) plus the element-weighted ``all`` row."""
        rows = []
        total = dict(total=0, below={k: 0 for k in self.bands}, fp32_differs=0, max_diff=0.0)
        for name, module in self.layers:
            c = self.counts[name]
            alpha, n, zero_centred, _ = layer_params(module)
            row = dict(layer=name, alpha=float(alpha.mean()), alpha_min=float(alpha.min()),
                       alpha_max=float(alpha.max()), alphas=alpha.numel(), n=n,
                       trainable_n=getattr(module.n, 'requires_grad', False), zero_centred=zero_centred,
                       bound=bound(alpha, n), elements=0 if c is None else c['total'])
            if c is not None and c['total']:
                row.update({f'below_{k}': c['below'][k] / c['total'] for k in self.bands},
                           max_diff=c['max_diff'], fp32_differs=c['fp32_differs'] / c['total'])
                total['total'] += c['total']
                total['fp32_differs'] += c['fp32_differs']
                total['max_diff'] = max(total['max_diff'], c['max_diff'])
                for k in self.bands:
                    total['below'][k] += c['below'][k]
            rows.append(row)
        overall = dict(layer='all', elements=total['total'])
        if total['total']:
            overall.update({f'below_{k}': total['below'][k] / total['total'] for k in self.bands},
                           max_diff=total['max_diff'], fp32_differs=total['fp32_differs'] / total['total'])
        return rows, overall


def _lazy(module):
    from torch.nn.parameter import is_lazy
    return is_lazy(module.alpha)


# ---------------------------------------------------------------- the table

def fmt(value, digits=3):
    if value is None:
        return '-'
    if value == 0:
        return '0'
    return f'{value:.{digits}g}'


def to_markdown(result):
    bands = result['bands']
    rows, overall = result['layers'], result['all']
    head = (f'# SAU layers of {result["config"]}: {result["weights"]}\n\n'
            f'{result["batches"]} batch(es) of the {result["split"]} data, {result["elements"]:,} SAU inputs, '
            f'model in {result["mode"]} mode{", --act " + result["act"] if result["act"] else ""}. '
            '`|nx|<k`: fraction of the inputs x with |n*x| < k; `max |SAU-LReLU|`: largest |SAU(x) - '
            'LeakyReLU_alpha(x)| seen (float64); `bound`: (1-alpha)/(n*sqrt(2*pi)), its largest possible value; '
            '`fp32 differs`: fraction of inputs where SAU and LeakyReLU_alpha differ once rounded to float32.\n')
    cols = ['layer', 'alpha', 'n', *[f'\\|nx\\|<{k}' for k in bands], 'max \\|SAU-LReLU\\|', 'bound', 'fp32 differs']
    lines = [head, '| ' + ' | '.join(cols) + ' |', '|---|' + '---:|' * (len(cols) - 1)]
    for row in rows:
        alpha = fmt(row['alpha'], 4) if row['alphas'] == 1 else \
            f'{row["alpha"]:.4f} ({row["alpha_min"]:.3f}..{row["alpha_max"]:.3f}, {row["alphas"]} ch.)'
        n = fmt(row['n'], 5) + (' (trained)' if row['trainable_n'] else '')
        cells = [row['layer'], alpha, n, *[fmt(row.get(f'below_{k}')) for k in bands],
                 fmt(row.get('max_diff')), fmt(row['bound']), fmt(row.get('fp32_differs'))]
        lines.append('| ' + ' | '.join(cells) + ' |')
    lines.append('| **all layers** | | | ' + ' | '.join(fmt(overall.get(f'below_{k}')) for k in bands)
                 + f' | {fmt(overall.get("max_diff"))} | | {fmt(overall.get("fp32_differs"))} |')
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------- running a model

def _mm_model_and_batches(cfg, checkpoint, split, batches, seed, eval_mode):
    """Build the MMEngine model (checkpoint loaded strictly, or initialised), yield ``batches`` batches through
    it with the recorder installed by the caller."""
    import torch
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import Runner, load_checkpoint, set_random_seed

    loader_key = f'{split}_dataloader'
    if not cfg.get(loader_key):
        raise InputError(f'the config has no {loader_key}')
    config.check_act_cfgs(cfg)
    data_checks.check_datasets(cfg, [loader_key])
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    set_random_seed(seed)
    with config.framework_errors():
        model = MODELS.build(cfg.model)
        if checkpoint:
            check_checkpoint_matches(model, checkpoint)
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
        else:
            model.init_weights()
        loader = Runner.build_dataloader(cfg[loader_key], seed=seed)
    model.train(not eval_mode)

    def run(recorder):
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= batches:
                    break
                data = model.data_preprocessor(batch, not eval_mode)
                model(**data, mode='loss')
        return min(batches, len(loader))
    return model, run


def _fairseq_model_and_batches(cfg, checkpoint, split, batches, seed, eval_mode):
    import tempfile

    import torch
    from translation import runner as translation

    fs = cfg.fairseq
    options = dict(fs.train, save_dir=tempfile.mkdtemp(prefix='analyze_'), user_dir=translation.USER_DIR,
                   seed=seed)
    argv = [translation.check_data(fs.data)] + translation.to_argv(options)
    from fairseq import checkpoint_utils, options as fairseq_options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    with config.fairseq_option_errors():
        namespace = fairseq_options.parse_args_and_arch(fairseq_options.get_training_parser(), input_args=argv)
    fcfg = convert_namespace_to_omegaconf(namespace)
    utils.import_user_module(fcfg.common)
    utils.set_torch_seed(seed)
    task = tasks.setup_task(fcfg.task)
    model = task.build_model(fcfg.model)
    criterion = task.build_criterion(fcfg.criterion)
    if checkpoint:
        translation.check_checkpoint(checkpoint)
        state = checkpoint_utils.load_checkpoint_to_cpu(checkpoint)
        try:
            model.load_state_dict(state['model'], strict=True, model_cfg=fcfg.model)
        except RuntimeError as e:
            raise InputError(f'checkpoint {checkpoint} does not fit this config\'s model (was it trained with '
                             f'another config or --act?): {str(e).splitlines()[0]}') from e
    subset = {'val': 'valid'}.get(split, split)
    task.load_dataset(subset, combine=False, epoch=1)
    iterator = task.get_batch_iterator(
        dataset=task.dataset(subset), max_tokens=fcfg.dataset.max_tokens, max_sentences=fcfg.dataset.batch_size,
        max_positions=utils.resolve_max_positions(task.max_positions(), model.max_positions()),
        ignore_invalid_inputs=True, seed=seed, num_workers=0).next_epoch_itr(shuffle=subset == 'train')
    model.train(not eval_mode)
    criterion.train(not eval_mode)

    def run(recorder):
        done = 0
        with torch.no_grad():
            for sample in iterator:
                if done >= batches:
                    break
                criterion(model, sample)
                done += 1
        return done
    return model, run


def analyze(cfg, config_path, checkpoint=None, act=None, split='train', batches=1, seed=0, eval_mode=False):
    """The analysis as a dict (see the module's docstring): ``layers`` (one row per SAU layer), ``all``."""
    if batches < 1:
        raise InputError(f'--batches must be at least 1, not {batches}')
    if split not in ('train', 'val', 'test'):
        raise InputError(f'--split: train, val or test, not {split!r}')
    build = _fairseq_model_and_batches if config.is_fairseq(cfg) else _mm_model_and_batches
    model, run = build(cfg, checkpoint, split, batches, seed, eval_mode)
    recorder = Recorder(model)
    try:
        ran = run(recorder)
    finally:
        recorder.remove()
    rows, overall = recorder.results()
    if not overall['elements']:
        raise InputError(f'no SAU layer saw any input in {ran} batch(es) of the {split} data')
    return dict(config=config_path, checkpoint=checkpoint,
                weights=f'checkpoint {osp.basename(checkpoint)}' if checkpoint else f'at initialisation (seed {seed})',
                act=act, split=split, batches=ran, seed=seed, mode='eval' if eval_mode else 'train',
                bands=list(BANDS), elements=overall['elements'], layers=rows, all=overall)


def default_out_dir(config_path, checkpoint, act):
    stem = osp.splitext(osp.basename(config_path))[0] + (f'_{act}' if act else '')
    which = osp.splitext(osp.basename(checkpoint))[0] if checkpoint else 'init'
    return osp.join(REPO_ROOT, 'work_dirs', 'analyze', stem, which)


def summary_markdown(paths):
    """One row per analysis.json: the model, its weights, the element-weighted fractions over all its SAU layers,
    the largest |SAU - LeakyReLU| seen and the range of the layers' (mean) alphas."""
    lines = ['| config | weights | SAU layers | inputs | \\|nx\\|<1 | \\|nx\\|<3 | \\|nx\\|<8 | '
             'max \\|SAU-LReLU\\| | fp32 differs | alpha (layers) |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---|']
    for path in paths:
        path = osp.join(path, 'analysis.json') if osp.isdir(path) else path
        try:
            with open(path) as f:
                r = json.load(f)
            overall, layers = r['all'], r['layers']
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f'cannot read {path} as an analysis.json of this tool: {e}') from None
        alphas = [row['alpha'] for row in layers]
        lines.append(f'| {osp.basename(r["config"])} | {r["weights"]} | {len(layers)} | {overall["elements"]:,} | '
                     + ' | '.join(fmt(overall.get(f'below_{k}')) for k in r['bands'])
                     + f' | {fmt(overall.get("max_diff"))} | {fmt(overall.get("fp32_differs"))} | '
                     f'{min(alphas):.3f}..{max(alphas):.3f} |')
    return '\n'.join(lines) + '\n'


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['--summarize']:
        if len(argv) < 2:
            raise InputError('--summarize: give one or more analysis.json files (or their folders)')
        print(summary_markdown(argv[1:]), end='')
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config file (a task config of the zoo)')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file or URL; without it: at initialisation')
    parser.add_argument('--act', metavar='NAME', help='swap every activation, as tools/train.py --act')
    parser.add_argument('--split', default='train', help='train (default), val or test: whose batches')
    parser.add_argument('--batches', type=int, default=1, help='batches to run (default 1)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the initialisation and data order (default 0)')
    parser.add_argument('--eval-mode', action='store_true', help='run the model in eval mode (BN running stats)')
    parser.add_argument('--out-dir', help='default: work_dirs/analyze/<config>[_<act>]/<checkpoint stem or init>')
    parser.add_argument('--plot', metavar='PNG', help='also draw the bands per layer (tools/plot.py bands)')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override settings of the config')
    args = parser.parse_args(argv)
    cfg = config.load_config(args.config)
    config.check_config_kind(cfg, args.config)
    config.check_cfg_options(cfg, args.cfg_options)
    checkpoint = None
    if args.checkpoint:
        checkpoint = fetch_checkpoint(args.checkpoint)
        read_checkpoint(checkpoint)
    with config.fairseq_option_errors():
        config.apply_options(cfg, args.cfg_options, args.act)
    result = analyze(cfg, args.config, checkpoint, args.act, args.split, args.batches, args.seed, args.eval_mode)
    out_dir = args.out_dir or default_out_dir(args.config, checkpoint, args.act)
    atomic_write(osp.join(out_dir, 'analysis.json'), json.dumps(result, indent=2) + '\n')
    markdown = to_markdown(result)
    atomic_write(osp.join(out_dir, 'analysis.md'), markdown)
    print(markdown)
    print(f'written: {out_dir}/analysis.md, analysis.json')
    if args.plot:
        from tools.plot import plot_bands
        plot_bands(osp.join(out_dir, 'analysis.json'), args.plot)
        print(f'written: {args.plot}')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
