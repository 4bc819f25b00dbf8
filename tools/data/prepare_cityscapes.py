"""Prepare a Cityscapes download for training: write ``*_gtFine_labelTrainIds.png`` and report what is missing.

Expected layout (unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into DATA_ROOT)::

    DATA_ROOT/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    DATA_ROOT/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png   (and _polygons.json)

For every image it writes ``..._gtFine_labelTrainIds.png`` next to the ``labelIds`` file, mapping label ids
to the 19 train ids (255 = ignore) with the table in ``cityscapesscripts.helpers.labels``; where only
``_polygons.json`` is there it rasterises it with ``cityscapesscripts``' ``json2labelImg``. Then it checks
every train-id mask (one channel, image size, values 0..18 or 255) and prints one line per problem.

    python tools/data/prepare_cityscapes.py data/cityscapes            # convert + check, exit 1 on problems
    python tools/data/prepare_cityscapes.py data/cityscapes --check-only
    python tools/data/prepare_cityscapes.py data/cityscapes --splits val   # evaluation only: no train split

Conversion and checks run over ``--nproc`` processes (default: all cores), one frame per job.
"""
import argparse
import glob
import os
import os.path as osp
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image

from tools.zoo.data_checks import mask_values_outside

IMG_SUFFIX = '_leftImg8bit.png'
IDS_SUFFIX = '_gtFine_labelIds.png'
TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'
POLYGONS_SUFFIX = '_gtFine_polygons.json'
NUM_CLASSES, IGNORE = 19, 255
#: the official gtFine split (cityscapes-dataset.com): image count and cities
OFFICIAL = {
    'train': (2975, ('aachen', 'bochum', 'bremen', 'cologne', 'darmstadt', 'dusseldorf', 'erfurt',
                     'hamburg', 'hanover', 'jena', 'krefeld', 'monchengladbach', 'strasbourg',
                     'stuttgart', 'tubingen', 'ulm', 'weimar', 'zurich')),
    'val': (500, ('frankfurt', 'lindau', 'munster')),
}
ZIPS = {'leftImg8bit': 'leftImg8bit_trainvaltest.zip', 'gtFine': 'gtFine_trainvaltest.zip'}


def label_id_to_train_id_lut():
    """A 256-entry table label id -> train id (255 for ignored ids, -1 for ids Cityscapes does not define)."""
    from cityscapesscripts.helpers.labels import labels
    lut = np.full(256, -1, dtype=np.int16)
    for label in labels:
        if label.id >= 0:
            lut[label.id] = label.trainId if 0 <= label.trainId < IGNORE else IGNORE
    return lut


def convert_label_ids(src, dst, lut=None):
    """Write the train-id mask for one ``*_labelIds.png``; ValueError naming the file on an unknown id."""
    lut = label_id_to_train_id_lut() if lut is None else lut
    ids = np.asarray(Image.open(src))
    if ids.ndim != 2 or ids.dtype != np.uint8:
        raise ValueError(f'{src}: expected an 8-bit one-channel label-id image, got {ids.dtype} {ids.shape}')
    train_ids = lut[ids]
    if (train_ids < 0).any():
        bad = np.unique(ids[train_ids < 0]).tolist()
        raise ValueError(f'{src}: label ids {bad} are not Cityscapes label ids (0..33)')
    Image.fromarray(train_ids.astype(np.uint8)).save(dst)


def check_train_ids(mask_path, img_path):
    """The problem with one train-id mask as a string, or None if it is fine."""
    try:
        with Image.open(mask_path) as m:
            mask = np.asarray(m)
        with Image.open(img_path) as im:
            img_size = im.size[::-1]
    except Exception as e:  # unreadable or truncated PNG
        return f'{mask_path}: cannot read ({e})'
    if mask.ndim != 2:
        return f'{mask_path}: shape {mask.shape}, expected one channel of train ids'
    if mask.shape != img_size:
        return f'{mask_path}: size {mask.shape} differs from its image {img_size}'
    bad, _ = mask_values_outside(mask, NUM_CLASSES, IGNORE)
    if bad:
        return f'{mask_path}: values {bad} are neither train ids 0..{NUM_CLASSES - 1} nor {IGNORE}'
    return None


def _convert_one(job):
    stem, overwrite = job
    dst = stem + TRAIN_IDS_SUFFIX
    try:
        if osp.isfile(dst) and not overwrite:
            return None
        if osp.isfile(stem + IDS_SUFFIX):
            convert_label_ids(stem + IDS_SUFFIX, dst)
        else:
            from cityscapesscripts.preparation.json2labelImg import json2labelImg
            json2labelImg(stem + POLYGONS_SUFFIX, dst, 'trainIds')
    except (Exception, SystemExit) as e:  # cityscapesscripts' printError exits on an unknown polygon label
        return f'{dst}: conversion failed ({type(e).__name__}: {e})'
    return None


def _check_one(pair):
    return check_train_ids(*pair)


def prepare(root, splits=('train', 'val'), check_only=False, overwrite=False, allow_subset=False, nproc=1,
            log=print):
    """Convert and check; returns the list of problems (empty when the data is ready to train on)."""
    problems = []
    if not osp.isdir(root):
        return [f'{root}: data root does not exist; unzip {ZIPS["leftImg8bit"]} and {ZIPS["gtFine"]} there']
    for split in splits:
        img_dir, gt_dir = osp.join(root, 'leftImg8bit', split), osp.join(root, 'gtFine', split)
        missing_dirs = [(d, z) for d, z in ((img_dir, ZIPS['leftImg8bit']), (gt_dir, ZIPS['gtFine']))
                        if not osp.isdir(d)]
        for d, z in missing_dirs:
            problems.append(f'{d}: folder missing (it comes from {z})')
        if missing_dirs:
            continue
        imgs = sorted(glob.glob(osp.join(img_dir, '*', '*' + IMG_SUFFIX)))
        stems = {osp.relpath(p, img_dir)[:-len(IMG_SUFFIX)]: p for p in imgs}
        gt_files = glob.glob(osp.join(gt_dir, '*', '*_gtFine_*'))
        gt_stems = {}
        for p in gt_files:
            rel = osp.relpath(p, gt_dir)
            gt_stems.setdefault(rel[:rel.rindex('_gtFine_')], set()).add(rel[rel.rindex('_gtFine_'):])

        expected_count, cities = OFFICIAL.get(split, (None, ()))
        found_cities = {s.split(os.sep)[0] for s in stems}
        log(f'{split}: {len(stems)} images in {len(found_cities)} cities'
            + (f' (official: {expected_count} in {len(cities)})' if expected_count else ''))
        if not stems:
            problems.append(f'{img_dir}: no *{IMG_SUFFIX} files')
            continue
        if expected_count and not allow_subset:
            absent = [c for c in cities if c not in found_cities]
            if absent:
                problems.append(f'{split}: cities missing under {img_dir}: {", ".join(absent)}')
            if len(stems) != expected_count:
                problems.append(f'{split}: {len(stems)} images, the official split has {expected_count} '
                                '(pass --allow-subset to accept a subset)')

        unannotated = sorted(s for s in stems if not gt_stems.get(s, set())
                             & {IDS_SUFFIX, TRAIN_IDS_SUFFIX, POLYGONS_SUFFIX})
        for s in unannotated:
            problems.append(f'{osp.join(gt_dir, s)}{IDS_SUFFIX}: missing (image {stems[s]} has no annotation)')
        for s in sorted(set(gt_stems) - set(stems)):
            problems.append(f'{osp.join(img_dir, s)}{IMG_SUFFIX}: missing (annotation '
                            f'{osp.join(gt_dir, s)}{sorted(gt_stems[s])[0]} has no image)')

        annotated = [s for s in sorted(stems) if s not in unannotated]
        if not check_only:
            todo = [(osp.join(gt_dir, s), overwrite) for s in annotated
                    if overwrite or TRAIN_IDS_SUFFIX not in gt_stems[s]]
            log(f'{split}: writing {len(todo)} *{TRAIN_IDS_SUFFIX} files')
            problems += [p for p in _map(_convert_one, todo, nproc) if p]
        pairs = [(osp.join(gt_dir, s) + TRAIN_IDS_SUFFIX, stems[s]) for s in annotated
                 if osp.isfile(osp.join(gt_dir, s) + TRAIN_IDS_SUFFIX)]
        not_converted = len(annotated) - len(pairs)
        if not_converted:
            problems.append(f'{split}: {not_converted} images have no *{TRAIN_IDS_SUFFIX} yet '
                            '(run without --check-only)')
        problems += [p for p in _map(_check_one, pairs, nproc) if p]
        log(f'{split}: checked {len(pairs)} train-id masks')
    return problems


def _map(fn, items, nproc):
    if nproc > 1 and len(items) > 1:
        with Pool(nproc) as pool:
            return pool.map(fn, items, chunksize=16)
    return [fn(i) for i in items]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('data_root', nargs='?', default='data/cityscapes')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'])
    parser.add_argument('--check-only', action='store_true', help='write nothing, only report')
    parser.add_argument('--overwrite', action='store_true', help='rewrite existing *_labelTrainIds.png')
    parser.add_argument('--allow-subset', action='store_true',
                        help='do not report cities or images missing from the official split')
    parser.add_argument('--nproc', type=int, default=os.cpu_count(),
                        help='processes for the conversion and the checks (default: all cores)')
    args = parser.parse_args(argv)
    problems = prepare(args.data_root, args.splits, args.check_only, args.overwrite, args.allow_subset,
                       args.nproc)
    for p in problems:
        print(f'PROBLEM {p}', file=sys.stderr)
    if problems:
        print(f'{len(problems)} problems: {args.data_root} is not ready', file=sys.stderr)
        return 1
    print(f'{args.data_root} is ready: train with '
          'python tools/train.py segmentation/configs/unet_sau_cityscapes.py')
    return 0


if __name__ == '__main__':
    sys.exit(main())
