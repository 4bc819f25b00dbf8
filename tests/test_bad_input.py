"""Bad input, everywhere a user can give it: configs, flags, data on disk, checkpoints (issue 7).

Each case goes through ``tools/train.py``/``tools/eval.py`` (their ``run_main``, in this process so
that the file stays fast; two cases as real processes at the end) or runs ``tools/data/prepare_wmt14_en_de.py``
or ``tools/demo.py`` in a subprocess, and must end in exit status 1 (argparse's 2 for the demo) with one
``error: ...`` line naming the problem, and no traceback. Most fail in the checks before the model is built;
the few that can only show while a sample is loaded fail at the first batch of the tiny models.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tools.zoo import config  # noqa: I100  (first: it quiets mmengine's import-time warnings)

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
from tools import eval as eval_tool  # noqa: E402
from tools import train as train_tool  # noqa: E402
from tools.data import check_voc, make_tiny_cityscapes, make_tiny_voc  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

SEG = osp.join(REPO, 'segmentation', 'configs', 'unet-w8_sau_tiny-cityscapes.py')
DET = osp.join(REPO, 'detection', 'configs', 'ssd300-w0.125_sau_tinyvoc.py')
NMT = osp.join(REPO, 'translation', 'configs', 'transformer_tiny_sau.py')
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

pytestmark = pytest.mark.usefixtures('one_torch_thread')


from cli_cases import cli, mmengine_globals_restored, one_error_line  # noqa: E402,F401 (an autouse fixture)


def script(*argv, timeout=300):
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    return proc


def roots(root):
    return [f'{loader}.dataset.data_root={root}' for loader in LOADERS]


# ---------------------------------------------------------------- data fixtures (tiny, per test copies)

@pytest.fixture(scope='module')
def voc_template(tmp_path_factory):
    out = tmp_path_factory.mktemp('voc_template')
    make_tiny_voc.make_tiny_voc(str(out), trainval=4, test=2, seed=0)
    return out


@pytest.fixture
def voc(voc_template, tmp_path):
    """A fresh copy of the tiny VOC data; returns its VOC2007 folder."""
    shutil.copytree(voc_template, tmp_path / 'data')
    return tmp_path / 'data' / 'VOCdevkit' / 'VOC2007'


def det_argv(voc, tmp_path, *options):
    return [DET, '--work-dir', tmp_path / 'work', '--cfg-options', *roots(f'{voc.parent}/'),
            'train_cfg.max_iters=1', *options]


@pytest.fixture(scope='module')
def city_template(tmp_path_factory):
    out = tmp_path_factory.mktemp('city_template') / 'tiny_cityscapes'
    make_tiny_cityscapes.make_tiny_cityscapes(str(out), seed=0)
    return out


@pytest.fixture
def city(city_template, tmp_path):
    shutil.copytree(city_template, tmp_path / 'city')
    return tmp_path / 'city'


def seg_argv(root, tmp_path, *options):
    return [SEG, '--work-dir', tmp_path / 'work', '--cfg-options', *roots(root), 'train_cfg.max_epochs=1',
            'train_cfg.val_begin=2', *options]


def masks(root, split='train'):
    return sorted((root / 'gtFine' / split).rglob('*_labelTrainIds.png'))


def images(root, split='train'):
    return sorted((root / 'leftImg8bit' / split).rglob('*_leftImg8bit.png'))


@pytest.fixture(scope='module')
def fake_bin(tmp_path_factory):
    """A fairseq data folder that passes the runner's check (its two dictionaries); enough for every case
    that fails before fairseq reads data."""
    path = tmp_path_factory.mktemp('nmt_bin')
    for lang in ('en', 'de'):
        (path / f'dict.{lang}.txt').write_text('hallo 1\n')
    return path


def truncated_checkpoint(path, fairseq=True):
    """A checkpoint cut in half, as a kill during a (non-atomic) copy leaves it."""
    state = {'model': {'w': torch.ones(20000)}} if fairseq else {'state_dict': {'w': torch.ones(20000)}}
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


# ---------------------------------------------------------------- configs and flags

def _config_file(tmp_path, text):
    path = tmp_path / 'my_config.py'
    path.write_text(text)
    return path


TRAIN_CASES = [
    ('unknown --act', lambda t, c: [SEG, '--act', 'swishy'],
     "--act: unknown activation 'swishy'; choose one of: relu,"),
    ('act_cfg type typo via --cfg-options', lambda t, c: seg_argv(c, t, 'model.backbone.act_cfg.type=Sau'),
     "model.backbone.act_cfg: unknown activation type 'Sau' (not in the mmseg MODELS registry)"),
    ('act_cfg type typo in a config file', lambda t, c: [_config_file(
        t, f"_base_ = ['{SEG}']\nmodel = dict(decode_head=dict(act_cfg=dict(type='Swishy')))\n")],
     "model.decode_head.act_cfg: unknown activation type 'Swishy'"),
    ('unknown model type', lambda t, c: seg_argv(c, t, 'model.decode_head.type=FCNHeadd'),
     "unknown type 'FCNHeadd' in the config (not in the mmseg::model registry)"),
    ('not a config of the zoo', lambda t, c: [_config_file(t, 'lr = 0.1\n')], 'is not a config of this zoo'),
    ('config does not parse', lambda t, c: [_config_file(t, 'model = dict(\n')], 'cannot load config'),
    ('config file missing', lambda t, c: [t / 'none.py'], 'config file not found:'),
    ('wrong type: max_iters=abc', lambda t, c: [DET, '--cfg-options', 'train_cfg.max_iters=abc'],
     "--cfg-options train_cfg.max_iters='abc': expected a number, as the config has (train_cfg.max_iters=100)"),
    ('wrong type: lr=[1]', lambda t, c: [SEG, '--cfg-options', 'optim_wrapper.optimizer.lr=[1]'],
     '--cfg-options optim_wrapper.optimizer.lr=[1]: expected a number'),
    ('wrong type: batch_size=True', lambda t, c: [SEG, '--cfg-options', 'train_dataloader.batch_size=True'],
     '--cfg-options train_dataloader.batch_size=True: expected a number'),
    ('wrong type: milestones=5', lambda t, c: [DET, '--cfg-options', 'param_scheduler.1.milestones=5'],
     '--cfg-options param_scheduler.1.milestones=5: expected a list'),
    ('misspelt key: max_epochz=1', lambda t, c: seg_argv(c, t, 'train_cfg.max_epochz=1'),
     "EpochBasedTrainLoop takes no argument 'max_epochz': a typo in the config or --cfg-options?"),
    ('list index past the end', lambda t, c: [DET, '--cfg-options', 'param_scheduler.5.end=2'],
     "--cfg-options param_scheduler.5.end: index 5 is past the end of the config's list (2 items)"),
    ('dataset folder missing', lambda t, c: seg_argv(t / 'nowhere', t),
     'dataset path not found: ' + '{tmp}/nowhere'),
    ('--resume checkpoint missing', lambda t, c: [*seg_argv(c, t), '--resume', t / 'none.pth'],
     '--resume: checkpoint not found: {tmp}/none.pth'),
]


@pytest.mark.parametrize('case, argv, expected', TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_config_and_flags(case, argv, expected, tmp_path, city, capsys):
    line = cli(train_tool, argv(tmp_path, city), capsys)
    assert expected.replace('{tmp}', str(tmp_path)) in line, line


EVAL_CASES = [
    ('checkpoint missing', lambda t, c: [SEG, t / 'none.pth'], 'checkpoint not found: {tmp}/none.pth'),
    ('truncated checkpoint', lambda t, c: [SEG, truncated_checkpoint(t / 'cut.pth', fairseq=False),
                                           '--work-dir', t / 'work', '--cfg-options', *roots(c)],
     'cannot read checkpoint {tmp}/cut.pth'),
    ('unknown --act', lambda t, c: [SEG, truncated_checkpoint(t / 'cut.pth'), '--act', 'tanh'],
     "--act: unknown activation 'tanh'"),
    ('wrong type in --cfg-options', lambda t, c: [DET, t, '--cfg-options', 'test_dataloader.batch_size=[8]'],
     '--cfg-options test_dataloader.batch_size=[8]: expected a number'),
]


@pytest.mark.parametrize('case, argv, expected', EVAL_CASES, ids=[c[0] for c in EVAL_CASES])
def test_eval_config_and_flags(case, argv, expected, tmp_path, city, capsys):
    line = cli(eval_tool, argv(tmp_path, city), capsys)
    assert expected.replace('{tmp}', str(tmp_path)) in line, line


def test_unknown_task_of_the_demo_is_one_argparse_line():
    proc = script('tools/demo.py', 'nosuchtask', timeout=120)
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr  # argparse's convention: usage, then error
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "error: unknown task 'nosuchtask'; choose from detection, segmentation, translation")


# ---------------------------------------------------------------- detection data (VOC format)

def _xml(voc, img_id='000000'):
    return voc / 'Annotations' / f'{img_id}.xml'


def _set_box(voc, xmin, ymin, xmax, ymax):
    path = _xml(voc)
    text = path.read_text()
    start, end = text.index('<bndbox>'), text.index('</bndbox>')
    box = ''.join(f'<{k}>{v}</{k}>' for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), (xmin, ymin, xmax, ymax)))
    path.write_text(text[:start] + f'<bndbox>{box}' + text[end:])


def _jpeg(voc, img_id='000000'):
    return voc / 'JPEGImages' / f'{img_id}.jpg'


def _strip_objects(path):
    text = path.read_text()
    while '<object>' in text:
        text = text[:text.index('<object>')] + text[text.index('</object>') + len('</object>'):]
    path.write_text(text)


VOC_CASES = {
    'image missing': (lambda v: _jpeg(v).unlink(), 'VOC2007/ImageSets/Main/trainval.txt: 1 of 4 images missing '
                                                   'in {voc} (e.g. JPEGImages/000000.jpg)'),
    'annotation missing': (lambda v: _xml(v, '000005').unlink(),
                           'test.txt: 1 of 2 annotations missing in {voc} (e.g. Annotations/000005.xml) '
                           '(needed by val_dataloader)'),
    'image not a JPEG': (lambda v: _jpeg(v).write_bytes(b'<html>404 Not Found</html>'),
                         "1 of 4 images cannot be decoded in {voc} (e.g. JPEGImages/000000.jpg is not a JPEG file"),
    'image truncated': (lambda v: _jpeg(v).write_bytes(_jpeg(v).read_bytes()[:5000]),
                        '1 of 4 images cannot be decoded in {voc} (e.g. JPEGImages/000000.jpg is a truncated JPEG'),
    'image empty': (lambda v: _jpeg(v).write_bytes(b''), 'JPEGImages/000000.jpg is empty'),
    'XML does not parse': (lambda v: _xml(v).write_text(_xml(v).read_text()[:200]),
                           '1 of 4 annotations do not parse in {voc} (e.g. Annotations/000000.xml: '),
    'XML box not a number': (lambda v: _set_box(v, 'ten', 5, 50, 60),
                             "Annotations/000000.xml: object 'bottle' has a non-numeric or missing box coordinate"),
    'box outside the image': (lambda v: _set_box(v, 10, 5, 2000, 60),
                              'objects have a box outside their image or an empty box in {voc} (e.g. '
                              'Annotations/000000.xml: bottle xmin 10 ymin 5 xmax 2000 ymax 60 in a 289x297 image)'),
    'box negative': (lambda v: _set_box(v, -30, 5, 40, 60), 'xmin -30 ymin 5 xmax 40 ymax 60'),
    'box empty (xmax < xmin)': (lambda v: _set_box(v, 50, 5, 40, 60), 'have a box outside their image or an empty box'),
    'unknown class': (lambda v: _xml(v).write_text(_xml(v).read_text().replace('tvmonitor', 'tv', 1)),
                      "objects in {voc} are of a class the dataset does not have (e.g. Annotations/000000.xml: 'tv'); "
                      'MMDetection would drop them silently'),
    'no object in any training image': (
        lambda v: [_strip_objects(_xml(v, f'00000{i}')) for i in range(4)],
        'trainval.txt: none of the 4 images has an object: nothing to train on'),
    'empty image list': (lambda v: (v / 'ImageSets' / 'Main' / 'test.txt').write_text(''),
                         'VOC2007/ImageSets/Main/test.txt: the image list is empty (needed by val_dataloader)'),
}


@pytest.mark.parametrize('case', list(VOC_CASES))
def test_voc_data_is_checked_before_training(case, voc, tmp_path, capsys):
    break_it, expected = VOC_CASES[case]
    break_it(voc)
    line = cli(train_tool, det_argv(voc, tmp_path), capsys)
    assert expected.replace('{voc}', str(voc)) in line, line
    assert 'make_tiny_voc.py' in line  # the config's data_prepare_hint
    assert not (tmp_path / 'work').exists() or not list((tmp_path / 'work').rglob('*.pth'))


def test_voc_data_is_checked_before_evaluation(voc, tmp_path, capsys):
    (voc / 'Annotations' / '000004.xml').write_text('<annotation>')
    line = cli(eval_tool, [DET, truncated_checkpoint(tmp_path / 'x.pth', fairseq=False), '--cfg-options',
                           *roots(f'{voc.parent}/')], capsys)
    assert 'test.txt: 1 of 2 annotations do not parse' in line and '(needed by test_dataloader)' in line


def test_voc_images_without_objects_are_a_logged_skip_in_training(voc, tmp_path, capsys):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    _strip_objects(_xml(voc, '000001'))
    _strip_objects(_xml(voc, '000004'))
    cfg = config.load_config(DET)
    cfg.merge_from_dict(dict(o.split('=') for o in roots(f'{voc.parent}/')))
    init_default_scope('mmdet')
    capsys.readouterr()
    for loader in ('train_dataloader', 'test_dataloader'):  # no error: a note each
        DATASETS.build(cfg[loader].dataset)
    out = capsys.readouterr().out
    assert ('note: ' + str(voc.parent) + '/VOC2007/ImageSets/Main/trainval.txt: 1 of 4 images have no object '
            '(MMDetection skips them in training (filter_empty_gt)), e.g. Annotations/000001.xml') in out
    assert 'test.txt: 1 of 2 images have no object (they can only hold false positives)' in out
    # the full checker reports the same split by split
    problems, notes = check_voc.check_voc(str(voc.parent), years=('2007',))
    assert problems == [] and any('1 of 4 images have no object' in n for n in notes)


def test_jpeg_that_does_not_decode_stops_training_with_its_name(voc, tmp_path, capsys):
    """A file with JPEG markers at both ends but garbage between passes the cheap check; MMCV's decoder
    returns None for it at the first batch."""
    for jpeg in (voc / 'JPEGImages').glob('*.jpg'):
        jpeg.write_bytes(b'\xff\xd8\xff' + b'\x00' * 2000 + b'\xff\xd9')
    line = cli(train_tool, det_argv(voc, tmp_path), capsys)
    assert line.startswith(f'error: image {voc}/JPEGImages/')
    assert line.endswith('.jpg does not decode (a corrupt file?)')


# ---------------------------------------------------------------- segmentation data (Cityscapes format)

def _paint(paths, value, rows=slice(0, 1)):
    for path in paths:
        seg = np.asarray(Image.open(path)).copy()
        seg[rows] = value
        Image.fromarray(seg).save(path)


def _resize(paths):
    for path in paths:
        Image.fromarray(np.asarray(Image.open(path))[:32]).save(path)


def _corrupt_middle(path):
    """Break the compressed pixel data (its zlib header) and keep the PNG's first and last bytes."""
    data = bytearray(path.read_bytes())
    start = data.index(b'IDAT') + 4
    data[start:start + 2] = b'\xff\xff'
    path.write_bytes(bytes(data))


SEG_CASES = {
    'mask holds a raw label id': (lambda r: _paint(masks(r), 33),
                                  'holds values [33] (128 pixels); allowed are train ids 0..18 and 255'),
    'mask of another size than its image': (lambda r: _resize(masks(r)),
                                            'image/mask pairing mismatch: mask '),
    'mask without image': (lambda r: images(r)[0].unlink(),
                           'image/mask pairing mismatch: 1 masks under'),
    'image without mask': (lambda r: masks(r)[0].unlink(), '1 of 18 images under'),
    'image not a PNG': (lambda r: images(r)[0].write_bytes(b'\xff\xd8\xff\xe0 a JPEG named .png'),
                        "1 image/mask files under '{root}' cannot be decoded: {image0} is not a PNG file"),
    'mask truncated': (lambda r: masks(r)[0].write_bytes(masks(r)[0].read_bytes()[:300]),
                       "cannot be decoded: {mask0} is a truncated PNG file (no end marker; 300 bytes)"),
    'mask corrupt between intact ends': (lambda r: [_corrupt_middle(m) for m in masks(r)],
                                         '_gtFine_labelTrainIds.png does not decode (OSError: broken data stream '
                                         'when reading image file); a corrupt file?'),
    'image corrupt between intact ends': (lambda r: [_corrupt_middle(m) for m in images(r)],
                                          '_leftImg8bit.png does not decode (a corrupt file?)'),
    'image folder missing': (lambda r: shutil.rmtree(r / 'leftImg8bit' / 'train'),
                             'dataset path not found: {root}/leftImg8bit/train (needed by train_dataloader)'),
}


@pytest.mark.parametrize('case', list(SEG_CASES))
def test_cityscapes_data_errors_name_the_file(case, city, tmp_path, capsys):
    break_it, expected = SEG_CASES[case]
    expected = expected.format(root=city, image0=images(city)[0], mask0=masks(city)[0])
    break_it(city)
    line = cli(train_tool, seg_argv(city, tmp_path), capsys)
    assert expected in line, line
    assert not list(tmp_path.rglob('*.pth'))


# ---------------------------------------------------------------- translation: text, options, checkpoints

def _write_pairs(raw, split, en, de):
    raw.mkdir(parents=True, exist_ok=True)
    (raw / f'{split}.en').write_text(''.join(line + '\n' for line in en))
    (raw / f'{split}.de').write_text(''.join(line + '\n' for line in de))


GOOD = (['The dog sees the cat .'] * 30, ['Der Hund sieht die Katze .'] * 30)
TEXT_CASES = {
    'different line counts': (dict(train=(GOOD[0], GOOD[1][:-1])),
                              'train: 30 en lines but 29 de lines in {raw}: the two sides of a parallel corpus'),
    'empty files': (dict(train=([], [])), 'train: no sentences in {raw} (train.en/train.de empty or blank)'),
    'blank target side': (dict(test=(GOOD[0][:3], ['', '', ''])), 'test: no sentences in {raw}'),
    'every pair removed by cleaning': (dict(train=(GOOD[0], ['Ja'] * 30)),
                                       'train: no sentence pair left after cleaning'),
}


@pytest.mark.parametrize('case', list(TEXT_CASES))
def test_parallel_text_that_does_not_pair_up(case, tmp_path):
    pytest.importorskip('sacremoses')
    splits, expected = TEXT_CASES[case]
    raw = tmp_path / 'raw'
    for split in ('train', 'valid', 'test'):
        _write_pairs(raw, split, *splits.get(split, GOOD))
    proc = script('tools/data/prepare_wmt14_en_de.py', '--out', tmp_path / 'out', '--raw-dir', raw,
                  '--bpe-tokens', '20', '--workers', '1', '--no-download', timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert expected.format(raw=raw) in proc.stderr.strip().splitlines()[-1], proc.stderr
    assert not (tmp_path / 'out' / 'bin').exists()


def nmt_argv(fake_bin, work_dir, *extra):
    return [NMT, '--work-dir', work_dir, '--cfg-options', f'fairseq.data={fake_bin}', *extra]


@pytest.mark.parametrize('case', ['truncated checkpoint_last.pt, --resume', 'truncated --resume PATH',
                                  'foreign --resume PATH', 'missing --resume PATH', 'run exists, no --resume'])
def test_translation_resume_checkpoints(case, fake_bin, tmp_path, capsys):
    pytest.importorskip('fairseq')
    work = tmp_path / 'work'
    work.mkdir()
    last = work / 'checkpoint_last.pt'
    if case == 'truncated checkpoint_last.pt, --resume':
        argv, expected = [*nmt_argv(fake_bin, work), '--resume'], f'cannot read checkpoint {last}: '
        truncated_checkpoint(last)
    elif case == 'truncated --resume PATH':
        path = truncated_checkpoint(tmp_path / 'checkpoint7.pt')
        argv, expected = [*nmt_argv(fake_bin, work), '--resume', path], f'cannot read checkpoint {path}: '
    elif case == 'foreign --resume PATH':
        path = tmp_path / 'mm.pth'
        torch.save({'state_dict': {}}, path)
        argv, expected = [*nmt_argv(fake_bin, work), '--resume', path], \
            f'cannot read checkpoint {path}: not a fairseq checkpoint (no model entry)'
    elif case == 'missing --resume PATH':
        argv, expected = [*nmt_argv(fake_bin, work), '--resume', tmp_path / 'no.pt'], \
            f'--resume: checkpoint not found: {tmp_path}/no.pt'
    else:
        torch.save({'model': {}}, last)
        argv, expected = nmt_argv(fake_bin, work), f'{last} exists: pass --resume to continue that run'
    line = cli(train_tool, argv, capsys)
    assert expected in line, line


NMT_OPTION_CASES = [
    ('unknown --act', ['--act', 'swishy'], "argument --activation-fn: invalid choice: 'swishy' (choose from 'relu'"),
    ('unknown fairseq option', ['fairseq.train.max_epochz=3'], 'unrecognized arguments: --max-epochz 3'),
    ('wrong type', ['fairseq.train.max_update=abc'],
     "--cfg-options fairseq.train.max_update='abc': expected a number, as the config has "
     '(fairseq.train.max_update=300)'),
    ('data folder missing', ['fairseq.data=/nonexistent/bin'],
     'fairseq data directory /nonexistent/bin not found or not binarized'),
]


@pytest.mark.parametrize('case, extra, expected', NMT_OPTION_CASES, ids=[c[0] for c in NMT_OPTION_CASES])
def test_translation_options(case, extra, expected, fake_bin, tmp_path, capsys):
    pytest.importorskip('fairseq')
    argv = [NMT, '--work-dir', tmp_path / 'work', '--cfg-options', f'fairseq.data={fake_bin}']
    if extra[0].startswith('--'):
        argv = [*argv[:3], *extra, *argv[3:]]
    else:
        argv += extra
    line = cli(train_tool, argv, capsys)
    assert expected in line, line
    assert "fairseq rejects the config's options: " in line or 'fairseq' not in case


def test_translation_eval_of_a_truncated_checkpoint(fake_bin, tmp_path, capsys):
    pytest.importorskip('fairseq')
    path = truncated_checkpoint(tmp_path / 'checkpoint_best.pt')
    line = cli(eval_tool, [NMT, path, '--cfg-options', f'fairseq.data={fake_bin}'], capsys)
    assert f'cannot read checkpoint {path}: ' in line


# ---------------------------------------------------------------- the same, as real processes

def test_processes_exit_1_with_one_line(city, fake_bin, tmp_path):
    """End to end: a data error raised while loading a sample (in the DataLoader loop; here 19, one past
    the last train id) and the translation resume from a truncated checkpoint, as in-process above."""
    _paint(masks(city), 19)
    proc = script('tools/train.py', *seg_argv(city, tmp_path))
    line = one_error_line(proc.returncode, proc.stderr)
    assert '_gtFine_labelTrainIds.png holds values [19] (128 pixels)' in line
    assert 'tools/data/prepare_cityscapes.py' in line

    work = tmp_path / 'nmt'
    work.mkdir()
    truncated_checkpoint(work / 'checkpoint_last.pt')
    proc = script('tools/train.py', *nmt_argv(fake_bin, work), '--resume')
    line = one_error_line(proc.returncode, proc.stderr)
    assert line.startswith(f'error: cannot read checkpoint {work}/checkpoint_last.pt: ')
