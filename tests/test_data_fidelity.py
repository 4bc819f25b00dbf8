"""The real datasets' on-disk quirks, each read as the frameworks (and the official tools) read them.

VOC: ``<part>`` boxes ignored as MMDetection ignores them, difficult objects kept out of mAP, segmented and
progressive JPEGs, VOC2012 ids. Cityscapes: labelIds only, polygons only, both, and the val split alone.
WMT: SGML test sets, CRLF, invalid UTF-8, line separators inside a line, a line-count mismatch. All on files
written here or by ``tools/data/make_full_scale.py`` at a small fraction.
"""
import io
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from tools.data import make_full_scale, prepare_wmt14_en_de as wmt


# --- Pascal VOC ---------------------------------------------------------------------------------------------
def _voc_split(root, year, ids, xmls, images=None):
    voc = osp.join(root, f'VOC{year}')
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(osp.join(voc, sub), exist_ok=True)
    for i, xml in zip(ids, xmls):
        with open(osp.join(voc, 'Annotations', i + '.xml'), 'w') as f:
            f.write(xml)
        (images or {}).get(i, Image.new('RGB', (500, 375), (90, 120, 150))).save(
            osp.join(voc, 'JPEGImages', i + '.jpg'), **({'progressive': True} if i.endswith('p') else {}))
    with open(osp.join(voc, 'ImageSets', 'Main', 'trainval.txt'), 'w') as f:
        f.write(''.join(i + '\n' for i in ids))
    return voc


def _objects_xml(objects, year='2012', segmented=0):
    rng = np.random.default_rng(0)
    return make_full_scale._voc_xml(year, 'x', 500, 375, segmented, objects, rng)


def _dataset(voc, test_mode=False, pipeline=()):
    from mmdet.utils import register_all_modules
    register_all_modules()
    from detection.datasets import CheckedVOCDataset
    return CheckedVOCDataset(ann_file=osp.join(voc, 'ImageSets', 'Main', 'trainval.txt'),
                             data_prefix=dict(sub_data_root=voc), test_mode=test_mode, pipeline=list(pipeline),
                             filter_cfg=None if test_mode else dict(filter_empty_gt=True))


def _infos(dataset):
    return [dataset.get_data_info(i) for i in range(len(dataset))]


def test_voc_parts_are_ignored_as_mmdetection_ignores_them(tmp_path):
    """A person's <part> head/hand boxes are no objects: the same instances as mmdet's own VOCDataset."""
    from mmdet.datasets import VOCDataset
    xml = _objects_xml([('person', (100, 50, 300, 370), 0, 0)])
    for part in ('head', 'hand'):  # make sure the parts are there (the generator picks them at random)
        xml = xml.replace('\t</object>', f'\t\t<part>\n\t\t\t<name>{part}</name>\n\t\t\t<bndbox><xmin>150</xmin>'
                          '<ymin>60</ymin><xmax>200</xmax><ymax>120</ymax></bndbox>\n\t\t</part>\n\t</object>')
    voc = _voc_split(str(tmp_path), '2012', ['2008_000123'], [xml])
    data = _dataset(voc)
    (info,) = _infos(data)
    assert [inst['bbox'] for inst in info['instances']] == [[99, 49, 299, 369]]  # mmdet's minus_one
    assert info['img_id'] == '2008_000123' and info['img_path'].endswith('VOC2012/JPEGImages/2008_000123.jpg')
    plain = VOCDataset(ann_file=data.ann_file, data_prefix=dict(sub_data_root=voc), pipeline=[])
    assert _infos(plain) == _infos(data)


def test_voc_difficult_objects_stay_out_of_map(tmp_path):
    """VOC's devkit neither rewards nor penalises difficult objects: detecting only the easy ones scores 1.0
    (if the difficult box counted, recall would stop at 1/2)."""
    import torch
    from mmdet.evaluation import VOCMetric
    objects = [('dog', (10, 10, 200, 200), 0, 0), ('dog', (250, 100, 450, 350), 1, 1)]
    voc = _voc_split(str(tmp_path), '2007', ['000005'], [_objects_xml(objects, '2007')])
    data = _dataset(voc, test_mode=True, pipeline=[dict(type='LoadImageFromFile'),
                                                   dict(type='LoadAnnotations', with_bbox=True),
                                                   dict(type='PackDetInputs')])
    sample = data[0]['data_samples']
    assert sample.gt_instances.bboxes.tensor.tolist() == [[9.0, 9.0, 199.0, 199.0]]
    assert sample.ignored_instances.bboxes.tensor.tolist() == [[249.0, 99.0, 449.0, 349.0]]
    metric = VOCMetric(metric='mAP', eval_mode='11points')
    metric.dataset_meta = data.metainfo
    out = sample.to_dict()
    dog = data.metainfo['classes'].index('dog')
    out['pred_instances'] = dict(bboxes=torch.tensor([[9.0, 9.0, 199.0, 199.0]]), scores=torch.tensor([0.9]),
                                 labels=torch.tensor([dog]))
    metric.process({}, [out])
    assert metric.compute_metrics(metric.results)['mAP'] == pytest.approx(1.0)


def test_voc_segmented_and_progressive_jpegs_pass_the_checks_and_decode(tmp_path):
    import mmcv
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    objects = [('cat', (20, 20, 300, 300), 0, 0)]
    voc = _voc_split(str(tmp_path), '2012', ['2011_000007p', '2011_000008'],
                     [_objects_xml(objects, segmented=1)] * 2, images={'2011_000007p': img})
    with open(osp.join(voc, 'JPEGImages', '2011_000007p.jpg'), 'rb') as f:
        data = f.read()
    assert b'\xff\xc2' in data  # SOF2: a progressive JPEG
    data_list = _infos(_dataset(voc))
    assert [d['img_id'] for d in data_list] == ['2011_000007p', '2011_000008']
    decoded = mmcv.imfrombytes(data, channel_order='rgb')
    assert decoded.shape == (375, 500, 3)
    assert np.array_equal(decoded, np.asarray(Image.open(io.BytesIO(data)).convert('RGB')))


def test_generated_voc_at_a_fraction_is_complete_and_real_looking(tmp_path):
    from tools.data.check_voc import check_voc
    stats = make_full_scale.make_voc(str(tmp_path), scale=0.002, seed=0, nproc=1)
    assert stats['images'] == {'VOC2007 trainval': 10, 'VOC2007 test': 10, 'VOC2012 trainval': 23}
    problems, notes = check_voc(str(tmp_path / 'VOCdevkit'))
    assert problems == [] and any('the official release has 11540' in n for n in notes)
    ids07 = (tmp_path / 'VOCdevkit/VOC2007/ImageSets/Main/test.txt').read_text().split()
    ids12 = (tmp_path / 'VOCdevkit/VOC2012/ImageSets/Main/trainval.txt').read_text().split()
    assert all(len(i) == 6 and i.isdigit() for i in ids07)
    assert all(len(i) == 11 and i[4] == '_' and 2007 <= int(i[:4]) <= 2011 for i in ids12)
    xml = (tmp_path / f'VOCdevkit/VOC2012/Annotations/{ids12[0]}.xml').read_text()
    assert '<difficult>' in xml and '<truncated>' in xml and '<segmented>' in xml
    cls = (tmp_path / 'VOCdevkit/VOC2007/ImageSets/Main/dog_test.txt').read_text().split('\n')
    assert len(cls) == 11 and {line.split()[1] for line in cls if line} <= {'1', '0', '-1'}


# --- Cityscapes ---------------------------------------------------------------------------------------------
def _train_ids(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith('_gtFine_labelTrainIds.png'):
                out[f] = np.asarray(Image.open(osp.join(dirpath, f)))
    return out


def test_cityscapes_labelids_only_polygons_only_and_both_give_the_same_train_ids(tmp_path):
    from tools.data import prepare_cityscapes
    masks = {}
    for only in ('labelIds', 'polygons', None):
        root = str(tmp_path / str(only))
        make_full_scale.make_cityscapes(root, scale=0.001, splits=('val',), only=only, size=(128, 256))
        gt = os.listdir(osp.join(root, 'gtFine', 'val', 'lindau'))
        assert any(f.endswith('labelIds.png') for f in gt) == (only != 'polygons')
        assert any(f.endswith('polygons.json') for f in gt) == (only != 'labelIds')
        assert prepare_cityscapes.prepare(root, splits=['val'], allow_subset=True, log=lambda *_: None) == []
        masks[only] = _train_ids(root)
    assert len(masks[None]) == 3
    for name, mask in masks[None].items():
        assert np.array_equal(mask, masks['labelIds'][name]) and np.array_equal(mask, masks['polygons'][name])
        assert {0, 1, 2}.issubset(np.unique(mask)) and 255 in mask  # road, sidewalk, building; ego vehicle


def test_cityscapes_val_split_alone_prepares_and_evaluates(tmp_path):
    """--splits val with no train folder at all: ready, and the config's test loader finds its data."""
    from mmengine.config import Config

    from tools.data import prepare_cityscapes
    from tools.zoo.data_checks import check_datasets
    root = str(tmp_path / 'cs')
    make_full_scale.make_cityscapes(root, scale=0.001, splits=('val',), size=(128, 256))
    assert not osp.exists(osp.join(root, 'leftImg8bit', 'train'))
    assert prepare_cityscapes.main([root, '--splits', 'val', '--allow-subset']) == 0
    assert prepare_cityscapes.main([root, '--allow-subset']) == 1  # train asked for: reported missing
    cfg = Config.fromfile('segmentation/configs/unet_sau_cityscapes.py')
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = root
    check_datasets(cfg, ['test_dataloader'])  # what tools/eval.py checks: no error
    with pytest.raises(ValueError, match='leftImg8bit/train'):
        check_datasets(cfg, ['train_dataloader'])
    from mmseg.utils import register_all_modules
    register_all_modules()
    import segmentation.sau_seg  # noqa: F401
    from segmentation.sau_seg.datasets import CheckedCityscapesDataset
    ds = CheckedCityscapesDataset(data_root=root, data_prefix=dict(img_path='leftImg8bit/val',
                                                                   seg_map_path='gtFine/val'), pipeline=[])
    assert len(ds) == 3


# --- WMT14 ----------------------------------------------------------------------------------------------------
def _pairs(raw, split, en, de, eol=b'\n'):
    raw.mkdir(parents=True, exist_ok=True)
    for lang, lines in (('en', en), ('de', de)):
        (raw / f'{split}.{lang}').write_bytes(b''.join((x if isinstance(x, bytes) else x.encode()) + eol
                                                       for x in lines))


EN = [f'The house number {i} is big and the garden is green.' for i in range(40)]
DE = [f'Das Haus Nummer {i} ist groß und der Garten ist grün.' for i in range(40)]


def _text_stage(tmp_path, name, train, test=(EN[:5], DE[:5]), drop=False, eol=b'\n'):
    raw, out = tmp_path / name / 'raw', tmp_path / name / 'out'
    _pairs(raw, 'train', *train, eol=eol)
    _pairs(raw, 'test', *test)
    wmt.prepare(out, raw, workers=1, download=False, stages=['text', 'tok'], drop_invalid=drop)
    report = json.loads((out / 'prepare_report.json').read_text())['text']
    return out, report


def test_wmt_sgml_test_sets_keep_their_segments_and_entities(tmp_path):
    sgm = ('<refset setid="newstest2014" srclang="any" trglang="de">\r\n<doc sysid="ref" docid="1">\r\n<p>\r\n'
           '<seg id="1">AT&amp;T sagt &quot;Nein&quot;.</seg>\r\n<seg id=2>  Er’s   gut. </seg>\r\n'
           '<seg id="3"></seg>\r\n</p>\r\n</doc>\r\n</refset>\r\n')
    path = tmp_path / 'ref.sgm'
    path.write_bytes(sgm.encode())
    # as fairseq's script (and sacreBLEU's fake-SGML reader) extract them: entities as in the file, ’ -> '
    assert wmt.read_sgm(path) == ['AT&amp;T sagt &quot;Nein&quot;.', "Er's   gut.", '']
    assert wmt.tokenize(['AT&amp;T'], 'en') == ['AT &amp; amp ; T']  # fairseq's recipe escapes them again


def test_wmt_archives_with_sgml_test_and_mismatched_segments(tmp_path):
    raw = tmp_path / 'raw'
    manifest = make_full_scale.make_wmt(str(raw), scale=0.0002, seed=0, nproc=1)
    assert manifest['pairs'] == {'europarl': 384, 'commoncrawl': 480, 'news-commentary': 54}
    out = tmp_path / 'out'
    wmt.prepare(out, raw, workers=1, download=False, stages=['text'])
    report = json.loads((out / 'prepare_report.json').read_text())['text']
    assert report['train']['lines'] == 918 and report['test']['lines'] == 1
    assert report['train']['invalid_utf8 de'] == manifest['mess']['invalid_utf8'] >= 1
    assert report['train']['line_separator de'] == manifest['mess']['line_separator'] >= 1
    assert report['train']['crlf en'] == report['train']['crlf de'] == manifest['mess']['crlf'] > 0
    n_train = len((out / 'text' / 'train.en').read_bytes().split(b'\n')) - 1
    n_valid = len((out / 'text' / 'valid.de').read_bytes().split(b'\n')) - 1
    assert (n_train, n_valid) == (918 - 9, 9)
    ref = raw / 'test-full' / 'newstest2014-deen-ref.de.sgm'
    ref.write_bytes(ref.read_bytes().replace(b'</p>', b'<seg id="99">extra</seg>\r\n</p>'))
    with pytest.raises(SystemExit, match=r'^test: 1 en segments but 2 de segments in newstest2014-deen-src.en.sgm'):
        wmt.prepare(tmp_path / 'out2', raw, workers=1, download=False, stages=['text'])


def test_wmt_crlf_gives_the_same_tokens_as_lf(tmp_path):
    lf, _ = _text_stage(tmp_path, 'lf', (EN, DE))
    crlf, report = _text_stage(tmp_path, 'crlf', (EN, DE), eol=b'\r\n')
    assert report['train']['crlf en'] == 40
    for f in ('tok/train.en', 'tok/valid.de', 'text/train.de'):
        assert (lf / f).read_bytes() == (crlf / f).read_bytes()


@pytest.mark.parametrize('drop', [False, True])
def test_wmt_invalid_utf8_is_replaced_or_dropped_and_counted_never_shifted(tmp_path, drop):
    de = list(DE)
    de[3] = DE[3].encode().replace('groß'.encode(), b'gro\xc3')  # a cut-off sequence
    de[7] = DE[7].encode() + b'\xff'
    out, report = _text_stage(tmp_path, 'x', (EN, de), drop=drop)
    assert report['train']['invalid_utf8 de'] == 2 and 'invalid_utf8 en' not in report['train']
    en_lines = (out / 'text' / 'train.en').read_text().splitlines()
    de_lines = (out / 'text' / 'train.de').read_text().splitlines()
    assert len(en_lines) == len(de_lines) == (38 if drop else 40) - 0  # no valid carved out below 100 pairs
    for e, d in zip(en_lines, de_lines):  # every pair still holds the same number on both sides
        assert e.split()[3] == d.split()[3]
    if drop:
        assert report['train']['dropped pairs'] == 2 and not any('\ufffd' in d for d in de_lines)
    else:
        assert de_lines[3] == DE[3].replace('groß', 'gro\ufffd') and de_lines[7] == DE[7] + '\ufffd'


def test_wmt_line_separators_inside_a_line_do_not_shift_the_alignment(tmp_path):
    """str.splitlines (the old reader) splits at U+2028, U+0085 and a lone CR: one side would gain lines."""
    de = list(DE)
    de[2] = DE[2].replace(' ist ', ' ist\u2028')
    de[5] = DE[5] + '\x85'
    de[9] = DE[9].replace(' und ', ' und\r')
    out, report = _text_stage(tmp_path, 'x', (EN, de))
    assert report['train']['line_separator de'] == 3
    de_lines = (out / 'tok' / 'train.de').read_text(encoding='utf-8').split('\n')[:-1]
    assert len(de_lines) == 40 and de_lines[2].startswith('Das Haus Nummer 2 ist groß')


def test_wmt_line_count_mismatch_is_a_clear_error(tmp_path):
    raw = tmp_path / 'raw'
    _pairs(raw, 'train', EN, DE[:-1])
    _pairs(raw, 'test', EN[:3], DE[:3])
    with pytest.raises(SystemExit, match=f'^train: 40 en lines but 39 de lines in {raw}: the two sides'):
        wmt.prepare(tmp_path / 'out', raw, workers=1, download=False)
    assert not (tmp_path / 'out' / 'text').exists()  # checked before any work
