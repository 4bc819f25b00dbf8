"""Check a Pascal VOC devkit for the SSD300 VOC07+12 recipe and say precisely what is missing or broken.

Needed: VOC2007 trainval + test and VOC2012 trainval, each as
``VOC<year>/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/<split>.txt}``. Each split is checked
for content by building it as the configs do, a ``CheckedVOCDataset`` (``detection/datasets.py``, which every
entry point that builds the configs' datasets runs too): empty image lists, JPEGs that are empty, not JPEG or
truncated, XML that does not parse, objects of unknown classes, boxes outside their image.

Usage: python tools/data/check_voc.py [data/VOCdevkit] [--years 2007 2012]
Exit status 0 when complete, 1 otherwise (one line per problem).
"""
import argparse
import os.path as osp
import sys

#: year -> split -> image count of the official release
SPLITS = {'2007': {'trainval': 5011, 'test': 4952}, '2012': {'trainval': 11540}}
DOWNLOAD = {
    '2007': 'VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar',
    '2012': 'VOCtrainval_11-May-2012.tar',
}


def check_split(voc, split, label, max_listed=3):
    """(problems, notes) of ``voc/ImageSets/Main/<split>.txt``, each line starting with ``label``, read as the
    configs read it: the training split (trainval) with ``filter_empty_gt``, the others as test sets."""
    from detection.datasets import CheckedVOCDataset
    training = split == 'trainval'
    dataset = CheckedVOCDataset(ann_file=osp.join(voc, 'ImageSets', 'Main', f'{split}.txt'),
                                data_prefix=dict(sub_data_root=voc), test_mode=not training,
                                filter_cfg=dict(filter_empty_gt=True) if training else None, pipeline=[],
                                lazy_init=True)
    _, problems, notes = dataset.check(label, max_listed)
    return problems, notes


def check_voc(root, years=('2007', '2012'), max_listed=3):
    """Return (problems, notes): lists of one-line strings; no problems means usable."""
    problems, notes = [], []
    if not osp.isdir(root):
        return [f'{root} is not a directory (expected VOCdevkit with VOC2007/ and VOC2012/)'], notes
    for year in years:
        voc = osp.join(root, f'VOC{year}')
        if not osp.isdir(voc):
            problems.append(f'{voc} missing: extract {DOWNLOAD[year]} into {osp.dirname(root) or "."}')
            continue
        for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
            if not osp.isdir(osp.join(voc, sub)):
                problems.append(f'{osp.join(voc, sub)} missing')
        for split, expected in SPLITS[year].items():
            list_file = osp.join(voc, 'ImageSets', 'Main', f'{split}.txt')
            if not osp.isfile(list_file):
                problems.append(f'{list_file} missing (from {DOWNLOAD[year]})')
                continue
            with open(list_file) as f:
                listed = sum(1 for line in f if line.strip())
            if not listed:
                problems.append(f'{list_file} is empty')
                continue
            found, split_notes = check_split(voc, split, f'VOC{year} {split}', max_listed)
            problems += found
            notes += split_notes
            if listed != expected:
                notes.append(f'VOC{year} {split}: {listed} images listed; the official release has '
                             f'{expected}')
    return problems, notes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', nargs='?', default='data/VOCdevkit', help='VOCdevkit directory')
    parser.add_argument('--years', nargs='+', default=['2007', '2012'], choices=sorted(SPLITS))
    args = parser.parse_args(argv)
    problems, notes = check_voc(args.root, args.years)
    for note in notes:
        print(f'note: {note}')
    for problem in problems:
        print(f'missing: {problem}')
    if problems:
        print(f'{args.root} is incomplete ({len(problems)} problems); see detection/README.md')
        return 1
    print(f'{args.root}: VOC{" + VOC".join(args.years)} complete')
    return 0


if __name__ == '__main__':
    sys.exit(main())
