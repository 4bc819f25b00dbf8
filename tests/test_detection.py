"""Detection: SSD300-VGG16-BN with SAU through MMDetection (configs, modules, tools, data).

CPU only, seeded. The tiny VOC data is generated once per session under pytest's tmp dir; one short
training run of the reduced-width tiny config is shared by the tests that need a trained model.
"""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from torch import nn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'detection', 'configs')
SAU_FULL = osp.join(CONFIGS, 'ssd300_sau.py')
RELU_FULL = osp.join(CONFIGS, 'ssd300_relu.py')
SAU_TINY = osp.join(CONFIGS, 'ssd300-w0.125_sau_tinyvoc.py')
RELU_TINY = osp.join(CONFIGS, 'ssd300-w0.125_relu_tinyvoc.py')

from tools.zoo.config import apply_act, replace_act_cfgs  # noqa: E402  (first: it quiets mmengine's warnings)
from tools.zoo.errors import run_main  # noqa: E402

pytest.importorskip('mmdet')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import detection.models  # noqa: E402,F401
import sau_core  # noqa: E402
import sau_core.mm  # noqa: E402,F401
from detection.models import SSDHeadWithLossCls, SSDVGGBN  # noqa: E402
from mmdet.models.backbones import SSDVGG  # noqa: E402
from mmdet.models.dense_heads import SSDHead  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from tools import eval as eval_tool  # noqa: E402
from tools import train as train_tool  # noqa: E402
from tools.data import check_voc, make_tiny_voc  # noqa: E402

NUM_ACTS = 15 + 8  # VGG16 (13 convs + fc6 + fc7) and SSDNeck's 4 extra levels x 2 convs
TRAIN_ITERS = 10


@pytest.fixture(autouse=True)
def _mmdet_scope():
    init_default_scope('mmdet')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='session')
def tiny_voc(tmp_path_factory):
    """The generated tiny data (24 trainval, 12 test images); returns the VOCdevkit directory."""
    out = tmp_path_factory.mktemp('tiny_voc')
    make_tiny_voc.make_tiny_voc(str(out), trainval=24, test=12, seed=0)
    return str(out / 'VOCdevkit') + '/'


def data_options(root):
    return [f'{loader}.dataset.data_root={root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def build_model(config, act=None, **backbone):
    cfg = Config.fromfile(config)
    if act:
        apply_act(cfg, act)
    cfg.model.backbone.update(backbone)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


# ---- configs and modules ---------------------------------------------------------------------

def test_sau_config_has_sau_everywhere_and_no_relu():
    model = build_model(SAU_FULL)
    assert count(model, sau_core.SAU) == NUM_ACTS
    assert count(model.backbone, sau_core.SAU) == 15
    assert count(model, nn.ReLU) == 0
    assert count(model.backbone, nn.BatchNorm2d) == 15
    alphas = [k for k in model.state_dict() if k.endswith('activate.alpha')]
    assert len(alphas) == NUM_ACTS


def test_relu_config_has_relu_and_no_sau():
    model = build_model(RELU_FULL)
    assert count(model, nn.ReLU) == NUM_ACTS
    assert count(model, sau_core.SAU) == 0
    assert count(model.backbone, nn.BatchNorm2d) == 15


def test_recipe_of_the_paper():
    cfg = Config.fromfile(SAU_FULL)
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 120000
    assert cfg.model.backbone.get('init_cfg') is None  # from scratch: no vgg16_caffe download
    assert [d.ann_file for d in cfg.train_dataloader.dataset.datasets] == [
        'VOC2007/ImageSets/Main/trainval.txt', 'VOC2012/ImageSets/Main/trainval.txt']
    assert cfg.test_dataloader.dataset.ann_file == 'VOC2007/ImageSets/Main/test.txt'
    assert [(m.type, m.get('eval_mode')) for m in cfg.test_evaluator] == [
        ('VOCMetric', '11points'), ('VOCMetric', 'area'), ('CocoMetric', None)]
    assert cfg.custom_imports.imports == ['sau_core.mm', 'detection.models']


@pytest.mark.parametrize('name', list(sau_core.ACT_CFGS))
def test_act_option_replaces_every_activation(name):
    model = build_model(SAU_TINY, act=name)
    expected = MODELS.get(sau_core.act_cfg(name)['type'])
    acts = [m for m in model.modules() if type(m) is expected]
    assert len(acts) == NUM_ACTS
    if not issubclass(expected, sau_core.SAU):  # a baseline leaves no SAU behind; SAU's ablations are SAUs
        assert count(model, sau_core.SAU) == 0
    for key, value in sau_core.act_cfg(name).items():  # e.g. sau_n2's n, prelu_shared_0.15's init
        if key != 'type' and hasattr(acts[0], key):
            assert all(float(getattr(m, key)) == value for m in acts), key
    if name == 'leaky_relu':
        assert all(m.negative_slope == 0.01 for m in acts)


def test_replace_act_cfgs_keeps_none_and_walks_lists():
    tree = dict(a=dict(act_cfg=dict(type='ReLU')), b=[dict(act_cfg=None), dict(c=dict(act_cfg=dict(type='ELU')))])
    assert replace_act_cfgs(tree, dict(type='SAU')) == 2
    assert tree['a']['act_cfg'] == dict(type='SAU') and tree['b'][0]['act_cfg'] is None
    assert tree['b'][1]['c']['act_cfg'] == dict(type='SAU')


def test_backbone_is_ssdvgg_with_batchnorm():
    """Same convolutions as mmdet's SSDVGG (VGG16 + fc6/fc7), each followed by BN and act_cfg."""
    ours = SSDVGGBN(act_cfg=dict(type='SAU'))
    theirs = SSDVGG(depth=16, init_cfg=None)
    shapes = lambda m: [tuple(c.weight.shape) for c in m.modules() if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert shapes(ours) == shapes(theirs)
    dilations = [c.dilation for c in ours.modules() if isinstance(c, nn.Conv2d)]
    assert dilations == [c.dilation for c in theirs.modules() if isinstance(c, nn.Conv2d)]
    small = SSDVGGBN(base_channels=8).eval()
    with torch.no_grad():
        outs = small(torch.randn(1, 3, 300, 300))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 38, 38), (1, 128, 19, 19)]
    assert small.out_channels == (64, 128)


def test_ssd_head_fix_allows_prediction():
    # the mmdet 3.3.0 bug this works around; when this fails, mmdet has fixed it: drop SSDHeadWithLossCls
    head_cfg = Config.fromfile(SAU_TINY).model.bbox_head
    head_cfg.pop('type')
    plain = SSDHead(**head_cfg)
    assert not hasattr(plain, 'loss_cls')
    head = SSDHeadWithLossCls(**head_cfg)
    assert head.loss_cls.use_sigmoid is False
    assert set(head.state_dict()) == set(plain.state_dict())  # checkpoints are interchangeable
    model = build_model(SAU_TINY).eval()
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(300, 300), ori_shape=(300, 300), scale_factor=(1., 1.)))
    with torch.no_grad():
        (result,) = model.predict(torch.randn(1, 3, 300, 300), [sample])
    assert result.pred_instances.bboxes.shape[1] == 4
    assert len(result.pred_instances.scores) > 0


# ---- data --------------------------------------------------------------------------------------

def test_tiny_voc_is_deterministic_and_voc_shaped(tmp_path):
    a = make_tiny_voc.make_tiny_voc(str(tmp_path / 'a'), trainval=3, test=2, seed=5)
    b = make_tiny_voc.make_tiny_voc(str(tmp_path / 'b'), trainval=3, test=2, seed=5)
    for rel in ('JPEGImages/000004.jpg', 'Annotations/000000.xml', 'ImageSets/Main/test.txt'):
        with open(osp.join(a, rel), 'rb') as fa, open(osp.join(b, rel), 'rb') as fb:
            assert fa.read() == fb.read()
    with open(osp.join(a, 'ImageSets/Main/trainval.txt')) as f:
        assert f.read().split() == ['000000', '000001', '000002']
    from mmdet.datasets import VOCDataset
    ds = VOCDataset(data_root=osp.dirname(a) + '/', ann_file='VOC2007/ImageSets/Main/trainval.txt',
                    data_prefix=dict(sub_data_root='VOC2007/'), pipeline=[])
    info = ds.get_data_info(0)
    names = {VOCDataset.METAINFO['classes'][i['bbox_label']] for j in range(len(ds))
             for i in ds.get_data_info(j)['instances']}
    assert names <= set(make_tiny_voc.CLASSES) and info['instances']
    x0, y0, x1, y1 = info['instances'][0]['bbox']
    assert 0 <= x0 < x1 <= info['width'] and 0 <= y0 < y1 <= info['height']


def test_checked_voc_dataset_reads_what_mmdet_reads(tiny_voc):
    """The configs' CheckedVOCDataset parses each annotation once, for its checks and for the data list, which
    is mmdet's VOCDataset's, key for key (filtering and test mode included)."""
    from detection.datasets import CheckedVOCDataset
    from mmdet.datasets import VOCDataset
    for split, kwargs in (('trainval', dict(filter_cfg=dict(filter_empty_gt=True, min_size=32))),
                          ('test', dict(test_mode=True))):
        args = dict(data_root=tiny_voc, ann_file=f'VOC2007/ImageSets/Main/{split}.txt',
                    data_prefix=dict(sub_data_root='VOC2007/'), pipeline=[], **kwargs)
        checked, plain = CheckedVOCDataset(**args), VOCDataset(**args)
        assert len(checked) == len(plain) > 0 and checked.metainfo == plain.metainfo
        assert [checked.get_data_info(i) for i in range(len(checked))] == \
            [plain.get_data_info(i) for i in range(len(plain))]
    assert CheckedVOCDataset.METAINFO['classes'] == VOCDataset.METAINFO['classes']  # MMDetection's 20 classes


def test_check_voc_names_what_is_missing(tiny_voc):
    problems, _ = check_voc.check_voc(tiny_voc, years=('2007',))
    assert problems == []
    problems, _ = check_voc.check_voc(tiny_voc, years=('2007', '2012'))
    assert len(problems) == 1 and 'VOC2012 missing' in problems[0] and 'VOCtrainval_11-May-2012.tar' in problems[0]


def test_check_voc_counts_missing_images(tmp_path):
    voc = make_tiny_voc.make_tiny_voc(str(tmp_path), trainval=3, test=1, seed=0)
    import os
    os.remove(osp.join(voc, 'JPEGImages', '000001.jpg'))
    problems, _ = check_voc.check_voc(osp.dirname(voc), years=('2007',))
    assert problems == [f'VOC2007 trainval: 1 of 3 images missing in {voc} (e.g. JPEGImages/000001.jpg)']
    assert check_voc.main([osp.dirname(voc), '--years', '2007']) == 1


# ---- training, checkpoint, evaluation (one shared run) -----------------------------------------

@pytest.fixture(scope='module')
def trained(tiny_voc, tmp_path_factory):
    """Train the tiny SAU config for a few iterations; returns (work_dir, per-iteration logs)."""
    work_dir = str(tmp_path_factory.mktemp('det_train'))
    rc = train_tool.main([
        SAU_TINY, '--work-dir', work_dir, '--seed', '0', '--cfg-options', *data_options(tiny_voc),
        'train_dataloader.batch_size=4', f'train_cfg.max_iters={TRAIN_ITERS}',
        f'train_cfg.val_interval={TRAIN_ITERS}', 'param_scheduler.0.end=2', 'param_scheduler.1.milestones=[1000]',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1'])
    assert rc == 0
    (scalars,) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(scalars) as f:
        logs = [json.loads(line) for line in f]
    return work_dir, logs


def test_training_lowers_the_loss(trained):
    _, logs = trained
    losses = [r['loss'] for r in logs if 'loss' in r]
    assert len(losses) == TRAIN_ITERS
    assert all(torch.isfinite(torch.tensor(losses)))
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.85 * first, losses


def test_checkpoint_holds_learned_sau_alphas(trained):
    work_dir, _ = trained
    ckpt = torch.load(osp.join(work_dir, f'iter_{TRAIN_ITERS}.pth'), map_location='cpu', weights_only=False)
    alphas = {k: v for k, v in ckpt['state_dict'].items() if k.endswith('activate.alpha')}
    assert len(alphas) == NUM_ACTS
    assert any(abs(v.item() - 0.15) > 1e-4 for v in alphas.values())  # trained, not the initial value
    assert 'optimizer' in ckpt and ckpt['meta']['iter'] == TRAIN_ITERS


def test_eval_reloads_checkpoint_and_reproduces_validation_map(trained, tiny_voc, tmp_path):
    work_dir, logs = trained
    (val,) = [r for r in logs if 'pascal_voc/mAP' in r]
    assert val['pascal_voc/mAP'] > 0  # 10 iterations already find a few boxes (seeded run)
    out = str(tmp_path / 'metrics.json')
    assert eval_tool.main([SAU_TINY, osp.join(work_dir, f'iter_{TRAIN_ITERS}.pth'), '--out', out,
                           '--work-dir', str(tmp_path), '--cfg-options', *data_options(tiny_voc)]) == 0
    with open(out) as f:
        metrics = json.load(f)
    assert {'pascal_voc/mAP', 'pascal_voc/AP50', 'pascal_voc_area/mAP', 'coco/bbox_mAP'} <= set(metrics)
    # pycocotools reports -1 for an area range without ground truth (no small objects here)
    assert all(0.0 <= v <= 1.0 or (k.startswith('coco/') and v == -1) for k, v in metrics.items())
    # the in-memory model at the end of training and the saved-and-reloaded one give the same mAP
    assert metrics['pascal_voc/mAP'] == pytest.approx(val['pascal_voc/mAP'], abs=1e-6)
    assert metrics['pascal_voc_area/mAP'] == pytest.approx(val['pascal_voc_area/mAP'], abs=1e-6)
    assert metrics['coco/bbox_mAP'] == pytest.approx(val['coco/bbox_mAP'], abs=1e-6)


def test_eval_writes_metrics_next_to_checkpoint(trained, tiny_voc, tmp_path, capsys):
    work_dir, _ = trained
    ckpt = tmp_path / 'copy.pth'
    ckpt.write_bytes(open(osp.join(work_dir, f'iter_{TRAIN_ITERS}.pth'), 'rb').read())
    assert eval_tool.main([SAU_TINY, str(ckpt), '--work-dir', str(tmp_path),
                           '--cfg-options', *data_options(tiny_voc)]) == 0
    assert osp.isfile(str(ckpt) + '.metrics.json')
    assert 'pascal_voc/mAP' in capsys.readouterr().out


# ---- bad input: one clear line, exit status 1 ------------------------------------------------

def run_cli(tool, argv, capsys):
    rc = run_main(tool.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_missing_config(capsys):
    rc, err = run_cli(train_tool, ['no/such/config.py'], capsys)
    assert rc == 1 and err == ['error: config file not found: no/such/config.py']


def test_unknown_activation(capsys, tiny_voc):
    rc, err = run_cli(train_tool, [SAU_TINY, '--act', 'swishy'], capsys)
    assert rc == 1 and len(err) == 1
    assert "unknown activation 'swishy'" in err[0] and 'relu, swish' in err[0]


def test_missing_dataset_says_how_to_make_it(capsys, tmp_path):
    rc, err = run_cli(train_tool, [SAU_TINY, '--work-dir', str(tmp_path), '--cfg-options',
                                   *data_options(str(tmp_path / 'nowhere') + '/')], capsys)
    assert rc == 1 and len(err) == 1
    assert 'dataset path not found' in err[0] and 'python tools/data/make_tiny_voc.py' in err[0]


def test_incomplete_dataset_names_the_missing_file(capsys, tmp_path):
    voc = make_tiny_voc.make_tiny_voc(str(tmp_path), trainval=2, test=1, seed=0)
    import os
    os.remove(osp.join(voc, 'ImageSets', 'Main', 'trainval.txt'))
    rc, err = run_cli(train_tool, [SAU_TINY, '--work-dir', str(tmp_path / 'w'), '--cfg-options',
                                   *data_options(osp.dirname(voc) + '/')], capsys)
    assert rc == 1 and len(err) == 1
    assert 'VOC2007/ImageSets/Main/trainval.txt' in err[0]


def test_full_config_without_voc_points_to_checker(capsys, tmp_path):
    rc, err = run_cli(train_tool, [SAU_FULL, '--work-dir', str(tmp_path), '--cfg-options',
                                   *data_options(str(tmp_path / 'VOCdevkit') + '/')], capsys)
    assert rc == 1 and len(err) == 1 and 'tools/data/check_voc.py' in err[0]


def test_missing_checkpoint(capsys):
    rc, err = run_cli(eval_tool, [SAU_TINY, 'no/such.pth'], capsys)
    assert rc == 1 and err == ['error: checkpoint not found: no/such.pth']


def test_checkpoint_of_another_model(capsys, tiny_voc, tmp_path):
    relu = build_model(RELU_TINY)
    path = str(tmp_path / 'relu.pth')
    torch.save(dict(state_dict=relu.state_dict(), meta=dict()), path)
    rc, err = run_cli(eval_tool, [SAU_TINY, path, '--work-dir', str(tmp_path),
                                  '--cfg-options', *data_options(tiny_voc)], capsys)
    assert rc == 1 and len(err) == 1
    assert 'does not fit' in err[0] and 'missing' in err[0] and 'activate.alpha' in err[0]
    assert not osp.exists(path + '.metrics.json')


def test_script_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, osp.join(REPO, 'tools', 'eval.py'), SAU_TINY, 'missing.pth'],
                          capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines() == ['error: checkpoint not found: missing.pth']
