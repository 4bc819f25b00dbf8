"""Check a Pascal VOC devkit for the SSD300 VOC07+12 recipe and say precisely what is missing or broken.

Needed: VOC2007 trainval + test and VOC2012 trainval, each as
``VOC<year>/{JPEGImages/<id>.jpg, Annotations/<id>.xml, ImageSets/Main/<split>.txt}``. Each split is also
checked for content (:func:`check_split`, which ``tools/train.py``/``tools/eval.py`` run on every VOC-format
dataset of a config before training or testing): empty image lists, JPEGs that are empty, not JPEG or
truncated, XML that does not parse, objects of unknown classes, boxes outside their image.

Usage: python tools/data/check_voc.py [data/VOCdevkit] [--years 2007 2012]
Exit status 0 when complete, 1 otherwise (one line per problem).
"""
import argparse
import os.path as osp
import sys
from xml.etree import ElementTree as ET

#: year -> split -> image count of the official release
SPLITS = {'2007': {'trainval': 5011, 'test': 4952}, '2012': {'trainval': 11540}}
DOWNLOAD = {
    '2007': 'VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar',
    '2012': 'VOCtrainval_11-May-2012.tar',
}
#: MMDetection's VOCDataset classes
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')


def _boxes(xml_path):
    """(width, height or None, [(name, (xmin, ymin, xmax, ymax))]) of one VOC annotation; raises ET.ParseError
    for XML that does not parse, ValueError for an object without a name or numeric box."""
    root = ET.parse(xml_path).getroot()
    size = root.find('size')
    width = height = None
    if size is not None and size.findtext('width') and size.findtext('height'):
        width, height = int(float(size.findtext('width'))), int(float(size.findtext('height')))
    objects = []
    for obj in root.findall('object'):
        name, box = obj.findtext('name'), obj.find('bndbox')
        if not name or box is None:
            raise ValueError('an <object> without <name> or <bndbox>')
        try:
            coords = tuple(float(box.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        except (TypeError, ValueError):
            raise ValueError(f'object {name!r} has a non-numeric or missing box coordinate') from None
        objects.append((name.strip(), coords))
    return width, height, objects


def check_split(voc, ids, label, classes=VOC_CLASSES, training=False, max_listed=3):
    """(problems, notes) for the images ``ids`` of the VOC-format folder ``voc`` (``label`` starts each line).

    Problems: missing files, JPEGs that cannot decode (empty, not JPEG, truncated), XML that does not parse,
    objects of classes outside ``classes``, boxes outside their image or empty (VOC boxes are 1-based and
    inclusive, ``1 <= xmin < xmax <= width``; one pixel off either edge is let through), and, when
    ``training``, no object in any image. Notes: images without objects (MMDetection's ``filter_empty_gt``
    skips them in training; in testing they can only hold false positives).
    """
    from tools.zoo.data_checks import image_file_problem
    problems, notes = [], []
    if not ids:
        return [f'{label}: the image list is empty'], notes

    def report(what, found, total, unit='images'):
        if found:
            shown = '; '.join(found[:max_listed])
            problems.append(f'{label}: {len(found)} of {total} {unit} {what} in {voc} (e.g. {shown})')

    for kind, sub, ext in (('images', 'JPEGImages', '.jpg'), ('annotations', 'Annotations', '.xml')):
        absent = [i for i in ids if not osp.isfile(osp.join(voc, sub, i + ext))]
        report('missing', [osp.join(sub, i + ext) for i in absent], len(ids), kind)
    if problems:
        return problems, notes
    undecodable = [f'JPEGImages/{i}.jpg {problem}' for i in ids
                   if (problem := image_file_problem(osp.join(voc, 'JPEGImages', i + '.jpg')))]
    report('cannot be decoded', undecodable, len(ids))
    unparsable, unknown, outside, empty = [], [], [], []
    n_objects = 0
    for i in ids:
        xml = f'Annotations/{i}.xml'
        try:
            width, height, objects = _boxes(osp.join(voc, xml))
        except (ET.ParseError, ValueError) as e:
            unparsable.append(f'{xml}: {e}')
            continue
        known = [(name, box) for name, box in objects if name in classes]
        unknown += [f'{xml}: {name!r}' for name, _ in objects if name not in classes]
        for name, (x0, y0, x1, y1) in known:
            if x1 <= x0 or y1 <= y0 or x0 < 0 or y0 < 0 or (
                    width is not None and (x1 > width + 1 or y1 > height + 1)):
                outside.append(f'{xml}: {name} xmin {x0:g} ymin {y0:g} xmax {x1:g} ymax {y1:g} in a '
                               f'{width}x{height} image')
        n_objects += len(known)
        if not known:
            empty.append(f'{xml}')
    report('do not parse', unparsable, len(ids), 'annotations')
    if unknown:
        problems.append(f'{label}: {len(unknown)} objects in {voc} are of a class the dataset does not have '
                        f'(e.g. {"; ".join(unknown[:max_listed])}); MMDetection would drop them silently; its '
                        f'classes: {", ".join(classes)}')
    report('have a box outside their image or an empty box', outside, n_objects, 'objects')
    if empty and not problems:
        if training and len(empty) == len(ids):
            problems.append(f'{label}: none of the {len(ids)} images has an object: nothing to train on')
        else:
            notes.append(f'{label}: {len(empty)} of {len(ids)} images have no object ('
                         + ('MMDetection skips them in training (filter_empty_gt)' if training
                            else 'they can only hold false positives') + f'), e.g. {", ".join(empty[:max_listed])}')
    return problems, notes


def read_ids(list_file):
    with open(list_file) as f:
        return [line.split()[0] for line in f if line.strip()]


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
            ids = read_ids(list_file)
            if not ids:
                problems.append(f'{list_file} is empty')
                continue
            found, split_notes = check_split(voc, ids, f'VOC{year} {split}', training=split == 'trainval',
                                             max_listed=max_listed)
            problems += found
            notes += split_notes
            if len(ids) != expected:
                notes.append(f'VOC{year} {split}: {len(ids)} images listed; the official release has '
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
