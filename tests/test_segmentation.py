"""Segmentation: U-Net/FCN on Cityscapes with SAU through MMSegmentation (configs, data checks, metric, tools).

CPU only, seeded; the one training run (the tiny config, ~1 minute on 2 shared cores) is shared by the
tests that need a trained model. Data is generated per session under pytest's tmp dir.
"""
import copy
import functools
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, 'segmentation', 'configs')
SAU_FULL = osp.join(CONFIGS, 'unet_sau_cityscapes.py')
RELU_FULL = osp.join(CONFIGS, 'unet_relu_cityscapes.py')
SAU_TINY = osp.join(CONFIGS, 'unet-w8_sau_tiny-cityscapes.py')

pytest.importorskip('mmseg')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402

import segmentation.sau_seg  # noqa: E402,F401  (registers the dataset, transform and metric)
import sau_core  # noqa: E402
import sau_core.mm  # noqa: E402,F401
from mmseg.datasets import CityscapesDataset  # noqa: E402
from mmseg.registry import DATASETS, MODELS  # noqa: E402
from mmseg.structures import SegDataSample  # noqa: E402
from tools.data import make_tiny_cityscapes, prepare_cityscapes  # noqa: E402

CLASSES = CityscapesDataset.METAINFO['classes']
ACT_TYPES = {'ReLU', 'SiLU', 'LeakyReLU', 'ELU', 'Softplus', 'GELU', 'PReLU', 'ReLU6', 'SAU', 'PerChannelSAU'}
LEAF_CONFIGS = sorted(f for f in os.listdir(CONFIGS) if f.endswith('.py'))


@pytest.fixture(autouse=True)
def _mmseg_scope():
    init_default_scope('mmseg')


pytestmark = pytest.mark.usefixtures('one_torch_thread')


@pytest.fixture(scope='session')
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('seg') / 'tiny_cityscapes')
    make_tiny_cityscapes.make_tiny_cityscapes(root, seed=0)
    return root


@functools.lru_cache(maxsize=None)
def _load(path):
    return Config.fromfile(path)


def tiny_cfg(root, work_dir=None, **options):
    cfg = copy.deepcopy(_load(SAU_TINY))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = root
    cfg.work_dir = str(work_dir) if work_dir else None
    cfg.randomness = dict(seed=0, deterministic=False)
    cfg.default_hooks.visualization = dict(type='SegVisualizationHook', draw=False)
    cfg.merge_from_dict(options)
    return cfg


def build_model(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def act_modules(model):
    return [m for m in model.modules() if type(m).__name__ in ACT_TYPES]


def sample(seg):
    s = SegDataSample()
    s.gt_sem_seg = PixelData(data=torch.as_tensor(seg)[None])
    s.set_metainfo(dict(img_shape=tuple(seg.shape), pad_shape=tuple(seg.shape), ori_shape=tuple(seg.shape)))
    return s


# ---------------------------------------------------------------- configs and models

@pytest.mark.parametrize('name', LEAF_CONFIGS)
def test_every_leaf_config_loads_and_is_short(name):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    assert cfg.default_scope == 'mmseg'
    assert 'sau_core.mm' in cfg.custom_imports.imports
    lines = [ln for ln in open(osp.join(CONFIGS, name)) if ln.strip() and not ln.startswith('#')]
    assert len(lines) <= 5, f'{name}: leaf configs restate only what differs'


def test_sau_config_builds_sau_everywhere_and_no_relu():
    model = build_model(Config.fromfile(SAU_FULL))
    kinds = {type(m).__name__ for m in act_modules(model)}
    assert kinds == {'SAU'}
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.LeakyReLU)) for m in model.modules())
    # 18 convs in the encoder/decoder blocks + 4 upsampling convs in the backbone, one conv per head
    assert len(act_modules(model)) == 24
    assert all(m.alpha.requires_grad for m in act_modules(model))


def test_relu_config_differs_only_in_the_activation():
    sau, relu = Config.fromfile(SAU_FULL), Config.fromfile(RELU_FULL)
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        assert sau.model[part].act_cfg == dict(type='SAU')
        assert relu.model[part].act_cfg == dict(type='ReLU')
        relu.model[part].act_cfg = dict(type='SAU')
    relu.act = sau.act  # the leaf's own variable
    assert relu.to_dict() == sau.to_dict()
    assert {type(m).__name__ for m in act_modules(build_model(Config.fromfile(RELU_FULL)))} == {'ReLU'}


def test_paper_recipe():
    cfg = Config.fromfile(SAU_FULL)
    assert cfg.optim_wrapper.optimizer.type == 'Adam' and cfg.optim_wrapper.optimizer.lr == 5e-4
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop' and cfg.train_cfg.max_epochs == 250
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == 19
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.train_dataloader.dataset.type == 'CheckedCityscapesDataset'
    assert {'mIoU'} == set(cfg.val_evaluator.iou_metrics)


def test_full_config_pipelines_run_on_the_cityscapes_layout(tiny_root):
    cfg = _load(SAU_FULL)
    for loader, test_mode in (('train_dataloader', False), ('test_dataloader', True)):
        ds = DATASETS.build(dict(cfg[loader].dataset, data_root=tiny_root, test_mode=test_mode))
        types = [t['type'] for t in cfg[loader].dataset.pipeline]
        assert types[types.index('LoadAnnotations') + 1] == 'CheckSegMap'
        item = ds[0]
        seg = item['data_samples'].gt_sem_seg.data
        if test_mode:  # whole-image test: the image is resized to 2048x1024, the mask stays as loaded
            assert tuple(item['inputs'].shape[1:]) == (1024, 2048) and tuple(seg.shape[1:]) == (64, 128)
        else:  # train: random resize around 2048x1024, then a 512x1024 crop
            assert tuple(item['inputs'].shape[1:]) == tuple(seg.shape[1:]) == (512, 1024)
        assert set(seg.unique().tolist()) <= set(range(19)) | {255}


def test_xavier_uniform_init_on_every_conv():
    model = build_model(Config.fromfile(SAU_FULL))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 26
    for conv in convs:
        w = conv.weight.detach()
        fan_in, fan_out = w[0].numel(), w.shape[0] * w[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= bound * (1 + 1e-6)
        # uniform(-b, b) has std b/sqrt(3); Kaiming (mmseg's default) would be sqrt(6/fan_in)/sqrt(3)
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.25 if w.numel() < 2000 else 0.05)
        assert conv.bias is None or not conv.bias.detach().any()


@pytest.mark.parametrize('name', list(sau_core.ACT_CFGS))
def test_every_baseline_is_one_act_cfg_away(name, tiny_root):
    cfg = tiny_cfg(tiny_root)
    act = sau_core.act_cfg(name)
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        cfg.model[part].act_cfg = act
    model = build_model(cfg)
    kinds = {type(m).__name__ for m in act_modules(model)}
    assert kinds == {act['type']}
    x = torch.randn(1, 3, 64, 128)
    assert model(x, mode='tensor').shape == (1, 19, 64, 128)


def test_bn_by_default_syncbn_one_option_away(tiny_root):
    from mmengine.model import convert_sync_batchnorm
    model = build_model(tiny_cfg(tiny_root))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    synced = convert_sync_batchnorm(model, 'torch')  # what MMEngine does for `--cfg-options sync_bn=torch`
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())


# ---------------------------------------------------------------- loss and metric

def test_ignored_pixels_do_not_enter_the_loss(tiny_root):
    head = build_model(tiny_cfg(tiny_root)).decode_head
    gen = torch.Generator().manual_seed(0)
    gt = torch.randint(0, 19, (2, 8, 16), generator=gen)
    gt[:, :3] = 255
    logits = torch.randn(2, 19, 8, 16, generator=gen, requires_grad=True)
    loss = head.loss_by_feat(logits, [sample(g) for g in gt])['loss_ce']
    keep = gt != 255
    manual = torch.nn.functional.cross_entropy(logits.detach(), gt.clamp(max=18), reduction='none')[keep]
    assert loss.item() == pytest.approx(manual.sum().item() / gt.numel(), rel=1e-5)  # mmseg's mean over all
    loss.backward()
    assert not logits.grad.permute(0, 2, 3, 1)[~keep].any()
    assert logits.grad.permute(0, 2, 3, 1)[keep].abs().sum() > 0


def test_iou_metric_on_a_hand_made_prediction():
    from segmentation.sau_seg import PerClassIoUMetric
    gt = np.array([[0, 0, 1, 1],
                   [0, 0, 1, 1],
                   [2, 2, 255, 255],
                   [2, 2, 255, 255]])
    pred = np.array([[0, 0, 0, 1],
                     [0, 5, 1, 1],
                     [2, 2, 7, 0],   # the 255 pixels are predicted wrong on purpose: they must not count
                     [1, 2, 8, 3]])
    from mmseg.evaluation import IoUMetric
    results = {}
    for cls in (IoUMetric, PerClassIoUMetric):
        metric = cls(iou_metrics=['mIoU'])
        metric.dataset_meta = dict(classes=CLASSES)
        metric.process({}, [dict(pred_sem_seg=dict(data=torch.tensor(pred)[None]),
                                 gt_sem_seg=dict(data=torch.tensor(gt)[None]))])
        results[cls] = metric.evaluate(1)
    got = results[PerClassIoUMetric]
    assert set(results[IoUMetric]) == {'aAcc', 'mIoU', 'mAcc'}
    assert all(results[IoUMetric][k] == got[k] for k in ('aAcc', 'mIoU', 'mAcc'))
    # 12 scored pixels, 9 right.  class 0: gt 4, pred 4 (one on a class-1 pixel), hit 3 -> IoU 3/5
    # class 1: gt 4, pred 4 (one on class 2), hit 3 -> 3/5; class 2: gt 4, pred 3, hit 3 -> 3/4
    # class 5: predicted once, never true -> IoU 0 (counts); every other class: nan (left out)
    ious = {0: 3 / 5, 1: 3 / 5, 2: 3 / 4, 5: 0.0}
    assert got['aAcc'] == pytest.approx(100 * 9 / 12, abs=0.01)
    assert got['mIoU'] == pytest.approx(100 * sum(ious.values()) / 4, abs=0.01)
    assert got['mAcc'] == pytest.approx(100 * (3 / 4 + 3 / 4 + 3 / 4) / 3, abs=0.01)
    for c, name in enumerate(CLASSES):
        if c in ious:
            assert got[f'IoU.{name}'] == pytest.approx(100 * ious[c], abs=0.01)
        else:
            assert math.isnan(got[f'IoU.{name}'])


# ---------------------------------------------------------------- data: tiny generator, prepare, checks

def test_tiny_data_is_deterministic_and_cityscapes_shaped(tiny_root, tmp_path):
    again = str(tmp_path / 'again')
    other = str(tmp_path / 'other')
    make_tiny_cityscapes.make_tiny_cityscapes(again, seed=0)
    make_tiny_cityscapes.make_tiny_cityscapes(other, seed=1)
    rel = 'gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png'
    img_rel = 'leftImg8bit/val/frankfurt/frankfurt_000003_000022_leftImg8bit.png'
    for r in (rel, img_rel):
        assert open(osp.join(tiny_root, r), 'rb').read() == open(osp.join(again, r), 'rb').read()
    assert open(osp.join(tiny_root, rel), 'rb').read() != open(osp.join(other, rel), 'rb').read()
    values = np.unique(np.concatenate([np.asarray(Image.open(p)).ravel() for p in _masks(tiny_root)]))
    assert set(values.tolist()) == {0, 1, 2, 8, 10, 11, 13, 255}
    assert prepare_cityscapes.prepare(tiny_root, check_only=True, allow_subset=True, log=lambda *_: None) == []


def _masks(root, split='train'):
    out = []
    for dirpath, _, files in os.walk(osp.join(root, 'gtFine', split)):
        out += [osp.join(dirpath, f) for f in files if f.endswith('_labelTrainIds.png')]
    return sorted(out)


def test_label_ids_become_train_ids_through_cityscapesscripts(tmp_path):
    src, dst = str(tmp_path / 'a_gtFine_labelIds.png'), str(tmp_path / 'a_gtFine_labelTrainIds.png')
    # road, car, ego vehicle, bicycle, unlabeled, sky, license plate is -1 (not storable), guard rail
    Image.fromarray(np.array([[7, 26, 1, 33, 0, 23, 14]], np.uint8)).save(src)
    prepare_cityscapes.convert_label_ids(src, dst)
    assert np.asarray(Image.open(dst)).tolist() == [[0, 13, 255, 18, 255, 10, 255]]
    Image.fromarray(np.array([[7, 40]], np.uint8)).save(src)
    with pytest.raises(ValueError, match=r'label ids \[40\]'):
        prepare_cityscapes.convert_label_ids(src, dst)


def test_prepare_converts_a_download_and_reports_what_is_missing(tiny_root, tmp_path, capsys):
    root = str(tmp_path / 'download')
    shutil.copytree(tiny_root, root)
    masks = _masks(root) + _masks(root, 'val')
    expected = {p: open(p, 'rb').read() for p in masks}
    for p in masks:  # a fresh download ships labelIds only
        os.remove(p)
    assert prepare_cityscapes.main([root, '--check-only', '--allow-subset']) == 1
    assert prepare_cityscapes.main([root, '--allow-subset']) == 0
    for p, content in expected.items():
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(_png(content))))

    gt = osp.join(root, 'gtFine', 'train', 'bremen')
    for f in os.listdir(gt):
        if f.startswith('bremen_000001_'):
            os.remove(osp.join(gt, f))
    os.remove(osp.join(root, 'leftImg8bit', 'val', 'munster', 'munster_000002_000021_leftImg8bit.png'))
    bad = osp.join(root, 'gtFine', 'train', 'zurich', 'zurich_000000_000019_gtFine_labelTrainIds.png')
    Image.fromarray(np.full((64, 128), 19, np.uint8)).save(bad)
    capsys.readouterr()
    assert prepare_cityscapes.main([root, '--check-only']) == 1
    err = capsys.readouterr().err
    assert 'gtFine/train/bremen/bremen_000001_000020_gtFine_labelIds.png: missing' in err
    assert 'leftImg8bit/val/munster/munster_000002_000021_leftImg8bit.png: missing' in err
    assert f'{bad}: values [19]' in err
    assert 'cities missing under' in err and 'bochum' in err and 'lindau' in err
    assert 'train: 18 images, the official split has 2975 (pass --allow-subset' in err
    assert 'val: 7 images, the official split has 500' in err
    assert prepare_cityscapes.prepare(str(tmp_path / 'nowhere')) [0].endswith(
        'data root does not exist; unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip there')
    shutil.rmtree(osp.join(root, 'gtFine', 'val'))
    assert any('gtFine/val: folder missing (it comes from gtFine_trainvaltest.zip)' in p
               for p in prepare_cityscapes.prepare(root, check_only=True, allow_subset=True, log=print))


def test_prepare_rasterises_polygons_where_label_ids_are_missing(tiny_root, tmp_path, capsys):
    root = str(tmp_path / 'polygons')
    shutil.copytree(tiny_root, root)
    stem = osp.join(root, 'gtFine', 'val', 'munster', 'munster_000001_000020_gtFine_')
    os.remove(stem + 'labelIds.png')
    os.remove(stem + 'labelTrainIds.png')
    objects = [dict(label='sky', polygon=[[0, 0], [127, 0], [127, 31], [0, 31]]),
               dict(label='road', polygon=[[0, 32], [127, 32], [127, 63], [0, 63]]),
               dict(label='cargroup', polygon=[[10, 40], [20, 40], [20, 50], [10, 50]])]
    with open(stem + 'polygons.json', 'w') as f:
        json.dump(dict(imgHeight=64, imgWidth=128, objects=objects), f)
    assert prepare_cityscapes.main([root, '--allow-subset']) == 0
    seg = np.asarray(Image.open(stem + 'labelTrainIds.png'))
    assert seg.shape == (64, 128)
    assert (seg[:30] == 10).all() and (seg[55:] == 0).all() and (seg[42:49, 12:19] == 13).all()

    os.remove(stem + 'labelTrainIds.png')
    objects[0]['label'] = 'spaceship'
    with open(stem + 'polygons.json', 'w') as f:
        json.dump(dict(imgHeight=64, imgWidth=128, objects=objects), f)
    capsys.readouterr()
    assert prepare_cityscapes.main([root, '--allow-subset']) == 1
    assert f'{stem}labelTrainIds.png: conversion failed (SystemExit' in capsys.readouterr().err


def _png(content):
    import io
    return io.BytesIO(content)


def _dataset(root, split='train', test_mode=False):
    cfg = tiny_cfg(root)
    ds = dict(cfg.train_dataloader.dataset if split == 'train' else cfg.val_dataloader.dataset)
    ds.update(data_root=root, test_mode=test_mode)
    return DATASETS.build(ds)


def test_dataset_reports_a_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Cityscapes image folder .*nowhere/leftImg8bit/train.* "
                                                 r"does not exist.*prepare_cityscapes\.py"):
        _dataset(str(tmp_path / 'nowhere'))
    os.makedirs(tmp_path / 'empty' / 'leftImg8bit' / 'train')
    os.makedirs(tmp_path / 'empty' / 'gtFine' / 'train')
    with pytest.raises(FileNotFoundError, match=r'no \*_leftImg8bit.png files under'):
        _dataset(str(tmp_path / 'empty'))


def test_dataset_reports_image_mask_pairing_mismatches(tiny_root, tmp_path):
    root = str(tmp_path / 'pairs')
    shutil.copytree(tiny_root, root)
    assert len(_dataset(root)) == 18
    mask = osp.join(root, 'gtFine', 'train', 'aachen', 'aachen_000002_000021_gtFine_labelTrainIds.png')
    os.remove(mask)
    with pytest.raises(FileNotFoundError, match=r'1 of 18 images .* have no mask .*aachen_000002_000021'
                                                 r'.*labelIds.png only: the download is not prepared'):
        _dataset(root)
    os.remove(osp.join(root, 'leftImg8bit', 'train', 'aachen', 'aachen_000002_000021_leftImg8bit.png'))
    assert len(_dataset(root)) == 17
    os.rename(osp.join(root, 'leftImg8bit', 'train', 'bremen', 'bremen_000003_000022_leftImg8bit.png'),
              osp.join(root, 'leftImg8bit', 'train', 'bremen', 'bremen_000099_000022_leftImg8bit.png'))
    with pytest.raises(FileNotFoundError, match='bremen_000099_000022_gtFine_labelTrainIds.png'):
        _dataset(root)
    os.remove(osp.join(root, 'leftImg8bit', 'train', 'bremen', 'bremen_000099_000022_leftImg8bit.png'))
    with pytest.raises(ValueError, match=r'pairing mismatch: 1 masks .* have no \*_leftImg8bit.png .*'
                                         r'bremen_000003_000022_gtFine_labelTrainIds.png'):
        _dataset(root)


def test_bad_mask_values_and_sizes_fail_with_the_file_name(tiny_root, tmp_path):
    root = str(tmp_path / 'values')
    shutil.copytree(tiny_root, root)
    ds = _dataset(root, 'val', test_mode=True)
    first = ds.get_data_info(0)['seg_map_path']
    assert ds[0]['data_samples'].gt_sem_seg.data.max() == 255
    seg = np.asarray(Image.open(first)).copy()
    seg[0, :5] = 33  # a raw label id (bicycle) where a train id belongs
    seg[1, :2] = 19
    Image.fromarray(seg).save(first)
    with pytest.raises(ValueError, match=rf'mask {first} holds values \[19, 33\] \(7 pixels\); allowed are '
                                         r'train ids 0\.\.18 and 255'):
        ds[0]
    Image.fromarray(seg[:32]).save(first)
    with pytest.raises(ValueError, match=r'pairing mismatch: mask .* is \(32, 128\) but image .* is \(64, 128\)'):
        ds[0]
    Image.fromarray(np.stack([seg] * 3, -1)).save(first)
    with pytest.raises(ValueError, match=r'has shape \(64, 128, 3\); expected one channel'):
        ds[0]


# ---------------------------------------------------------------- train, evaluate, save and reload

@pytest.fixture(scope='module')
def trained(tiny_root, tmp_path_factory):
    """The tiny config trained as `tools/train.py` would (Runner.from_cfg), once for the module."""
    from mmengine.runner import Runner
    work_dir = tmp_path_factory.mktemp('seg_train')
    runner = Runner.from_cfg(tiny_cfg(tiny_root, work_dir))
    runner.train()
    losses = list(runner.message_hub.get_scalar('train/loss').data[0])
    metrics = runner.test()
    return dict(runner=runner, losses=losses, metrics=metrics, work_dir=work_dir)


def test_training_lowers_the_loss(trained):
    losses = trained['losses']
    assert len(losses) == 150  # 30 epochs x 18 images / batch 4 (last batch of each epoch has 2)
    assert np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])


def test_evaluation_reports_miou_aacc_macc_clearly_above_chance(trained, tiny_root):
    metrics = trained['metrics']
    assert {'aAcc', 'mIoU', 'mAcc'} <= set(metrics)
    assert all(0 <= metrics[k] <= 100 for k in ('aAcc', 'mIoU', 'mAcc'))
    # chance here: the majority class everywhere, scored like mmseg (classes present in the val masks)
    counts = np.bincount(np.concatenate([np.asarray(Image.open(p)).ravel() for p in _masks(tiny_root, 'val')]),
                         minlength=256)[:19]
    majority_miou = 100 * counts.max() / counts.sum() / np.count_nonzero(counts)
    assert metrics['mIoU'] > max(50.0, 5 * majority_miou), metrics
    assert metrics['aAcc'] > 85.0
    present = [CLASSES[c] for c in np.flatnonzero(counts)]
    assert all(not math.isnan(metrics[f'IoU.{c}']) for c in present)
    assert 'IoU.train' in metrics and 'train' not in present


def test_sau_alphas_are_trained(trained):
    alphas = [m.alpha.item() for m in act_modules(trained['runner'].model)]
    assert len(alphas) == 24 and max(abs(a - 0.15) for a in alphas) > 1e-3


def test_save_reload_evaluate_gives_the_same_numbers(trained, tiny_root, tmp_path, monkeypatch):
    from mmengine.runner import Runner

    from tools.zoo.io import checkpoint_loading, read_checkpoint
    # MMEngine's own load, weights_only=True with the zoo's allow-list (message hub, numpy scalars)
    ckpt = osp.join(trained['work_dir'], 'epoch_30.pth')
    assert osp.isfile(ckpt)
    runner = Runner.from_cfg(tiny_cfg(tiny_root, tmp_path, load_from=ckpt))
    with checkpoint_loading():
        metrics = runner.test()
    assert metrics == pytest.approx(trained['metrics'], nan_ok=True)
    state = read_checkpoint(ckpt)['state_dict']
    assert any(k.endswith('activate.alpha') for k in state)


def test_train_tool_names_every_sau_layer_for_its_warnings(tiny_root, tmp_path, monkeypatch):
    from mmengine.runner import Runner

    import sau_core
    from tools import train
    seen = {}
    monkeypatch.setattr(Runner, 'train', lambda runner: seen.update(
        (m.layer_name, m.alpha.numel()) for m in runner.model.modules() if isinstance(m, sau_core.SAU)))
    roots = [f'{k}.dataset.data_root={tiny_root}' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    monkeypatch.setattr(train, 'train_summary', lambda runner, cfg: '')
    assert train.main([SAU_TINY, '--work-dir', str(tmp_path), '--cfg-options', *roots]) == 0
    assert len(seen) == 24 and all(name.endswith('.activate') for name in seen), sorted(seen)
    assert 'backbone.encoder.0.0.convs.0.activate' in seen


def test_train_tool_reports_a_missing_dataset_in_one_line(tmp_path):
    tool = osp.join(REPO, 'tools', 'train.py')
    proc = subprocess.run(
        [sys.executable, tool, SAU_TINY, '--work-dir', str(tmp_path),
         '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/none'],
        capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert f'{tmp_path}/none' in proc.stderr and 'make_tiny_cityscapes.py' in proc.stderr


def test_eval_tool_writes_the_metrics_with_per_class_iou(trained, tiny_root, tmp_path, monkeypatch):
    from tools import eval as eval_tool
    out = str(tmp_path / 'metrics.json')
    roots = [f'{k}.dataset.data_root={tiny_root}' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    assert eval_tool.main([SAU_TINY, osp.join(trained['work_dir'], 'epoch_30.pth'), '--out', out,
                           '--work-dir', str(tmp_path), '--cfg-options', *roots]) == 0
    with open(out) as f:
        metrics = json.load(f)
    assert metrics == pytest.approx({k: float(v) for k, v in trained['metrics'].items()}, nan_ok=True)
    assert len([k for k in metrics if k.startswith('IoU.')]) == 19
