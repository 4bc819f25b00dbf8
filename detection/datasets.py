"""``VOCDataset`` that checks the data it reads and fails early, naming the files, when it is not what it expects.

mmdet's ``VOCDataset`` (``XMLDataset``) reads the image list and parses every annotation when it is built: a
missing or cut-off XML file fails with a bare ``FileNotFoundError`` or ``ParseError``, a box coordinate that is
not a number with a ``ValueError`` that names no file, objects of a class the dataset does not have are dropped
silently, boxes outside their image are kept, and a JPEG that does not decode fails mid-epoch. This subclass
parses each annotation once, as MMDetection does, checks it on the way (and the first and last bytes of every
JPEG: no decoding), and raises one ``InputError`` that names the split file, the folder and a few files of
each kind of problem; notes (images without objects) are printed. ``tools/data/check_voc.py`` runs the same
check on a whole devkit.
"""
import os.path as osp
from xml.etree import ElementTree as ET

import mmcv
from mmdet.datasets import VOCDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get, list_from_file

from tools.zoo.data_checks import image_file_problem
from tools.zoo.errors import InputError


def _size_and_objects(root):
    """(width, height or None, [(name, (xmin, ymin, xmax, ymax))]) of one parsed VOC annotation; ValueError for
    an object without a name or numeric box."""
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


@DATASETS.register_module()
class CheckedVOCDataset(VOCDataset):
    """Pascal VOC with its files checked while they are read (local files; other backends as mmdet reads them).

    Raises:
        InputError (a ValueError): naming the split file (``path``), for an empty image list, missing JPEGs or
            XML files, JPEGs that are empty, not JPEG or truncated, XML that does not parse, objects of a class
            outside the dataset's ``classes`` (MMDetection's VOC classes unless ``metainfo`` says otherwise),
            boxes outside their image or empty, and, for a training set with ``filter_empty_gt``, no object
            in any image.
    """

    def load_data_list(self):
        if self.backend_args is not None or '://' in self.ann_file or '://' in self.sub_data_root:
            return super().load_data_list()
        data_list, problems, notes = self.check(self.ann_file)
        for note in notes:
            print(f'note: {note}', flush=True)
        if problems:
            more = f' (and {len(problems) - 1} more problems)' if len(problems) > 1 else ''
            raise InputError(f'{problems[0]}{more}', path=self.ann_file)
        return data_list

    def check(self, label, max_listed=3):
        """``(data_list, problems, notes)`` of the split, each problem and note a line that starts with
        ``label``; the data list is mmdet's when there are no problems.

        Problems: missing files, JPEGs that cannot decode (empty, not JPEG, truncated), XML that does not parse,
        objects of classes outside the dataset's, boxes outside their image or empty (VOC boxes are 1-based and
        inclusive, ``1 <= xmin < xmax <= width``; one pixel off either edge is let through), and, for a
        training set with ``filter_empty_gt``, no object in any image. Notes: images without objects
        (``filter_empty_gt`` skips them in training; in testing they can only hold false positives).
        """
        classes = self._metainfo['classes']
        self.cat2label = {cat: i for i, cat in enumerate(classes)}  # as XMLDataset.load_data_list
        voc = osp.normpath(self.sub_data_root)
        ids = list_from_file(self.ann_file, backend_args=self.backend_args)
        problems, notes = [], []
        if not ids:
            return [], [f'{label}: the image list is empty'], notes

        def report(what, found, total, unit='images'):
            if found:
                shown = '; '.join(found[:max_listed])
                problems.append(f'{label}: {len(found)} of {total} {unit} {what} in {voc} (e.g. {shown})')

        for kind, sub, ext in (('images', self.img_subdir, '.jpg'), ('annotations', self.ann_subdir, '.xml')):
            absent = [i for i in ids if not osp.isfile(osp.join(voc, sub, i + ext))]
            report('missing', [osp.join(sub, i + ext) for i in absent], len(ids), kind)
        if problems:
            return [], problems, notes
        undecodable = [f'{self.img_subdir}/{i}.jpg {problem}' for i in ids
                       if (problem := image_file_problem(osp.join(voc, self.img_subdir, i + '.jpg')))]
        report('cannot be decoded', undecodable, len(ids))
        data_list, unparsable, unknown, outside, empty = [], [], [], [], []
        n_objects = 0
        for i in ids:
            xml = f'{self.ann_subdir}/{i}.xml'
            try:
                tree = ET.parse(osp.join(voc, xml))
                width, height, objects = _size_and_objects(tree.getroot())
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
                empty.append(xml)
            if not problems:
                data_list.append(self._data_info(i, tree, width, height))
        report('do not parse', unparsable, len(ids), 'annotations')
        if unknown:
            problems.append(f'{label}: {len(unknown)} objects in {voc} are of a class the dataset does not have '
                            f'(e.g. {"; ".join(unknown[:max_listed])}); MMDetection would drop them silently; its '
                            f'classes: {", ".join(classes)}')
        report('have a box outside their image or an empty box', outside, n_objects, 'objects')
        training = not self.test_mode and bool((self.filter_cfg or {}).get('filter_empty_gt'))
        if empty and not problems:
            if training and len(empty) == len(ids):
                problems.append(f'{label}: none of the {len(ids)} images has an object: nothing to train on')
            else:
                notes.append(f'{label}: {len(empty)} of {len(ids)} images have no object ('
                             + ('MMDetection skips them in training (filter_empty_gt)' if training
                                else 'they can only hold false positives') + f'), e.g. {", ".join(empty[:max_listed])}')
        return data_list, problems, notes

    def _data_info(self, img_id, tree, width, height):
        """mmdet's ``XMLDataset.parse_data_info`` on the annotation parsed above."""
        img_path = osp.join(self.sub_data_root, self.img_subdir, f'{img_id}.jpg')
        if width is None:  # no <size>: mmdet decodes the image for it
            height, width = mmcv.imfrombytes(get(img_path, backend_args=self.backend_args), backend='cv2').shape[:2]
        return dict(img_path=img_path, img_id=img_id,
                    xml_path=osp.join(self.sub_data_root, self.ann_subdir, f'{img_id}.xml'), height=height,
                    width=width, instances=self._parse_instance_info(tree, minus_one=True))
