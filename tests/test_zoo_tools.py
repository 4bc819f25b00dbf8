"""The zoo's tools around train/eval: tools/sweep.py, tools/publish_checkpoint.py, tools/plot.py.

One small sweep (segmentation, relu and sau x 2 seeds, 1 epoch each, ~80 s on 2 shared cores) is shared by
the tests; its checkpoints feed the publish and plot tests.
"""
import hashlib
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from tools import publish_checkpoint, sweep
from tools.zoo.tasks import TASKS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG_CONFIG = 'segmentation/configs/unet-w8_sau_tiny-cityscapes.py'

ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def tool(*args, timeout=600):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def one_line_error(proc, *needles):
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    from tools.data import make_tiny_cityscapes
    root = str(tmp_path_factory.mktemp('zoo') / 'tiny_cityscapes')
    make_tiny_cityscapes.make_tiny_cityscapes(root, seed=0)
    return root


def seg_options(tiny_root):
    """One epoch, no validation during training (eval.py evaluates), the test's own tiny data."""
    return ['train_cfg.max_epochs=1', 'train_cfg.val_begin=2',
            *[f'{k}.dataset.data_root={tiny_root}' for k in ('train_dataloader', 'val_dataloader',
                                                               'test_dataloader')]]


@pytest.fixture(scope='module')
def seg_sweep(tiny_root, tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('sweep') / 'segmentation')
    args = ['tools/sweep.py', 'segmentation', '--acts', 'relu,sau', '--seeds', '2', '--work-dir', work_dir,
            '--cfg-options', *seg_options(tiny_root)]
    proc = tool(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dict(work_dir=work_dir, args=args, stdout=proc.stdout)


# ---------------------------------------------------------------- sweep

def run_metrics(work_dir, act, seed):
    with open(osp.join(work_dir, act, f'seed{seed}', 'metrics.json')) as f:
        return json.load(f)


def test_sweep_table_has_the_paper_layout_and_the_runs_numbers(seg_sweep):
    work_dir = seg_sweep['work_dir']
    assert 'runs: 4 trained, 0 evaluated only, 0 skipped' in seg_sweep['stdout']
    with open(osp.join(work_dir, 'results.json')) as f:
        results = json.load(f)
    metrics = TASKS['segmentation'].metrics
    assert results['acts'] == ['relu', 'sau'] and results['seeds'] == [0, 1]
    assert results['columns'] == list(metrics)
    for act in ('relu', 'sau'):
        per_seed = [run_metrics(work_dir, act, seed) for seed in (0, 1)]
        # each run was trained with its own activation and seed
        with open(osp.join(work_dir, act, 'seed0', 'train.log')) as f:
            assert f'--act {act} --seed 0' in f.readline()
        for column, key in metrics.items():
            values = [m[key] for m in per_seed]
            cell = results['summary'][act][column]
            assert cell['values'] == values
            assert cell['mean'] == pytest.approx(sum(values) / 2)
            assert cell['std'] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    # the two activations did train differently (the table is not one run copied)
    assert results['summary']['relu'] != results['summary']['sau']

    # Table 8 count: seeds x metrics, by the stated rule
    expected = dict(better=0, equal=0, worse=0)
    for seed in (0, 1):
        s, r = run_metrics(work_dir, 'sau', seed), run_metrics(work_dir, 'relu', seed)
        for key in metrics.values():
            d = s[key] - r[key]
            expected['equal' if abs(d) < sweep.EQUAL_TOL else 'better' if d > 0 else 'worse'] += 1
    assert results['comparison'] == {'relu': expected}
    assert sum(expected.values()) == 2 * len(metrics)
    assert '< 0.1 points' in results['equal_rule'] and results['scale'] == 1.0

    with open(osp.join(work_dir, 'results.md')) as f:
        md = f.read()
    header = '| activation | ' + ' | '.join(metrics) + ' |'
    assert header in md
    rows = [line for line in md.splitlines() if line.startswith(('| relu |', '| sau |')) and '+/-' in line]
    assert len(rows) == 2
    for row in rows:
        act = row.split('|')[1].strip()
        cells = [c.strip() for c in row.strip('|').split('|')[1:]]
        assert cells == [f'{results["summary"][act][c]["mean"]:.2f} +/- {results["summary"][act][c]["std"]:.2f}'
                         for c in metrics]
    assert f'| relu | {expected["better"]} | {expected["equal"]} | {expected["worse"]} |' in md
    assert 'equal: |SAU - baseline| < 0.1' in md


def test_sweep_resumes_without_training_again(seg_sweep):
    work_dir = seg_sweep['work_dir']
    watched = []
    for act in ('relu', 'sau'):
        for seed in (0, 1):
            run_dir = osp.join(work_dir, act, f'seed{seed}')
            watched += [osp.join(run_dir, name) for name in ('train.log', 'eval.log', 'metrics.json',
                                                             'epoch_1.pth')]
    before = {path: os.stat(path).st_mtime_ns for path in watched}
    with open(osp.join(work_dir, 'results.json')) as f:
        results = json.load(f)
    proc = tool(*seg_sweep['args'], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'runs: 0 trained, 0 evaluated only, 4 skipped' in proc.stdout
    assert {path: os.stat(path).st_mtime_ns for path in watched} == before
    with open(osp.join(work_dir, 'results.json')) as f:
        assert json.load(f) == results


def test_sweep_evaluates_or_resumes_unfinished_runs(seg_sweep, tmp_path):
    """A run that trained but was not evaluated is only evaluated; an interrupted training is resumed."""
    import shutil
    work_dir = str(tmp_path / 'segmentation')
    shutil.copytree(seg_sweep['work_dir'], work_dir)
    expected = {(act, seed): run_metrics(work_dir, act, seed) for act, seed in (('sau', 1), ('relu', 0))}
    for act, seed in (('sau', 1), ('relu', 0)):
        run_dir = osp.join(work_dir, act, f'seed{seed}')
        os.remove(osp.join(run_dir, 'metrics.json'))
        # the copied last_checkpoint points into the original folder: point it at the copy
        with open(osp.join(run_dir, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(run_dir, 'epoch_1.pth'))
    os.remove(osp.join(work_dir, 'relu', 'seed0', 'train.done'))  # as if killed after its last checkpoint
    evaluated_dir = osp.join(work_dir, 'sau', 'seed1')
    train_log = os.stat(osp.join(evaluated_dir, 'train.log')).st_mtime_ns
    args = list(seg_sweep['args'])
    args[args.index('--work-dir') + 1] = work_dir
    proc = tool(*args, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert 'runs: 1 trained, 1 evaluated only, 2 skipped' in proc.stdout
    assert os.stat(osp.join(evaluated_dir, 'train.log')).st_mtime_ns == train_log
    with open(osp.join(work_dir, 'relu', 'seed0', 'train.log')) as f:
        assert '--seed 0 --work-dir' in (first := f.readline()) and ' --resume --cfg-options ' in first
    # resumed at its last epoch, the run trains no further: the same weights, the same numbers
    for (act, seed), metrics in expected.items():
        assert run_metrics(work_dir, act, seed) == metrics


@pytest.mark.parametrize('args, needles', [
    (['nosuchtask', '--acts', 'relu,sau'], ["unknown task 'nosuchtask'", 'segmentation']),
    (['segmentation', '--acts', 'relu,tanh'], ["unknown activation 'tanh'", 'leaky_relu']),
    (['segmentation', '--acts', 'relu,relu'], ['listed twice']),
    (['segmentation', '--seeds', '0'], ['at least 1']),
])
def test_sweep_bad_input_is_one_line(args, needles, tmp_path):
    proc = tool('tools/sweep.py', *args, '--work-dir', str(tmp_path / 'w'), timeout=120)
    one_line_error(proc, *needles)
    assert not osp.exists(tmp_path / 'w' / 'relu')


def test_sweep_reports_a_failed_run(tiny_root, tmp_path):
    proc = tool('tools/sweep.py', 'segmentation', '--acts', 'relu', '--seeds', '1', '--work-dir', str(tmp_path),
                '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/none', timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr.splitlines()[0]
    assert proc.stderr.startswith('error: `tools/train.py')
    assert 'train.log' in proc.stderr and f'{tmp_path}/none' in proc.stderr
    assert not osp.exists(tmp_path / 'relu' / 'seed0' / 'metrics.json')


def test_sweep_summary_rule_and_std():
    runs = {'sau': {0: {'mIoU': 50.0, 'aAcc': 90.0, 'mAcc': 60.0}, 1: {'mIoU': 52.0, 'aAcc': 91.0, 'mAcc': 61.0}},
            'relu': {0: {'mIoU': 49.0, 'aAcc': 90.05, 'mAcc': 62.0}, 1: {'mIoU': 52.0, 'aAcc': 92.0, 'mAcc': 61.0}}}
    results = sweep.summarize('segmentation', ['relu', 'sau'], [0, 1], runs, 0.1, [])
    assert results['comparison'] == {'relu': dict(better=1, equal=3, worse=2)}
    assert results['summary']['sau']['mIoU']['mean'] == 51.0
    assert results['summary']['sau']['mIoU']['std'] == pytest.approx(math.sqrt(2))
    one = sweep.summarize('segmentation', ['sau'], [0], {'sau': {0: runs['sau'][0]}}, 0.1, [])
    assert one['summary']['sau']['aAcc']['std'] == 0.0 and one['comparison'] == {}
    assert 'No SAU vs baseline count' in sweep.to_markdown(one)


def test_sweep_shows_detection_fractions_in_percent():
    keys = TASKS['detection'].metrics
    runs = {act: {0: {k: v for k in keys.values()}} for act, v in (('sau', 0.659), ('relu', 0.6585))}
    results = sweep.summarize('detection', ['relu', 'sau'], [0], runs, 0.1, [])
    assert results['scale'] == 100.0
    assert results['summary']['sau'][list(keys)[0]]['mean'] == pytest.approx(65.9)
    assert results['runs']['sau']['0'] == runs['sau'][0]  # raw values as eval.py wrote them
    # 0.05 points apart: equal; with fractions unscaled every detection result would have been 'equal'
    assert results['comparison'] == {'relu': dict(better=0, equal=3, worse=0)}
    runs['relu'][0] = {k: 0.657 for k in keys.values()}
    assert sweep.summarize('detection', ['relu', 'sau'], [0], runs, 0.1, [])['comparison']['relu']['better'] == 3
    assert 'x100 (in %)' in sweep.to_markdown(results)


# ---------------------------------------------------------------- publish_checkpoint

def test_published_checkpoint_evaluates_the_same_and_is_named_by_its_hash(seg_sweep, tiny_root, tmp_path):
    run_dir = osp.join(seg_sweep['work_dir'], 'sau', 'seed0')
    src = osp.join(run_dir, 'epoch_1.pth')
    proc = tool('tools/publish_checkpoint.py', src, str(tmp_path / 'released'), '--config', SEG_CONFIG)
    assert proc.returncode == 0, proc.stderr
    files = os.listdir(tmp_path / 'released')
    assert len(files) == 1  # no temporary file left behind
    name = files[0]
    match = re.fullmatch(r'unet-w8_sau_tiny-cityscapes_(\d{8})-([0-9a-f]{8})\.pth', name)
    assert match, name
    path = str(tmp_path / 'released' / name)
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert match.group(2) == digest[:8] and digest in proc.stdout

    original = torch.load(src, map_location='cpu', weights_only=False)
    published = torch.load(path, map_location='cpu', weights_only=False)
    assert 'optimizer' in original and 'message_hub' in original
    assert set(published) == {'state_dict', 'meta'}
    assert published['state_dict'].keys() == original['state_dict'].keys()
    assert all(torch.equal(published['state_dict'][k], v) for k, v in original['state_dict'].items())
    assert osp.getsize(path) < 0.5 * osp.getsize(src)

    out = str(tmp_path / 'metrics.json')
    proc = tool('tools/eval.py', SEG_CONFIG, path, '--act', 'sau', '--work-dir', str(tmp_path / 'eval'),
                '--out', out, '--cfg-options', *seg_options(tiny_root))
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        assert json.load(f) == pytest.approx(run_metrics(seg_sweep['work_dir'], 'sau', 0), nan_ok=True)


def test_publish_names_the_file_from_mmengine_meta_without_config(seg_sweep, tmp_path):
    src = osp.join(seg_sweep['work_dir'], 'relu', 'seed1', 'epoch_1.pth')
    path, digest = publish_checkpoint.publish(src, str(tmp_path), date='20240101')
    assert osp.basename(path) == f'unet-w8_sau_tiny-cityscapes_20240101-{digest[:8]}.pth'
    assert publish_checkpoint.sha256sum(path) == digest


def test_publish_strips_a_fairseq_checkpoint_to_what_fairseq_loads(tmp_path):
    pytest.importorskip('fairseq')
    from fairseq import checkpoint_utils
    from omegaconf import OmegaConf
    model = {'encoder.layers.0.activation_fn.alpha': torch.tensor([0.2]), 'decoder.embed.weight': torch.ones(3, 2)}
    ckpt = {'cfg': OmegaConf.create({'model': {'activation_fn': 'sau'}, 'task': {'_name': 'translation'}}),
            'args': None, 'model': model,
            'optimizer_history': [{'criterion_name': 'LabelSmoothedCrossEntropyCriterion',
                                   'optimizer_name': 'FairseqAdam', 'lr_scheduler_state': {'best': 3.0},
                                   'num_updates': 300}],
            'last_optimizer_state': {'state': {0: {'exp_avg': torch.zeros(1000)}}},
            'extra_state': {'metrics': {'train': [1, 2, 3]}, 'train_iterator': {'epoch': 3}},
            'task_state': {}}
    src = str(tmp_path / 'checkpoint_last.pt')
    torch.save(ckpt, src)
    path, digest = publish_checkpoint.publish(src, str(tmp_path / 'out'), 'translation/configs/transformer_tiny_sau.py')
    assert re.fullmatch(r'transformer_tiny_sau_\d{8}-' + digest[:8] + r'\.pth', osp.basename(path))
    published = torch.load(path, map_location='cpu', weights_only=False)
    assert 'last_optimizer_state' not in published and published['extra_state'] == {}
    assert published['optimizer_history'][0]['lr_scheduler_state'] == {}
    assert published['optimizer_history'][0]['num_updates'] == 300
    assert published['cfg'] == ckpt['cfg'] and published['model'].keys() == model.keys()
    state = checkpoint_utils.load_checkpoint_to_cpu(path)  # fairseq's own loader (upgrade included)
    assert torch.equal(state['model']['encoder.layers.0.activation_fn.alpha'], torch.tensor([0.2]))


def test_publish_bad_input_is_one_line(tmp_path):
    one_line_error(tool('tools/publish_checkpoint.py', str(tmp_path / 'none.pth'), str(tmp_path)),
                   'checkpoint not found')
    junk = tmp_path / 'junk.pth'
    junk.write_text('not a checkpoint')
    one_line_error(tool('tools/publish_checkpoint.py', str(junk), str(tmp_path / 'out')), 'cannot read checkpoint')
    torch.save({'weights': torch.ones(2)}, tmp_path / 'odd.pth')
    one_line_error(tool('tools/publish_checkpoint.py', str(tmp_path / 'odd.pth'), str(tmp_path / 'out')),
                   'neither an MMEngine checkpoint')
    assert not osp.exists(tmp_path / 'out') or os.listdir(tmp_path / 'out') == []


# ---------------------------------------------------------------- plot

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def assert_png(path, min_bytes=10_000):
    import matplotlib.image
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE
    assert osp.getsize(path) > min_bytes
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image.std() > 0.01  # not a blank canvas


def test_plot_activations_writes_a_png(tmp_path):
    out = str(tmp_path / 'figs' / 'activations.png')
    proc = tool('tools/plot.py', 'activations', out, '--alphas', '0.15,0.5', '--ns', '1,20000', timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_png(out)


def test_plot_alphas_of_a_checkpoint(seg_sweep, tmp_path):
    from tools import plot
    ckpt = osp.join(seg_sweep['work_dir'], 'sau', 'seed0', 'epoch_1.pth')
    result = plot.plot_alphas(ckpt, str(tmp_path / 'alphas.png'))
    assert_png(result['out'])
    state = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert result['keys'] == [k for k in state if k.endswith('.alpha')] and len(result['keys']) == 24
    assert result['means'] == pytest.approx([state[k].mean().item() for k in result['keys']])
    # a ReLU checkpoint has no alphas: one-line error
    relu = osp.join(seg_sweep['work_dir'], 'relu', 'seed0', 'epoch_1.pth')
    one_line_error(tool('tools/plot.py', 'alphas', relu, str(tmp_path / 'none.png'), timeout=120), 'no SAU alphas')
    assert not osp.exists(tmp_path / 'none.png')


def test_plot_loss_curves_of_a_sweep(seg_sweep, tmp_path):
    from tools import plot
    train, _ = plot.read_mmengine_scalars(osp.join(seg_sweep['work_dir'], 'sau', 'seed0'))
    assert sorted(train) == [5]  # 1 epoch of 5 iterations, logged every 5
    result = plot.plot_curves(seg_sweep['work_dir'], str(tmp_path / 'curves.png'))
    assert result['runs'] == {'relu': ['seed0', 'seed1'], 'sau': ['seed0', 'seed1']}
    assert_png(result['out'])
    one_line_error(tool('tools/plot.py', 'curves', str(tmp_path / 'nothing'), str(tmp_path / 'c.png'), timeout=120),
                   'sweep folder not found')


FAIRSEQ_LOG = """\
2026-11-23 17:27:16,722 | INFO | train_inner | epoch 001:     50 / 219 loss=8.034, nll_loss=7.832, ppl=227.93, \
wps=6039.5, ups=3.28, wpb=1836.1, bsz=99.2, num_updates=50, lr=0.00250002, gnorm=1.392, train_wall=15, wall=17
2026-11-23 17:27:33,437 | INFO | train_inner | epoch 001:    100 / 219 loss=6.082, nll_loss=5.572, ppl=47.56, \
wps=5455.3, ups=2.99, wpb=1823.7, bsz=82.7, num_updates=100, lr=0.00232379, gnorm=1.071, train_wall=16, wall=34
2026-11-23 17:28:41,314 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 2.445 | nll_loss 1.198 | \
ppl 2.29 | wps 6302.2 | wpb 1257 | bsz 62.2 | num_updates 219
2026-11-23 17:28:41,425 | INFO | train | epoch 001 | loss 5.163 | nll_loss 4.477 | ppl 22.26 | wps 3998.4 | \
ups 2.19 | wpb 1826.6 | bsz 90.8 | num_updates 219 | lr 0.00157027 | gnorm 1.077 | train_wall 97 | wall 102
"""


def test_plot_reads_fairseq_training_logs(tmp_path):
    from tools import plot
    for act, scale in (('relu', 1.0), ('sau', 0.9)):
        run_dir = tmp_path / 'sweep' / act / 'seed0'
        run_dir.mkdir(parents=True)
        (run_dir / 'fairseq_train.log').write_text(FAIRSEQ_LOG.replace('loss=8.034', f'loss={8.034 * scale:.3f}'))
    train, val = plot.read_fairseq_log(str(tmp_path / 'sweep' / 'sau' / 'seed0' / 'fairseq_train.log'))
    assert train == {50: pytest.approx(8.034 * 0.9, abs=1e-3), 100: 6.082}
    assert val == {'valid loss': {219: 2.445}}
    out = str(tmp_path / 'curves.png')
    proc = tool('tools/plot.py', 'curves', str(tmp_path / 'sweep'), out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_png(out)


def test_published_fairseq_checkpoint_generates_the_same(tmp_path):
    """Train the tiny Transformer for a few updates, publish it, and compare fairseq-generate's output."""
    pytest.importorskip('fairseq')
    from tools.data import make_tiny_en_de, prepare_wmt14_en_de
    data = tmp_path / 'tiny_en_de'
    make_tiny_en_de.make_corpus(data / 'raw', n_train=300, n_valid=20, n_test=20, seed=3)
    prepare_wmt14_en_de.prepare(data, data / 'raw', bpe_tokens=200, workers=1, download=False)
    config = 'translation/configs/transformer_tiny_sau.py'
    options = ['--cfg-options', f'fairseq.data={data}/bin', f'fairseq.ref={data}/ref/test.de',
               'fairseq.train.max_update=5', 'fairseq.train.warmup_updates=2', 'fairseq.generate.beam=2']
    work_dir = tmp_path / 'work'
    proc = tool('tools/train.py', config, '--seed', '0', '--work-dir', str(work_dir), *options)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    src = work_dir / 'checkpoint_last.pt'
    proc = tool('tools/publish_checkpoint.py', str(src), str(tmp_path / 'released'), '--config', config)
    assert proc.returncode == 0, proc.stderr
    [name] = os.listdir(tmp_path / 'released')
    path = tmp_path / 'released' / name
    assert name == f'transformer_tiny_sau_{name[-21:-13]}-{publish_checkpoint.sha256sum(path)[:8]}.pth'
    published = torch.load(path, map_location='cpu', weights_only=False)
    assert 'last_optimizer_state' in torch.load(src, map_location='cpu', weights_only=False)
    assert 'last_optimizer_state' not in published and {'model', 'cfg'} <= set(published)

    outputs = []
    for checkpoint in (src, path):
        proc = tool('tools/eval.py', config, str(checkpoint), '--out', str(tmp_path / 'm.json'), *options)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        with open(tmp_path / 'm.json') as f:
            metrics = json.load(f)
        hyps = (checkpoint.parent / f'{checkpoint.stem}_generate' / 'generate-test.txt').read_text().splitlines()
        outputs.append(({k: metrics[k] for k in ('sacrebleu', 'tok_bleu_compound_split', 'sentences')},
                        sorted(line for line in hyps if line.startswith('H-'))))
    assert outputs[0][1] and outputs[0] == outputs[1]  # the same BLEU from the same hypotheses, word for word
