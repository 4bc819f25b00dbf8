"""``CityscapesDataset`` that fails early, with the path, when the data on disk is not what it expects.

mmseg's ``CityscapesDataset`` lists ``*_leftImg8bit.png`` and *assumes* each has its
``*_gtFine_labelTrainIds.png``: a missing folder raises a bare ``FileNotFoundError`` from ``os.scandir``,
an empty one gives a dataset of length 0 that fails later in the sampler, and a missing mask fails
mid-epoch in ``LoadAnnotations``; an image or mask that does not decode (a truncated download) fails
mid-epoch with an assertion or ``'NoneType' object has no attribute 'squeeze'``. This subclass checks the
listing once at start-up (file names, and the first and last bytes of every file: no decoding; the pixel
values are checked per sample by :class:`~.transforms.CheckSegMap`), and names a mask that still does not
decode when a sample is loaded.
"""
import os
import os.path as osp

from mmseg.datasets import CityscapesDataset
from mmseg.registry import DATASETS

from tools.zoo.data_checks import image_file_problem
from tools.zoo.errors import InputError

PREPARE_HINT = ('download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from '
                'https://www.cityscapes-dataset.com/ and run '
                '`python tools/data/prepare_cityscapes.py DATA_ROOT` (see segmentation/README.md)')


def _short_list(items, limit=5):
    items = sorted(items)
    more = f' ... and {len(items) - limit} more' if len(items) > limit else ''
    return ', '.join(items[:limit]) + more


@DATASETS.register_module()
class CheckedCityscapesDataset(CityscapesDataset):
    """Cityscapes with clear errors for a missing dataset and for image/mask pairing mismatches.

    Raises:
        FileNotFoundError: the image or mask folder is missing, holds no ``*_leftImg8bit.png``, or an
            image has no ``*_gtFine_labelTrainIds.png`` (with a hint when ``*_labelIds.png`` is there,
            i.e. the download was not prepared).
        InputError (a ValueError): a mask has no image (the two folders do not pair up; not checked with an
            ``ann_file``), an image or mask file is empty, not a PNG or truncated, or (when a sample is
            loaded) a mask does not decode.
    """

    def load_data_list(self):
        img_dir = self.data_prefix.get('img_path', '')
        seg_dir = self.data_prefix.get('seg_map_path', None)
        for kind, folder in (('image', img_dir), ('mask', seg_dir)):
            if folder is not None and not osp.isdir(folder):
                raise FileNotFoundError(
                    f'Cityscapes {kind} folder {folder!r} does not exist (data_root={self.data_root!r}); '
                    f'{PREPARE_HINT}')
        data_list = super().load_data_list()
        if not data_list:
            raise FileNotFoundError(
                f'no *{self.img_suffix} files under {img_dir!r}; {PREPARE_HINT}')
        if seg_dir is None:
            return data_list

        missing = [d['seg_map_path'] for d in data_list if not osp.isfile(d['seg_map_path'])]
        if missing:
            unprepared = [p for p in missing
                          if osp.isfile(p.replace(self.seg_map_suffix, '_gtFine_labelIds.png'))]
            hint = (f'{len(unprepared)} of them have *_gtFine_labelIds.png only: the download is not '
                    f'prepared; run `python tools/data/prepare_cityscapes.py {self.data_root}`'
                    if unprepared else PREPARE_HINT)
            raise FileNotFoundError(
                f'{len(missing)} of {len(data_list)} images under {img_dir!r} have no mask '
                f'*{self.seg_map_suffix} under {seg_dir!r}: {_short_list(missing)}; {hint}')

        broken = [f'{path} {problem}' for d in data_list for path in (d['img_path'], d['seg_map_path'])
                  if (problem := image_file_problem(path))]
        if broken:
            raise InputError(f'{len(broken)} image/mask files under {self.data_root!r} cannot be decoded: '
                             f'{_short_list(broken, 3)}')

        if self.ann_file:  # a split file lists a subset: other masks in the folder are not orphans
            return data_list
        expected = {osp.normpath(d['seg_map_path']) for d in data_list}
        orphans = []
        for dirpath, _, files in os.walk(seg_dir):
            orphans += [osp.join(dirpath, f) for f in files
                        if f.endswith(self.seg_map_suffix)
                        and osp.normpath(osp.join(dirpath, f)) not in expected]
        if orphans:
            raise InputError(
                f'image/mask pairing mismatch: {len(orphans)} masks under {seg_dir!r} have no '
                f'*{self.img_suffix} under {img_dir!r}: {_short_list(orphans)}')
        return data_list

    def prepare_data(self, idx):
        """A sample whose mask or image does not decode (corrupt between intact first and last bytes) fails
        inside mmseg/mmcv without a file name: PIL's ``OSError: broken data stream ...``, or cv2's ``None``
        (``'NoneType' object has no attribute 'squeeze'``). Name the file instead."""
        try:
            return super().prepare_data(idx)
        except (OSError, AttributeError) as e:
            # an OSError with an errno is the system's (missing file, permissions, too many open files);
            # decoders raise theirs without one
            if (isinstance(e, OSError) and e.errno is not None) or (
                    isinstance(e, AttributeError) and "'NoneType'" not in str(e)):
                raise
            info = self.get_data_info(idx)
            tb, in_mask = e.__traceback__, False
            while tb is not None:
                in_mask = in_mask or tb.tb_frame.f_code.co_name == '_load_seg_map'
                tb = tb.tb_next
            path = f'mask {info["seg_map_path"]}' if in_mask else f'image {info["img_path"]}'
            raise InputError(f'{path} does not decode ({type(e).__name__}: {e}); a corrupt file?') from e
