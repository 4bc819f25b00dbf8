"""tools/infer.py on the released tiny checkpoints: what a user gets for their own images and sentences.

- detection: the drawn pictures and ``predictions.json`` (keys, boxes at or above --score-thr, class names) agree
  with MMDetection's own ``DetInferencer`` called directly on the zoo's config;
- segmentation: the label-id PNGs hold train ids only, match the generated scene's ground truth (pixel accuracy),
  and the overlays are drawn;
- translation: the output equals fairseq-generate's detokenised hypotheses for the same test sentences (same
  beam and length penalty), with --n-best and standard input;
- a URL checkpoint goes through tools/eval.py's download and sha256 check; bad input is one ``error:`` line.
"""
import io
import json
import os
import os.path as osp
import random
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

from tools import infer  # noqa: E402
from tools.data import make_tiny_cityscapes, make_tiny_voc  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_torch_thread', 'in_repo')

DET = ('detection/configs/ssd300-w0.125_sau_tinyvoc.py', 'checkpoints/ssd300-w0.125_sau_tinyvoc_20261123-9c46b26d.pth')
SEG = ('segmentation/configs/unet-w8_sau_tiny-cityscapes.py',
       'checkpoints/unet-w8_sau_tiny-cityscapes_20261123-089ade5b.pth')
TR = ('translation/configs/transformer_tiny_sau.py', 'checkpoints/transformer_tiny_sau_20261123-5a6d6c73.pth')


@pytest.fixture(scope='module')
def in_repo():
    old = os.getcwd()
    os.chdir(REPO)  # the configs' data paths are relative to the repository root, as for tools/eval.py
    yield
    os.chdir(old)


def run(argv, capsys):
    """(exit status, stdout, stderr) of tools/infer.py in this process."""
    status = infer.run_main(infer.main, argv)
    out, err = capsys.readouterr()
    return status, out, err


# --- detection ---------------------------------------------------------------------------------
def test_detection_pictures_and_json(tmp_path, capsys):
    folder = tmp_path / 'images'
    folder.mkdir()
    for seed in (138, 189):  # two more drawn scenes, as a folder
        make_tiny_voc.make_image(random.Random(seed))[0].save(folder / f'scene{seed}.jpg', quality=92)
    out = tmp_path / 'out'
    status, printed, _ = run([*DET, str(folder), '--sample', '--out', str(out), '--score-thr', '0.5'], capsys)
    assert status == 0
    result = json.loads((out / 'predictions.json').read_text())
    assert set(result) == {'config', 'checkpoint', 'score_thr', 'bbox_format', 'images'}
    assert result['score_thr'] == 0.5 and len(result['images']) == 3
    by_name = {osp.basename(r['image']): r for r in result['images']}
    # the generated sample holds a tvmonitor and a bottle, which the tiny SSD finds at >= 0.5
    sample = by_name['sample_voc.jpg']
    assert sorted(d['class'] for d in sample['detections']) == ['bottle', 'tvmonitor']
    for record in result['images']:
        width, height = Image.open(record['image']).size
        drawn = np.asarray(Image.open(record['visualization']).convert('RGB'), dtype=np.int16)
        original = np.asarray(Image.open(record['image']).convert('RGB'), dtype=np.int16)
        assert drawn.shape == original.shape
        if record['detections']:  # boxes and labels were drawn
            assert (np.abs(drawn - original).max(axis=2) > 60).mean() > 0.005
        for d in record['detections']:
            assert set(d) == {'bbox', 'label', 'class', 'score'} and d['score'] >= 0.5
            x1, y1, x2, y2 = d['bbox']
            assert -1 <= x1 < x2 <= width + 1 and -1 <= y1 < y2 <= height + 1
        scores = [d['score'] for d in record['detections']]
        assert scores == sorted(scores, reverse=True)
        # MMDetection's own dump, beside it, has every box
        own = json.loads((out / 'preds' / (osp.splitext(osp.basename(record['image']))[0] + '.json')).read_text())
        assert len(own['labels']) == len(own['scores']) == len(own['bboxes']) >= len(record['detections'])
    assert 'sample_voc.jpg: 2 detections with score >= 0.5' in printed

    # the zoo's config and checkpoint in MMDetection's DetInferencer, called as its docs say: the same boxes
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=DET[0], weights=DET[1], device='cpu', show_progress=False)
    direct = inferencer(sample['image'], pred_score_thr=0.5)['predictions'][0]
    kept = [i for i, s in enumerate(direct['scores']) if s >= 0.5]
    assert [round(direct['scores'][i], 4) for i in kept] == [d['score'] for d in sample['detections']]
    np.testing.assert_allclose([direct['bboxes'][i] for i in kept], [d['bbox'] for d in sample['detections']],
                               atol=0.01)


# --- segmentation ------------------------------------------------------------------------------
def test_segmentation_overlay_and_label_ids(tmp_path, capsys):
    from tools.data.prepare_cityscapes import label_id_to_train_id_lut
    images, truths = [], []
    for seed in (2026, 7):
        img, ids = make_tiny_cityscapes.make_scene(np.random.default_rng(seed), 64, 128)
        path = tmp_path / f'scene{seed}.png'
        Image.fromarray(img).save(path)
        images.append(path)
        truths.append(label_id_to_train_id_lut()[ids])
    out = tmp_path / 'out'
    status, printed, _ = run([*SEG, *map(str, images), '--out', str(out)], capsys)
    assert status == 0
    for path, truth in zip(images, truths):
        labels = np.asarray(Image.open(out / 'pred' / f'{path.stem}_labelTrainIds.png'))
        assert labels.shape == (64, 128) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= set(range(19))  # train ids, never 255
        valid = truth != 255
        accuracy = (labels[valid] == truth[valid]).mean()
        assert accuracy > 0.9, f'{path.name}: pixel accuracy {accuracy:.3f}'  # the released model: aAcc 99.4
        overlay = np.asarray(Image.open(out / 'vis' / path.name).convert('RGB'), dtype=np.int16)
        original = np.asarray(Image.open(path).convert('RGB'), dtype=np.int16)
        assert overlay.shape == original.shape and np.abs(overlay - original).mean() > 1
    assert f'{images[0]}: road' in printed


def test_mmsegmentation_apis_run_the_zoo_configs(tmp_path, capsys):
    """MMSegmentation's own MMSegInferencer and init_model/inference_model on the zoo's config (CheckSegMap in
    its test pipeline) give tools/infer.py's label map."""
    import mmcv
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    image = tmp_path / 'scene.png'
    Image.fromarray(make_tiny_cityscapes.make_scene(np.random.default_rng(11), 64, 128)[0]).save(image)
    assert run([*SEG, str(image), '--out', str(tmp_path / 'out')], capsys)[0] == 0
    mine = np.asarray(Image.open(tmp_path / 'out' / 'pred' / 'scene_labelTrainIds.png'))

    inferencer = MMSegInferencer(model=SEG[0], weights=SEG[1], device='cpu')
    inferencer.show_progress = False
    assert np.array_equal(inferencer(str(image))['predictions'], mine)
    model = init_model(SEG[0], SEG[1], device='cpu')
    from_path = inference_model(model, str(image)).pred_sem_seg.data[0].numpy()
    from_array = inference_model(model, mmcv.imread(str(image))).pred_sem_seg.data[0].numpy()
    assert np.array_equal(from_path, mine) and np.array_equal(from_array, mine)


def test_checkseg_map_in_the_full_cityscapes_pipelines(tmp_path):
    """The full-size config's test pipeline (Resize, then CheckSegMap) as MMSegInferencer and inference_model
    build it: an image passes; a dataset sample whose mask was not loaded, or holds a label id, is refused."""
    from types import SimpleNamespace

    from mmengine.config import Config
    from mmseg.apis import MMSegInferencer
    from mmseg.apis.utils import _preprare_data
    from segmentation.sau_seg.transforms import CheckSegMap
    from tools.zoo.errors import InputError
    cfg = Config.fromfile('segmentation/configs/unet_sau_cityscapes.py')
    assert 'CheckSegMap' in [step['type'] for step in cfg.test_pipeline]
    image = tmp_path / 'scene.png'
    Image.fromarray(make_tiny_cityscapes.make_scene(np.random.default_rng(12), 64, 128)[0]).save(image)
    pipeline = MMSegInferencer._init_pipeline(MMSegInferencer.__new__(MMSegInferencer), cfg)
    packed = pipeline(str(image))
    assert tuple(packed['inputs'].shape) == (3, 1024, 2048)  # Cityscapes' test scale
    data, _ = _preprare_data(str(image), SimpleNamespace(cfg=cfg))
    assert tuple(data['inputs'][0].shape) == (3, 1024, 2048)

    check = CheckSegMap(num_classes=19, ignore_index=255)
    with pytest.raises(InputError, match='put LoadAnnotations before it'):
        check(dict(img_path='a.png', seg_map_path='a_gtFine_labelTrainIds.png'))
    with pytest.raises(InputError, match=r'holds values \[33\]'):
        check(dict(seg_map_path='m.png', gt_seg_map=np.full((4, 4), 33, np.uint8), ori_shape=(4, 4)))


# --- translation -------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def generated(tmp_path_factory, in_repo):
    """fairseq-generate's detokenised best hypotheses on the tiny test set, by sentence id, with the
    config's generation options (beam 4, lenpen 0.6), and the raw English test sentences."""
    from sacremoses import MosesDetokenizer
    if not osp.isfile('data/tiny_en_de/bin/dict.de.txt'):
        for command in (['tools/data/make_tiny_en_de.py', 'data/tiny_en_de/raw'],
                        ['tools/data/prepare_wmt14_en_de.py', '--out', 'data/tiny_en_de', '--raw-dir',
                         'data/tiny_en_de/raw', '--bpe-tokens', '500']):
            subprocess.run([sys.executable, *command], check=True, capture_output=True)
    results = tmp_path_factory.mktemp('generate')
    fairseq_generate = osp.join(osp.dirname(sys.executable), 'fairseq-generate')
    subprocess.run([fairseq_generate, 'data/tiny_en_de/bin', '--path', TR[1], '--user-dir', 'translation',
                    '--gen-subset', 'test', '--beam', '4', '--lenpen', '0.6', '--remove-bpe', '--max-tokens', '4000',
                    '--results-path', str(results)], check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS='1'))
    detok = MosesDetokenizer(lang='de')
    hyps = {}
    for line in (results / 'generate-test.txt').read_text(encoding='utf-8').splitlines():
        found = re.match(r'H-(\d+)\t\S+\t(.*)$', line)
        if found:
            hyps[int(found.group(1))] = detok.detokenize(found.group(2).split())
    sources = open('data/tiny_en_de/raw/test.en', encoding='utf-8').read().splitlines()
    return hyps, sources


def test_translation_equals_fairseq_generate(tmp_path, capsys, generated):
    hyps, sources = generated
    ids = [0, 1, 2, 5, 14, 20, 26, 29]  # beam 1 differs from beam 4 on 0, 2, 5, ...; beam 2 on 14, 20, 26, 29
    (tmp_path / 'in.en').write_text(''.join(sources[i] + '\n' for i in ids[2:]), encoding='utf-8')
    status, printed, _ = run([*TR, sources[ids[0]], sources[ids[1]], str(tmp_path / 'in.en'),
                              '--out', str(tmp_path / 'out')], capsys)
    assert status == 0
    lines = printed.splitlines()
    assert lines == [hyps[i] for i in ids]
    assert (tmp_path / 'out' / 'translations.txt').read_text(encoding='utf-8').splitlines() == lines
    record = json.loads((tmp_path / 'out' / 'translations.json').read_text(encoding='utf-8'))
    assert record['beam'] == 4 and [r['source'] for r in record['results']] == [sources[i] for i in ids]


def test_translation_n_best_and_stdin(capsys, monkeypatch, generated):
    hyps, sources = generated
    monkeypatch.setattr(sys, 'stdin', io.StringIO(sources[1] + '\n\n' + sources[2] + '\n'))
    status, printed, _ = run([*TR, '--n-best', '3', '--beam', '4'], capsys)
    assert status == 0
    rows = [line.split('\t') for line in printed.splitlines()]
    assert [r[0] for r in rows] == ['0'] * 3 + ['1'] * 3
    for index, source_id in enumerate((1, 2)):
        mine = rows[3 * index:3 * index + 3]
        scores = [float(r[1]) for r in mine]
        assert scores == sorted(scores, reverse=True) and len({r[2] for r in mine}) == 3
        assert mine[0][2] == hyps[source_id]
    status, _, err = run([*TR, 'A sentence.', '--n-best', '5', '--beam', '4'], capsys)
    assert status == 1 and err.startswith('error: --n-best must be between 1 and the beam size (4)')


HUB_SCRIPT = r"""
import json, sys
from fairseq.models.transformer import TransformerModel
repo, sentence = sys.argv[1], sys.argv[2]
args = (repo + '/checkpoints', 'transformer_tiny_sau_20261123-5a6d6c73.pth', repo + '/data/tiny_en_de/bin')
options = dict(tokenizer='moses', bpe='subword_nmt', bpe_codes=repo + '/data/tiny_en_de/bpe/code')
out = {}
try:  # nothing of the zoo imported yet: fairseq cannot build SAU
    TransformerModel.from_pretrained(*args, **options)
except Exception as e:
    out['error'] = f'{type(e).__name__}: {e}'
import translation  # registers SAU; fairseq's own loader then needs no user_dir
out['plain'] = TransformerModel.from_pretrained(*args, **options).translate([sentence], beam=4, lenpen=0.6)[0]
out['user_dir'] = TransformerModel.from_pretrained(*args, user_dir=translation.USER_DIR, **options).translate(
    [sentence], beam=4, lenpen=0.6)[0]
hub = translation.from_pretrained(repo + '/checkpoints/transformer_tiny_sau_20261123-5a6d6c73.pth',
                                  repo + '/data/tiny_en_de/bin')
out['zoo'] = hub.translate([sentence], beam=4, lenpen=0.6)[0]
print(json.dumps(out))
"""


def test_fairseq_hub_loads_the_checkpoint(tmp_path, generated):
    """fairseq's TransformerModel.from_pretrained, in a fresh process outside the repository: without the zoo
    imported the error names --user-dir; after ``import translation`` no user_dir is needed; with
    ``user_dir=translation.USER_DIR`` and through ``translation.from_pretrained``: fairseq-generate's output."""
    hyps, sources = generated
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-c', HUB_SCRIPT, REPO, sources[5]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert 'sau' in out['error'] and '--user-dir' in out['error']
    assert out['plain'] == out['user_dir'] == out['zoo'] == hyps[5]


def test_readme_pictures_are_what_the_demo_writes(tmp_path, capsys):
    """detection/demo_result.jpg and segmentation/demo_result.png: tools/infer.py's output for make demo's
    inputs (tools/demo.py SHOW) with the released checkpoints, so the README shows what the tool gives."""
    from tools import demo
    from tools.zoo.tasks import TASKS
    for name, config, picture in (('detection', DET, 'detection/demo_result.jpg'),
                                  ('segmentation', SEG, 'segmentation/demo_result.png')):
        inputs, flags = demo.SHOW[name]
        if not osp.isfile(inputs[0]):
            for command in TASKS[name].prepare:
                subprocess.run([sys.executable, *command], check=True, capture_output=True)
        out = tmp_path / name
        assert run([*config, *inputs, '--out', str(out), *flags], capsys)[0] == 0
        written = np.asarray(Image.open(out / 'vis' / osp.basename(inputs[0])).convert('RGB'), dtype=np.int16)
        committed = np.asarray(Image.open(picture).convert('RGB'), dtype=np.int16)
        assert written.shape == committed.shape and np.abs(written - committed).mean() < 1.0, picture
        assert osp.getsize(picture) < 100 * 1024


def test_demo_prints_translations(tmp_path, capsys, generated):
    """make demo's translation step (tools/demo.py show): tools/infer.py in a subprocess on the first test
    sentences; the lines it prints are fairseq-generate's translations."""
    from tools import demo
    from tools.zoo.tasks import TASKS
    hyps, sources = generated
    shown = demo.show('translation', TASKS['translation'], TR[1], str(tmp_path / 'infer'))
    printed = capsys.readouterr().out
    pairs = [line.strip().split('  ->  ') for line in printed.splitlines() if '  ->  ' in line]
    assert pairs == [[sources[i], hyps[i]] for i in range(demo.TEST_SENTENCES)]
    assert osp.isfile(osp.join(REPO, shown)) and shown.endswith('translations.txt')


# --- checkpoints from URLs, bad input ----------------------------------------------------------
def test_url_checkpoint_is_downloaded_and_hash_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv('SAU_ZOO_CACHE', str(tmp_path / 'cache'))
    name = osp.basename(SEG[1])
    good = tmp_path / 'server' / name
    good.parent.mkdir()
    shutil.copy(SEG[1], good)
    image = tmp_path / 'scene_leftImg8bit.png'
    Image.fromarray(make_tiny_cityscapes.make_scene(np.random.default_rng(1), 64, 128)[0]).save(image)
    status, _, err = run([SEG[0], good.as_uri(), str(image), '--out', str(tmp_path / 'out')], capsys)
    assert status == 0, err
    assert (tmp_path / 'cache' / 'checkpoints' / name).is_file()
    assert (tmp_path / 'out' / 'pred' / 'scene_labelTrainIds.png').is_file()

    bad = tmp_path / 'tampered' / name
    bad.parent.mkdir()
    data = bytearray(good.read_bytes())
    data[-100] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setenv('SAU_ZOO_CACHE', str(tmp_path / 'cache2'))
    status, _, err = run([SEG[0], bad.as_uri(), str(image)], capsys)
    assert status == 1 and err.count('\n') == 1 and err.startswith('error: ') and 'hash' in err
    assert not (tmp_path / 'cache2' / 'checkpoints' / name).exists()


class Marker:
    """An object a weights-only load refuses (its class is not on the zoo's allow-list)."""


def test_checkpoint_needing_a_full_unpickle_needs_trust(tmp_path, capsys):
    import torch
    state = torch.load(SEG[1], map_location='cpu', weights_only=False)
    state['meta']['marker'] = Marker()
    path = tmp_path / 'unet_with_marker.pth'
    torch.save(state, path)
    image = tmp_path / 'scene.png'
    Image.fromarray(make_tiny_cityscapes.make_scene(np.random.default_rng(2), 64, 128)[0]).save(image)
    status, _, err = run([SEG[0], str(path), str(image), '--out', str(tmp_path / 'out')], capsys)
    assert status == 1 and err.startswith(f'error: refusing to load checkpoint {path}') and '--trust-checkpoint' in err
    assert not (tmp_path / 'out' / 'pred').exists()
    status, _, err = run([SEG[0], str(path), str(image), '--out', str(tmp_path / 'out'), '--trust-checkpoint'],
                         capsys)
    assert status == 0, err
    assert (tmp_path / 'out' / 'pred' / 'scene_labelTrainIds.png').is_file()


@pytest.mark.parametrize('case', ['missing image', 'checkpoint of another model', 'mm checkpoint for fairseq',
                                  'empty folder'])
def test_bad_input_is_one_error_line(tmp_path, capsys, case):
    (tmp_path / 'empty').mkdir()
    argv = {
        'missing image': [*DET, str(tmp_path / 'nothere.jpg')],
        'checkpoint of another model': [DET[0], SEG[1], str(tmp_path / 'x.jpg')],
        'mm checkpoint for fairseq': [TR[0], SEG[1], 'A sentence.'],
        'empty folder': [*SEG, str(tmp_path / 'empty')],
    }[case]
    if case == 'checkpoint of another model':
        make_tiny_voc.make_image(random.Random(0))[0].save(tmp_path / 'x.jpg')
    status, _, err = run(argv + ['--out', str(tmp_path / 'out')], capsys)
    lines = err.strip().splitlines()
    assert status == 1 and lines[-1].startswith('error: '), err
    expected = {'missing image': 'input not found', 'checkpoint of another model': 'does not fit',
                'mm checkpoint for fairseq': 'not a fairseq checkpoint', 'empty folder': 'holds no image'}[case]
    assert expected in lines[-1]
