"""Issue 17's ablation: the paired statistics of tools/zoo/stats.py and the band fractions of
tools/analyze_activations.py (on tensors whose distribution is known, then on a released checkpoint)."""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from tools import analyze_activations as aa
from tools.zoo import stats

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """The tiny segmentation and translation data under data/, made as ``make demo`` makes them (idempotent):
    the tools below read the configs' own data paths, which a fresh clone does not have yet."""
    from tools.zoo.tasks import TASKS, run_tool
    logs = tmp_path_factory.mktemp('tiny_data')
    for name in ('segmentation', 'translation'):
        for i, command in enumerate(TASKS[name].prepare):
            run_tool(command, str(logs / f'{name}_prepare{i}.log'))
N = 20000.0


# ---------------------------------------------------------------- paired statistics

def t_cdf_df3(t):
    """Student's t CDF with 3 degrees of freedom, closed form (no scipy)."""
    u = t / math.sqrt(3)
    return 0.5 + (u / (1 + u * u) + math.atan(u)) / math.pi


def test_paired_comparison_matches_a_hand_computed_example():
    sau = [80.0, 82.0, 81.0, 83.0]
    other = [79.0, 80.5, 81.5, 81.0]
    # d = 1.0, 1.5, -0.5, 2.0: mean 1.0; squared deviations 0 + 0.25 + 2.25 + 1.0 = 3.5; var 3.5/3
    se = math.sqrt(3.5 / 3) / 2
    t = 1.0 / se  # 1.8516
    p = 2 * (1 - t_cdf_df3(t))  # 0.1612
    got = stats.paired_comparison(sau, other)
    assert got['n'] == 4 and got['df'] == 3 and not got['identical']
    assert got['mean_diff'] == pytest.approx(1.0)
    assert got['se'] == pytest.approx(se) and se == pytest.approx(0.540062, abs=1e-6)
    assert got['t'] == pytest.approx(t) and t == pytest.approx(1.851640, abs=1e-6)
    assert got['p'] == pytest.approx(p, rel=1e-9) and p == pytest.approx(0.1612, abs=1e-4)
    # the sign follows SAU - other; the test is symmetric
    flipped = stats.paired_comparison(other, sau)
    assert flipped['mean_diff'] == pytest.approx(-1.0) and flipped['p'] == pytest.approx(p)


def test_paired_comparison_degenerate_cases():
    same = stats.paired_comparison([70.0, 71.0, 72.0], [70.0, 71.0, 72.0])
    assert same['identical'] and same['mean_diff'] == 0 and same['se'] == 0 and same['p'] is None
    shifted = stats.paired_comparison([71.0, 72.0], [70.0, 71.0])  # every difference 1: no variance to test
    assert shifted['mean_diff'] == pytest.approx(1.0) and shifted['se'] == 0 and shifted['p'] is None
    one = stats.paired_comparison([71.0], [70.0])
    assert one['se'] is None and one['p'] is None and one['df'] == 0
    with pytest.raises(ValueError, match='same seeds'):
        stats.paired_comparison([1.0, 2.0], [1.0])


def test_holm_adjustment_by_hand():
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert stats.holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_paired_summary_and_its_table():
    """The sweep's paired section, from raw per-seed metrics: the hand-computed example again, x100 scaling,
    an activation identical to SAU, and Holm over the defined tests only."""
    seeds = [0, 1, 2, 3]
    runs = {'sau': {s: {'m': v / 100} for s, v in zip(seeds, [80.0, 82.0, 81.0, 83.0])},
            'relu': {s: {'m': v / 100} for s, v in zip(seeds, [79.0, 80.5, 81.5, 81.0])},
            'twin': {s: {'m': v / 100} for s, v in zip(seeds, [80.0, 82.0, 81.0, 83.0])}}
    summary = stats.paired_summary(runs, ['sau', 'relu', 'twin'], seeds, {'mAP': 'm'}, scale=100.0)
    assert list(summary) == ['relu', 'twin']
    relu = summary['relu']['mAP']
    assert relu['mean_diff'] == pytest.approx(1.0) and relu['se'] == pytest.approx(0.540062, abs=1e-6)
    assert relu['p'] == pytest.approx(2 * (1 - t_cdf_df3(1.0 / relu['se'])))
    assert relu['p_holm'] == pytest.approx(relu['p'])  # the only defined test
    assert summary['twin']['mAP']['identical'] and summary['twin']['mAP']['p_holm'] is None
    md = '\n'.join(stats.paired_markdown(summary, seeds))
    assert '| d = SAU - A | mAP |' in md
    assert '| sau - relu | +1.00 +/- 0.54, p 0.161 |' in md
    assert '| sau - twin | 0 (identical on every seed) |' in md
    assert "Holm's correction over the table's 1 tests" in md and '3 degrees of freedom' in md
    assert stats.paired_summary(runs, ['relu', 'twin'], seeds, {'mAP': 'm'}) == {}
    # stars: p < 0.05, and ** when Holm agrees
    strong = dict(identical=False, mean_diff=2.0, se=0.1, p=0.001, p_holm=0.004)
    weak = dict(strong, p=0.03, p_holm=0.09)
    assert stats.paired_cell(strong).endswith('p 0.001 **') and stats.paired_cell(weak).endswith('p 0.030 *')


def test_presets_name_known_activations():
    assert stats.resolve_preset('ablation')[0] == 'sau'
    assert len(set(stats.ABLATION)) == len(stats.ABLATION)
    assert {'relu', 'prelu', 'prelu_shared_0.15', 'leaky_relu_0.15', 'sau_n2', 'sau_n20', 'sau_n200',
            'sau_per_channel', 'sau_zero_centred', 'sau_trainable_n'} <= set(stats.ABLATION)
    with pytest.raises(ValueError, match='ablation'):
        stats.resolve_preset('nope')


# ---------------------------------------------------------------- band fractions

def test_band_fractions_of_a_uniform_grid_are_exact():
    """x evenly spaced over (-10/n, 10/n): |n x| < k holds on exactly k/10 of it."""
    m = 20000
    x = ((torch.arange(m, dtype=torch.float64) + 0.5) / m * 20 - 10) / N
    c = aa.band_counts(x.float().reshape(4, 5, -1), 0.15, N)
    assert c['total'] == m
    assert {k: v / m for k, v in c['below'].items()} == {1: 0.1, 3: 0.3, 8: 0.8}


def test_band_fractions_of_a_gaussian_match_erf():
    """x ~ N(0, (s/n)^2): P(|n x| < k) = erf(k / (s sqrt 2)), within 4 standard errors."""
    g = torch.Generator().manual_seed(0)
    m = 400_000
    for s in (1.0, 4.0):
        x = torch.randn(m, generator=g) * (s / N)
        c = aa.band_counts(x, 0.15, N)
        for k in aa.BANDS:
            expected = math.erf(k / (s * math.sqrt(2)))
            tol = 4 * math.sqrt(max(expected * (1 - expected), 1e-12) / m) + 1e-9
            assert abs(c['below'][k] / m - expected) < tol, (s, k)


def test_largest_difference_is_the_bound_at_zero_and_vanishes_far_away():
    alpha = 0.15
    c = aa.band_counts(torch.tensor([0.0, 1e-6, -1e-6]), alpha, N)
    assert c['max_diff'] == pytest.approx((1 - alpha) / (N * math.sqrt(2 * math.pi)), rel=1e-6)
    assert c['max_diff'] == pytest.approx(1.6955e-5, rel=1e-4)  # the "about 1.7e-5"
    assert aa.bound(alpha, N) == pytest.approx(c['max_diff'], rel=1e-6)
    assert c['fp32_differs'] == 3
    far = aa.band_counts(torch.tensor([-3.0, -0.5, 0.01, 2.0]), alpha, N)  # |n x| >= 200
    assert far['below'] == {1: 0, 3: 0, 8: 0} and far['max_diff'] < 1e-15 and far['fp32_differs'] == 0
    # small n: the smoothing is wide; SAU(0) - 0 is the same bound, and most of N(0,1) is in the band
    wide = aa.band_counts(torch.randn(10000, generator=torch.Generator().manual_seed(1)), alpha, 2.0)
    assert wide['below'][1] / 10000 == pytest.approx(math.erf(0.5 / math.sqrt(2)), abs=0.02)


def test_per_channel_alphas_along_dim_1_and_the_last_dim():
    alpha = torch.tensor([0.0, 0.5, 0.9])
    x = torch.zeros(2, 3, 4)
    c = aa.band_counts(x, alpha, N)  # channels on dim 1: the largest gap is the smallest alpha's
    assert c['max_diff'] == pytest.approx(1.0 / (N * math.sqrt(2 * math.pi)), rel=1e-6)
    assert aa.bound(alpha, N) == pytest.approx(c['max_diff'], rel=1e-6)
    # (T, B, C) as in fairseq's FFN: one alpha per channel of the last dim; x < 0 far from 0: exact Leaky ReLU
    x = -torch.ones(5, 2, 3)
    c = aa.band_counts(x, alpha, N, channel_dim=-1)
    assert c['max_diff'] == 0.0 and c['total'] == 30
    with pytest.raises(ValueError, match='per-channel'):
        aa.band_counts(torch.zeros(2, 4, 3), alpha, N)


def test_zero_centred_sau_is_leaky_relu_at_zero():
    c = aa.band_counts(torch.tensor([0.0]), 0.15, N, zero_centred=True)
    assert c['max_diff'] == 0.0


# ---------------------------------------------------------------- the tool on a released checkpoint

def test_analyze_released_segmentation_checkpoint(tmp_path, tiny_data):
    ckpt = 'checkpoints/unet-w8_sau_tiny-cityscapes_20261123-089ade5b.pth'
    out = tmp_path / 'an'
    proc = subprocess.run([sys.executable, 'tools/analyze_activations.py',
                           'segmentation/configs/unet-w8_sau_tiny-cityscapes.py', ckpt, '--out-dir', str(out)],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out / 'analysis.json').read_text())
    state = torch.load(osp.join(REPO, ckpt), map_location='cpu', weights_only=False)['state_dict']
    alphas = {k[:-len('.alpha')]: v for k, v in state.items() if k.endswith('.alpha')}
    assert [row['layer'] for row in result['layers']] == list(alphas)  # every SAU layer, in model order
    for row in result['layers']:
        assert row['alpha'] == pytest.approx(float(alphas[row['layer']]))
        assert row['n'] == 20000 and row['elements'] > 0
        assert 0 <= row['below_1'] <= row['below_3'] <= row['below_8'] <= 1
        assert row['max_diff'] <= row['bound'] * (1 + 1e-9)
    assert result['all']['elements'] == sum(row['elements'] for row in result['layers'])
    assert result['all']['below_8'] < 0.01  # the claim, on this data
    md = (out / 'analysis.md').read_text()
    assert '| **all layers** |' in md and r'\|nx\|<1' in md


def test_summarize_prints_one_row_per_analysis(tmp_path, capsys):
    rows = [dict(layer='a', alpha=0.1), dict(layer='b', alpha=0.3)]
    result = dict(config='x/cfg.py', weights='at initialisation (seed 0)', bands=[1, 3, 8], layers=rows,
                  all=dict(elements=1000, below_1=0.001, below_3=0.003, below_8=0.008, max_diff=1.5e-5,
                           fp32_differs=0.002))
    (tmp_path / 'analysis.json').write_text(json.dumps(result))
    assert aa.main(['--summarize', str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == ('| cfg.py | at initialisation (seed 0) | 2 | 1,000 | 0.001 | 0.003 | 0.008 | 1.5e-05 | 0.002 | '
                      '0.100..0.300 |')


def test_plot_bands_draws_one_or_more_analyses(tmp_path):
    from tools import plot
    from tools.zoo.errors import InputError
    rows = [dict(layer=f'l{i}', alpha=0.15 + 0.01 * i, alpha_min=0.1, alpha_max=0.2 + 0.01 * i, alphas=4, n=20.0,
                 below_1=0.1 * (i + 1) / 4, below_3=0.2, below_8=0.0 if i == 0 else 0.5) for i in range(3)]
    paths = []
    for name in ('ckpt', 'init'):
        (tmp_path / name).mkdir()
        (tmp_path / name / 'analysis.json').write_text(json.dumps(dict(weights=name, bands=[1, 3, 8], layers=rows)))
        paths.append(str(tmp_path / name))
    out = str(tmp_path / 'bands.png')
    assert plot.plot_bands(paths, out)['layers'] == ['l0', 'l1', 'l2']
    with open(out, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(InputError, match='analysis not found'):
        plot.plot_bands([str(tmp_path / 'missing')], out)


def test_analyze_refuses_a_model_without_sau(tmp_path, tiny_data):
    proc = subprocess.run([sys.executable, 'tools/analyze_activations.py',
                           'segmentation/configs/unet-w8_sau_tiny-cityscapes.py', '--act', 'relu',
                           '--out-dir', str(tmp_path)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith('error: the model has no SAU layer')


# ---------------------------------------------------------------- the ablation activations, in each framework

ABLATIONS = [a for a in stats.ABLATION if a not in ('sau', 'relu', 'prelu')]


def test_every_ablation_is_in_the_one_table_with_a_one_line_doc():
    import sau_core
    from sau_core.activations import ACT_DOCS
    assert set(stats.ABLATION) <= set(sau_core.ACT_CFGS) and set(stats.PAPER) <= set(sau_core.ACT_CFGS)
    assert set(ACT_DOCS) == set(sau_core.ACT_CFGS)
    assert all(doc and '\n' not in doc for doc in ACT_DOCS.values())


def check_ablation_module(name, module, channels):
    """What each ablation is, on a built module (``channels``: the per-channel SAU's expected size)."""
    from torch.nn.parameter import is_lazy

    from sau_core import SAU
    from sau_core.per_channel import PerChannelSAU
    if name == 'prelu_shared_0.15':
        assert isinstance(module, torch.nn.PReLU) and module.weight.numel() == 1
        assert float(module.weight.detach()) == pytest.approx(0.15)
    elif name == 'leaky_relu_0.15':
        assert isinstance(module, torch.nn.LeakyReLU) and module.negative_slope == 0.15
        assert not list(module.parameters())
    else:
        assert isinstance(module, SAU)
        n = {'sau_n2': 2.0, 'sau_n20': 20.0, 'sau_n200': 200.0}.get(name, 20000.0)
        assert float(module.n.detach()) == n
        assert isinstance(module.n, torch.nn.Parameter) == (name == 'sau_trainable_n')
        assert module.zero_centred == (name == 'sau_zero_centred')
        assert isinstance(module, PerChannelSAU) == (name == 'sau_per_channel')
        if name == 'sau_per_channel' and channels is not None:
            assert not is_lazy(module.alpha) and module.alpha.shape == (channels,)
        elif name != 'sau_per_channel':
            assert module.alpha.shape == (1,)
        if not is_lazy(module.alpha):
            assert torch.all(module.alpha.detach().float() == 0.15)


@pytest.mark.parametrize('name', ABLATIONS)
def test_ablation_in_plain_pytorch(name):
    import sau_core
    layer = sau_core.create_act_layer(name)
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    y = layer.double()(x)
    check_ablation_module(name, layer, 4)  # the per-channel SAU is sized by its first input
    y.sum().backward()
    assert y.shape == x.shape and x.grad is not None
    assert all(p.grad is not None for p in layer.parameters())
    # each is what its name says: a PReLU / Leaky ReLU / SAU of these parameters
    if name in ('prelu_shared_0.15', 'leaky_relu_0.15'):
        assert torch.allclose(y, torch.nn.functional.leaky_relu(x, 0.15))
    else:
        expected = sau_core.sau_reference(x, layer.alpha.detach(), float(layer.n), layer.zero_centred)
        assert torch.allclose(y, expected, rtol=1e-6, atol=1e-9)


def test_sau_at_the_papers_n_is_prelu_to_fp32_precision_but_not_at_small_n():
    import sau_core
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0)).reshape(100, 1000)
    prelu = torch.nn.functional.leaky_relu(x, 0.15)
    gap = (sau_core.create_act_layer('sau')(x) - prelu).abs()
    assert gap.max() <= 0.85 / (20000 * math.sqrt(2 * math.pi)) * 1.01  # the bound
    # fp32: beyond the op's own rounding (a few ulp of x: it sums (1+a)/2 x and (1-a)/2 x erf), almost every
    # element is the PReLU's
    ulps = 4 * torch.finfo(torch.float32).eps * x.abs()
    assert (gap > ulps).float().mean() < 1e-3
    wide = (sau_core.create_act_layer('sau_n2')(x) - prelu).abs()
    assert wide.max() > 0.1 and (wide > 1e-3).float().mean() > 0.5


def test_ablations_in_mmcv_convmodule_and_both_registries():
    from mmcv.cnn import ConvModule
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS

    import sau_core
    import sau_core.mm  # noqa: F401
    for name in ABLATIONS:
        conv = ConvModule(3, 8, 3, norm_cfg=dict(type='BN'), act_cfg=sau_core.act_cfg(name))  # inplace=True
        check_ablation_module(name, conv.activate, 8)  # sized when built: before any optimizer or checkpoint
        assert conv(torch.randn(2, 3, 6, 6)).shape == (2, 8, 4, 4)
        for registry in (MMDET_MODELS, MMSEG_MODELS):
            check_ablation_module(name, registry.build(sau_core.act_cfg(name)), None)
    first = ConvModule(3, 8, 1, act_cfg=sau_core.act_cfg('sau_per_channel'), order=('act', 'conv', 'norm'))
    assert first.activate.alpha.shape == (3,)  # the activation comes first: the conv's input channels


def build_mm_model(config, act):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    from tools.zoo.config import apply_act
    cfg = Config.fromfile(osp.join(REPO, config))
    apply_act(cfg, act)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


@pytest.mark.parametrize('task', ['segmentation', 'detection'])
def test_per_channel_sau_in_mmengine_models_saves_and_loads(task, tmp_path):
    from tools.zoo.io import check_checkpoint_matches
    from tools.zoo.tasks import TASKS
    config = TASKS[task].config
    model = build_mm_model(config, 'sau_per_channel')
    alphas = {k: v for k, v in model.state_dict().items() if k.endswith('.alpha')}
    assert len(alphas) == (23 if task == 'detection' else 24)
    assert all(v.numel() > 1 for v in alphas.values())  # every one sized from its conv, at build time
    with torch.no_grad():
        for v in alphas.values():
            v.copy_(torch.linspace(0.0, 0.3, v.numel()))
    path = str(tmp_path / 'ckpt.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    fresh = build_mm_model(config, 'sau_per_channel')
    check_checkpoint_matches(fresh, path)  # the zoo's strict check: same keys and shapes
    fresh.load_state_dict(torch.load(path, weights_only=False)['state_dict'], strict=True)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in alphas.items())
    for name in ABLATIONS:  # and every ablation builds in the task's model
        model = build_mm_model(config, name)
        acts = [m for m in model.modules() if type(m).__name__ in ('PReLU', 'LeakyReLU', 'SAU', 'PerChannelSAU')]
        assert len(acts) == len(alphas)
        for m in acts:
            check_ablation_module(name, m, m.alpha.numel() if name == 'sau_per_channel' else None)


def test_ablations_in_fairseq_choices_and_ffn():
    from fairseq import utils
    from fairseq.models.transformer import TransformerConfig
    from fairseq.modules.transformer_layer import TransformerDecoderLayerBase, TransformerEncoderLayerBase
    from omegaconf import OmegaConf

    import sau_core.fairseq as plugin
    plugin.register()
    choices = utils.get_available_activation_fns()
    field_type = TransformerConfig.__dataclass_fields__['activation_fn'].type
    for name in ABLATIONS:
        assert name in choices and name in [m.value for m in field_type]
        check_ablation_module(name, utils.get_activation_fn(name), None)
        structured = OmegaConf.structured(TransformerConfig())
        structured.activation_fn = name  # OmegaConf validates against the choices (a dot in the name is fine)
        cfg = TransformerConfig()
        cfg.activation_fn = name
        cfg.encoder.embed_dim = cfg.decoder.embed_dim = 16
        cfg.encoder.ffn_embed_dim = cfg.decoder.ffn_embed_dim = 24
        cfg.encoder.attention_heads = cfg.decoder.attention_heads = 2
        for layer in (TransformerEncoderLayerBase(cfg), TransformerDecoderLayerBase(cfg)):
            # per channel: one alpha per FFN feature (fc1's out_features), sized when fc1 is registered
            check_ablation_module(name, layer.activation_fn, 24)
            if name == 'sau_per_channel':
                assert layer.activation_fn.channel_dim == -1
        x = torch.randn(5, 3, 16)  # (T, B, C)
        out = TransformerEncoderLayerBase(cfg)(x, encoder_padding_mask=None)
        assert out.shape == x.shape


def tool(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_per_channel_sau_trains_and_evaluates_through_the_tools(tmp_path, tiny_data):
    """tools/train.py then tools/eval.py (a strict checkpoint load) with --act sau_per_channel: segmentation
    for one epoch, translation for 5 updates (greedy, short generation); the checkpoints hold one alpha per
    channel."""
    seg = str(tmp_path / 'seg')
    config = 'segmentation/configs/unet-w8_sau_tiny-cityscapes.py'
    proc = tool('tools/train.py', config, '--act', 'sau_per_channel', '--work-dir', seg,
                '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_begin=2')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = osp.join(seg, 'epoch_1.pth')
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert state['backbone.encoder.0.0.convs.0.activate.alpha'].shape == (8,)
    proc = tool('tools/eval.py', config, ckpt, '--act', 'sau_per_channel', '--out', str(tmp_path / 'seg.json'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'mIoU' in json.loads((tmp_path / 'seg.json').read_text())

    tr = str(tmp_path / 'tr')
    config = 'translation/configs/transformer_tiny_sau.py'
    proc = tool('tools/train.py', config, '--act', 'sau_per_channel', '--work-dir', tr,
                '--cfg-options', 'fairseq.train.max_update=5')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = torch.load(osp.join(tr, 'checkpoint_last.pt'), map_location='cpu', weights_only=False)['model']
    assert state['encoder.layers.0.activation_fn.alpha'].shape == (256,)  # encoder_ffn_embed_dim
    # greedy and short: an untrained model's beam search runs to the length limit on every sentence
    proc = tool('tools/eval.py', config, osp.join(tr, 'checkpoint_last.pt'), '--act', 'sau_per_channel',
                '--out', str(tmp_path / 'tr.json'), '--cfg-options', 'fairseq.generate.beam=1',
                'fairseq.generate.max_len_b=10')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'sacrebleu' in json.loads((tmp_path / 'tr.json').read_text())


# ---------------------------------------------------------------- tools/sweep.py: --preset and the paired table

def test_sweep_preset_runs_the_named_list(monkeypatch):
    from tools import sweep
    from tools.zoo.errors import InputError
    seen = []
    monkeypatch.setattr(sweep, 'sweep', lambda task, acts, *args, **kwargs: seen.append(acts) or {})
    monkeypatch.setattr(sweep, 'to_markdown', lambda results: '')
    assert sweep.main(['segmentation', '--preset', 'ablation', '--seeds', '5']) == 0
    assert seen == [list(stats.ABLATION)]
    with pytest.raises(InputError, match='not both'):
        sweep.main(['segmentation', '--preset', 'ablation', '--acts', 'relu,sau'])
    with pytest.raises(InputError, match="unknown preset 'nope'"):
        sweep.main(['segmentation', '--preset', 'nope'])


def test_sweep_results_hold_the_paired_comparison_in_table_units():
    from tools import sweep
    seeds = [0, 1, 2, 3]
    keys = ['pascal_voc/mAP', 'pascal_voc_area/mAP', 'coco/bbox_mAP']
    sau = [0.80, 0.82, 0.81, 0.83]
    other = [0.79, 0.805, 0.815, 0.81]
    runs = {'sau': {s: {k: v for k in keys} for s, v in zip(seeds, sau)},
            'relu': {s: {k: v for k in keys} for s, v in zip(seeds, other)}}
    results = sweep.summarize('detection', ['relu', 'sau'], seeds, runs, 0.1, [])
    cell = results['paired']['relu']['mAP (VOC 11-point)']
    assert cell['mean_diff'] == pytest.approx(1.0) and cell['se'] == pytest.approx(0.540062, abs=1e-6)  # x100
    assert cell['p'] == pytest.approx(0.1612, abs=1e-4)
    assert cell['p_holm'] == pytest.approx(min(1.0, 3 * cell['p']))  # 3 tests, all with the same p
    md = sweep.to_markdown(results)
    assert '| sau - relu | +1.00 +/- 0.54, p 0.161 | +1.00 +/- 0.54, p 0.161 | +1.00 +/- 0.54, p 0.161 |' in md
    assert md.index('| baseline | SAU better |') < md.index('| d = SAU - A |')  # added after Table 8
    assert sum(line.startswith('| relu |') for line in md.splitlines()) == 2  # the main table and Table 8 only
