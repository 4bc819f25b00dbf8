#!/usr/bin/env python
"""Run a zoo checkpoint on your own input and look at the result: one interface for the three tasks.

    python tools/infer.py CONFIG CHECKPOINT INPUT... [--out DIR] [--score-thr T] [--device D]
    python tools/infer.py CONFIG CHECKPOINT --sample          # on a generated sample input

Built on the frameworks' own inference APIs, which do the drawing and decoding:

- detection (``mmdet.apis.DetInferencer``): INPUT is images or folders of images. Writes ``OUT/vis/<image>``
  (boxes with class names and scores at or above ``--score-thr`` drawn by MMDetection's visualizer),
  ``OUT/preds/<image>.json`` (MMDetection's own dump: every box) and ``OUT/predictions.json`` (per image the
  boxes at or above ``--score-thr``: ``bbox`` [x1, y1, x2, y2] in input pixels, ``label``, ``class``, ``score``).
- segmentation (``mmseg.apis.MMSegInferencer``): INPUT is images or folders. Writes ``OUT/vis/<image>`` (the
  prediction as a colour overlay in the checkpoint's palette, Cityscapes' for the zoo's models) and
  ``OUT/pred/<image stem>_labelTrainIds.png`` (one channel of train ids, as the Cityscapes ground truth;
  a ``_leftImg8bit`` ending of the stem is dropped).
- translation (fairseq's hub interface, ``TransformerModel.from_pretrained``): INPUT is sentences, files of
  one sentence per line, or ``-`` for standard input (also read when no INPUT is given and it is not a
  terminal). Sentences get the training data's preprocessing (Moses punctuation normalisation and
  tokenisation as ``tools/data/prepare_wmt14_en_de.py``, then the BPE codes of the data folder the config
  names), and the translations come back de-BPE'd and Moses-detokenised. ``--beam`` and ``--n-best``
  (default: the config's ``fairseq.generate``); ``OUT/translations.txt`` (best) and ``OUT/translations.json``
  (n-best with scores) are written too.

``CHECKPOINT`` may be a URL: it is downloaded once and checked against the sha256 prefix in its name, and every
load is ``weights_only=True`` (``--trust-checkpoint`` for a local file that needs a full unpickle), as
``tools/eval.py`` does it (``tools.zoo.io``); a checkpoint of another model is refused with one line that says so.
"""
import argparse
import json
import logging
import os
import os.path as osp
import sys
from typing import Any, NamedTuple

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

from tools.zoo.config import check_cfg_options, check_config_kind, framework_errors, load_config  # noqa: E402
from tools.zoo.data_checks import image_file_problem  # noqa: E402
from tools.zoo.errors import InputError, quieted, run_main  # noqa: E402
from tools.zoo.io import (TRUST_FLAG, check_checkpoint_matches, checkpoint_loading, fetch_checkpoint,  # noqa: E402
                          read_checkpoint)

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
DEFAULT_OUT = 'work_dirs/infer'
#: seeds of the generated sample inputs (``--sample``): a detection image with two objects the tiny SSD finds
SAMPLE_SEEDS = dict(detection=72, segmentation=2026, translation=2026)


# --- config, checkpoint and model ----------------------------------------------------------------
def task_of(cfg):
    """'detection', 'segmentation' or 'translation' for a zoo config."""
    if 'fairseq' in cfg:
        return 'translation'
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        return 'detection'
    if scope == 'mmseg':
        return 'segmentation'
    raise InputError(f'cannot tell the task of this config (default_scope={scope!r}); the zoo\'s configs are '
                     'MMDetection (mmdet), MMSegmentation (mmseg) or fairseq (fairseq = dict(...)) ones')


def resolve(config, checkpoint, cfg_options=None, trust=False):
    """(cfg, task, local checkpoint path): the config loaded (``--cfg-options`` merged), a URL downloaded and
    hash-checked, the file checked to be a checkpoint of the config's framework that loads with
    ``weights_only=True`` (``trust``: ``--trust-checkpoint``, a local file may need a full unpickle), as
    ``tools/eval.py`` checks it."""
    cfg = load_config(config)
    check_config_kind(cfg, config)
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    task = task_of(cfg)
    path = fetch_checkpoint(checkpoint, trust=trust)  # a URL is never trusted
    if not osp.isfile(path):
        raise InputError(f'checkpoint not found: {path}')
    state = read_checkpoint(path, trust=trust)
    if task == 'translation' and not (isinstance(state, dict) and 'model' in state and 'cfg' in state):
        raise InputError(f'{path} is not a fairseq checkpoint (no model and cfg entries); a translation config '
                         'needs a checkpoint of tools/train.py on a translation config')
    if task != 'translation' and not (isinstance(state, dict) and 'state_dict' in state):
        raise InputError(f'{path} holds no state_dict: not an MMEngine checkpoint of a {task} model')
    return cfg, task, path


def resolve_device(device):
    import torch
    if device is None:
        return 'cuda:0' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise InputError(f'--device {device}: no CUDA device is available here; use --device cpu')
    if not (device == 'cpu' or device.startswith('cuda')):
        raise InputError(f'--device {device}: expected cpu, cuda or cuda:N')
    return device


class Loaded(NamedTuple):
    task: str
    cfg: Any
    model: Any  # the detector / segmentor (nn.Module), or fairseq's GeneratorHubInterface
    checkpoint: str


def load_model(config, checkpoint, device='cpu', cfg_options=None, trust=False):
    """The model of a zoo checkpoint with its framework's own loader (``init_detector``, mmseg's
    ``init_model``, fairseq's ``from_pretrained``), weights checked to fit the config exactly."""
    cfg, task, path = resolve(config, checkpoint, cfg_options, trust)
    device = resolve_device(device)
    with framework_errors(), checkpoint_loading(trust):
        if task == 'detection':
            from mmdet.apis import init_detector
            model = init_detector(cfg, path, device=device)
        elif task == 'segmentation':
            from mmseg.apis import init_model
            model = init_model(cfg, path, device=device)
        else:
            return Loaded(task, cfg, load_hub(cfg, path, device, trust), path)
    check_checkpoint_matches(model, path, trust=trust)
    return Loaded(task, cfg, model.eval(), path)


def repo_path(path):
    """A config's relative data path as it is when it exists from here, else under the repository root (the
    configs' paths are relative to the root, where the zoo's tools are run from)."""
    if osp.isabs(path) or osp.exists(path) or not osp.exists(osp.join(REPO_ROOT, path)):
        return path
    return osp.join(REPO_ROOT, path)


# --- translation ---------------------------------------------------------------------------------
def translation_files(cfg):
    """(data folder with dict.*.txt, BPE codes file) of a translation config: ``fairseq.data`` and the
    ``bpe/code`` beside it, where ``tools/data/prepare_wmt14_en_de.py`` writes them."""
    from pathlib import Path
    data = Path(repo_path(cfg.fairseq.data))
    hint = ('make it with tools/data/prepare_wmt14_en_de.py (for the tiny config: python tools/data/make_tiny_en_de.py '
            'data/tiny_en_de/raw; python tools/data/prepare_wmt14_en_de.py --out data/tiny_en_de --raw-dir '
            'data/tiny_en_de/raw --bpe-tokens 500), or point the config at it with --cfg-options fairseq.data=DIR')
    missing = [name for name in ('dict.en.txt', 'dict.de.txt') if not (data / name).is_file()]
    if missing:
        raise InputError(f'translation needs the dictionaries of the data the model was trained on: {data} has no '
                         f'{", ".join(missing)}; {hint}')
    import translation
    codes = Path(translation.bpe_codes_of(str(data)))
    if not codes.is_file():
        raise InputError(f'translation needs the BPE codes the training data was split with: {codes} not found; '
                         f'{hint}')
    return str(data), str(codes)


def load_hub(cfg, checkpoint, device='cpu', trust=False):
    """fairseq's ``GeneratorHubInterface`` for a zoo translation checkpoint (``translation.from_pretrained``:
    ``TransformerModel.from_pretrained`` with the zoo's ``user_dir``, Moses tokenisation and the data folder's BPE
    codes)."""
    import translation
    data, codes = translation_files(cfg)
    train = cfg.fairseq.get('train') or {}
    with framework_errors():
        hub = translation.from_pretrained(checkpoint, data, bpe_codes=codes, trust=trust,
                                          source_lang=train.get('source_lang', 'en'),
                                          target_lang=train.get('target_lang', 'de'))
    hub.eval()
    if device.startswith('cuda'):
        hub.to(device)
    return hub


def generation_options(cfg, beam=None, n_best=None):
    """fairseq generation options: the config's ``fairseq.generate`` ones fairseq's GenerationConfig knows,
    with ``--beam`` / ``--n-best`` on top."""
    import dataclasses

    from fairseq.dataclass.configs import GenerationConfig
    known = {f.name for f in dataclasses.fields(GenerationConfig)} - {'_name'}
    options = {k: v for k, v in (cfg.fairseq.get('generate') or {}).items() if k in known}
    options.setdefault('beam', 5)
    if beam is not None:
        if beam < 1:
            raise InputError(f'--beam must be at least 1, got {beam}')
        options['beam'] = beam
    if n_best is not None:
        if not 1 <= n_best <= options['beam']:
            raise InputError(f'--n-best must be between 1 and the beam size ({options["beam"]}), got {n_best}')
        options['nbest'] = n_best
    return options


def preprocess_sentences(sentences, lang):
    """The training data's Moses normalisation and tokenisation (``prepare_wmt14_en_de.tokenize``)."""
    from tools.data.prepare_wmt14_en_de import tokenize
    return tokenize(list(sentences), lang)


def translate(hub, sentences, options):
    """For each sentence, ``[(detokenised translation, score), ...]`` best first (``options['nbest']`` of
    them): the training preprocessing, then fairseq's ``hub.generate`` and ``hub.decode``."""
    options = dict(options)
    beam = options.pop('beam')
    lang = hub.cfg.task.source_lang
    tokenized = preprocess_sentences(sentences, lang)
    tokens = [hub.binarize(hub.apply_bpe(line)) for line in tokenized]
    too_long = [i for i, t in enumerate(tokens) if t.numel() > hub.max_positions[0]]
    if too_long:
        raise InputError(f'sentence {too_long[0] + 1} has {tokens[too_long[0]].numel()} subword tokens, more than '
                         f'the model\'s {hub.max_positions[0]} positions')
    n_best = options.get('nbest', 1)
    results = hub.generate(tokens, beam=beam, **options)  # every beam's hypothesis, best first
    return [[(hub.decode(h['tokens']), float(h['score'])) for h in hypos[:n_best]] for hypos in results]


def read_sentences(inputs):
    """Sentences from arguments, files (one per line) and ``-`` (standard input)."""
    sentences = []
    for item in inputs:
        if item == '-':
            sentences += sys.stdin.read().splitlines()
        elif osp.isfile(item):
            with open(item, encoding='utf-8') as f:
                sentences += f.read().splitlines()
        else:
            sentences.append(item)
    sentences = [s.strip() for s in sentences]
    return [s for s in sentences if s]


def run_translation(args, cfg, checkpoint):
    inputs = args.inputs or (['-'] if not sys.stdin.isatty() else [])
    sentences = read_sentences(inputs)
    if not sentences:
        raise InputError('no sentence to translate: give sentences, a file (one per line) or - for stdin')
    options = generation_options(cfg, args.beam, args.n_best)
    hub = load_hub(cfg, checkpoint, args.device, args.trust_checkpoint)
    results = translate(hub, sentences, options)
    n_best = options.get('nbest', 1)
    for i, hypos in enumerate(results):
        if n_best == 1:
            print(hypos[0][0])
        else:
            for text, score in hypos:
                print(f'{i}\t{score:.4f}\t{text}')
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(osp.join(args.out, 'translations.txt'), 'w', encoding='utf-8') as f:
            f.write(''.join(hypos[0][0] + '\n' for hypos in results))
        records = [dict(source=s, translations=[dict(text=t, score=sc) for t, sc in hypos])
                   for s, hypos in zip(sentences, results)]
        _write_json(osp.join(args.out, 'translations.json'), dict(beam=options['beam'], n_best=n_best,
                                                                  score='mean log-probability per token (base e)',
                                                                  results=records))
        print(f'translations written to {osp.join(args.out, "translations.txt")} and translations.json',
              file=sys.stderr)
    return results


# --- images --------------------------------------------------------------------------------------
def list_images(inputs):
    """Image files from files and folders (a folder: its images, sorted, not recursive)."""
    images = []
    for item in inputs:
        if osp.isdir(item):
            found = sorted(osp.join(item, name) for name in os.listdir(item)
                           if name.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                raise InputError(f'folder {item} holds no image ({", ".join(IMAGE_SUFFIXES)})')
            images += found
        elif osp.isfile(item):
            images.append(item)
        else:
            raise InputError(f'input not found: {item}')
    if not images:
        raise InputError('no input image: give image files or folders of images')
    names = {}
    for path in images:
        problem = image_file_problem(path)
        if problem:
            raise InputError(f'image {path} {problem}')
        name = osp.basename(path)
        if name in names:
            raise InputError(f'two inputs are named {name} ({names[name]} and {path}); their results would '
                             'overwrite each other under --out: rename one or run them separately')
        names[name] = path
    return images


def run_detection(args, cfg, checkpoint):
    """``DetInferencer`` on the images; returns the records of ``predictions.json``."""
    from mmdet.apis import DetInferencer
    images = list_images(args.inputs)
    with framework_errors(), checkpoint_loading(args.trust_checkpoint):
        inferencer = DetInferencer(model=cfg, weights=checkpoint, device=args.device, show_progress=False)
    check_checkpoint_matches(inferencer.model, checkpoint, trust=args.trust_checkpoint)
    classes = inferencer.model.dataset_meta['classes']
    out = args.out or DEFAULT_OUT
    results = inferencer(images, out_dir=out, pred_score_thr=args.score_thr, no_save_pred=False,
                         batch_size=args.batch_size)
    records = []
    for path, pred in zip(images, results['predictions']):
        boxes = [dict(bbox=[round(v, 2) for v in box], label=int(label), **{'class': classes[label]},
                      score=round(float(score), 4))
                 for box, label, score in zip(pred['bboxes'], pred['labels'], pred['scores'])
                 if score >= args.score_thr]
        name = osp.basename(path)
        records.append(dict(image=path, visualization=osp.join(out, 'vis', name), detections=boxes))
        shown = ', '.join(f'{b["class"]} {b["score"]:.2f}' for b in boxes[:8]) + (' ...' if len(boxes) > 8 else '')
        print(f'{path}: {len(boxes)} detections with score >= {args.score_thr}{": " + shown if boxes else ""}')
    _write_json(osp.join(out, 'predictions.json'),
                dict(config=args.config, checkpoint=checkpoint, score_thr=args.score_thr,
                     bbox_format='[x1, y1, x2, y2] in input image pixels', images=records))
    print(f'pictures in {osp.join(out, "vis")}/, predictions in {osp.join(out, "predictions.json")}')
    return records


def run_segmentation(args, cfg, checkpoint):
    """``MMSegInferencer`` on the images: MMSegmentation's colour overlay and a label-id PNG per image."""
    import numpy as np
    from mmseg.apis import MMSegInferencer
    from PIL import Image
    images = list_images(args.inputs)
    with framework_errors(), checkpoint_loading(args.trust_checkpoint):
        inferencer = MMSegInferencer(model=cfg, weights=checkpoint, device=args.device)
    inferencer.show_progress = False
    check_checkpoint_matches(inferencer.model, checkpoint, trust=args.trust_checkpoint)
    out = args.out or DEFAULT_OUT
    pred_dir = osp.join(out, 'pred')
    os.makedirs(pred_dir, exist_ok=True)
    samples = inferencer(images, out_dir=out, return_datasamples=True, batch_size=args.batch_size,
                         opacity=args.opacity, with_labels=False)
    samples = samples if isinstance(samples, list) else [samples]
    classes = inferencer.model.dataset_meta['classes']
    records = []
    for path, sample in zip(images, samples):
        labels = sample.pred_sem_seg.data[0].cpu().numpy().astype(np.uint8)
        stem = osp.splitext(osp.basename(path))[0]
        stem = stem[:-len('_leftImg8bit')] if stem.endswith('_leftImg8bit') else stem  # Cityscapes' naming
        label_png = osp.join(pred_dir, f'{stem}_labelTrainIds.png')
        Image.fromarray(labels).save(label_png)
        counts = np.bincount(labels.ravel(), minlength=len(classes))
        top = [(classes[i], counts[i] / labels.size) for i in np.argsort(-counts)[:3] if counts[i]]
        print(f'{path}: ' + ', '.join(f'{name} {share:.0%}' for name, share in top))
        records.append(dict(image=path, visualization=osp.join(out, 'vis', osp.basename(path)), labels=label_png))
    print(f'overlays in {osp.join(out, "vis")}/, label-id PNGs in {pred_dir}/')
    return records


def _write_json(path, data):
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write('\n')


# --- generated sample inputs ---------------------------------------------------------------------
def make_sample(task, out_dir):
    """A sample input for ``task`` drawn by the zoo's tiny-data generators (the same kind of input the tiny
    checkpoints were trained on, but not an image or sentence of their data); returns the INPUT list."""
    import random

    import numpy as np
    from PIL import Image
    os.makedirs(out_dir, exist_ok=True)
    if task == 'detection':
        from tools.data import make_tiny_voc
        img, _ = make_tiny_voc.make_image(random.Random(SAMPLE_SEEDS["detection"]))
        path = osp.join(out_dir, 'sample_voc.jpg')
        img.save(path, quality=92)  # as make_tiny_voc.py saves its images
        return [path]
    if task == 'segmentation':
        from tools.data import make_tiny_cityscapes
        img, _ = make_tiny_cityscapes.make_scene(np.random.default_rng(SAMPLE_SEEDS["segmentation"]), 64, 128)
        path = osp.join(out_dir, 'sample_leftImg8bit.png')
        Image.fromarray(img).save(path)
        return [path]
    from tools.data import make_tiny_en_de
    rng = random.Random(SAMPLE_SEEDS['translation'])
    pairs = [make_tiny_en_de.sentence(rng) for _ in range(4)]
    return [make_tiny_en_de.capitalise(en.replace(' .', '.')) for en, _ in pairs]


def add_trust_argument(parser):
    parser.add_argument(TRUST_FLAG, action='store_true', dest='trust_checkpoint',
                        help='load a checkpoint that needs a full unpickle (which runs any code the file carries); '
                        'only for a local file you vouch for, never a URL. Without it the checkpoint loads with '
                        'weights_only=True, as in tools/eval.py')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Run a zoo checkpoint on your own input (images or sentences)',
        epilog='detection/segmentation: INPUT = images or folders; translation: sentences, files or - (stdin)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or a URL (downloaded once, hash-checked)')
    parser.add_argument('inputs', nargs='*', metavar='INPUT', help='images/folders, or sentences/files/-')
    parser.add_argument('--out', help=f'output folder (default {DEFAULT_OUT}; translation: stdout only unless given)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: smallest score drawn and listed in predictions.json (default 0.3)')
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda:0 when available, else cpu)')
    parser.add_argument('--batch-size', type=int, default=1, help='images per forward pass (default 1)')
    parser.add_argument('--opacity', type=float, default=0.8,
                        help='segmentation: overlay opacity (default 0.8, MMSegInferencer\'s)')
    parser.add_argument('--beam', type=int, help='translation: beam size (default: the config\'s, else 5)')
    parser.add_argument('--n-best', type=int, help='translation: hypotheses per sentence (default 1)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override settings of the config (e.g. fairseq.data=DIR)')
    add_trust_argument(parser)
    parser.add_argument('--sample', action='store_true',
                        help='add a generated sample input of the task (written to OUT/sample/)')
    return parser.parse_args(argv)


def quiet_frameworks():
    """fairseq's hub logs its whole configuration at INFO, mmengine warns about pkg_resources: keep the
    tool's output to its results (for the block this returns; the caller's settings come back after)."""
    return quieted({'fairseq': logging.WARNING, 'fairseq_cli': logging.WARNING}, [
        dict(category=FutureWarning),
        dict(message='pkg_resources is deprecated'),
        dict(message=".*'pin_memory' argument is set as true"),
        # the inferencers write their pictures themselves, not through the config's LocalVisBackend
        dict(message='Failed to add .*LocalVisBackend'),
        dict(message='``build_loss`` would be deprecated'),  # mmseg's own heads
        dict(message='Default ``avg_non_ignore`` is False'),  # a training-only setting
    ])


def main(argv=None):
    args = parse_args(argv)
    with quiet_frameworks():
        return run_inference(args)


def run_inference(args):
    """Run the model ``args`` names on its inputs; 0 when done."""
    cfg, task, checkpoint = resolve(args.config, args.checkpoint, args.cfg_options, args.trust_checkpoint)
    args.device = resolve_device(args.device)
    if not 0 <= args.score_thr <= 1:
        raise InputError(f'--score-thr must be between 0 and 1, got {args.score_thr}')
    if args.batch_size < 1:
        raise InputError(f'--batch-size must be at least 1, got {args.batch_size}')
    if args.sample:
        args.inputs = list(args.inputs) + make_sample(task, osp.join(args.out or DEFAULT_OUT, 'sample'))
    if task == 'translation':
        run_translation(args, cfg, checkpoint)
    elif task == 'detection':
        run_detection(args, cfg, checkpoint)
    else:
        run_segmentation(args, cfg, checkpoint)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
