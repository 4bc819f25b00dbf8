"""A pipeline check that a loaded mask holds train ids only, so a bad mask never trains or scores silently.

Without it a value such as 33 (a raw Cityscapes *label id*) crashes the loss with an index error
that names no file, or, in evaluation, is silently dropped by ``IoUMetric``'s histogram.

Inference has no mask: MMSegmentation's ``MMSegInferencer`` and ``mmseg.apis.inference_model`` build the config's
test pipeline without ``LoadAnnotations`` (and with nothing but the image in each sample), so ``CheckSegMap``
passes such samples through; a sample of a dataset (it names its mask, ``seg_map_path``) still must have had
its mask loaded.
"""
from mmcv.transforms import BaseTransform
from mmseg.registry import TRANSFORMS

from tools.zoo.data_checks import mask_values_outside
from tools.zoo.errors import InputError


@TRANSFORMS.register_module()
class CheckSegMap(BaseTransform):
    """Raise ``InputError`` (a ValueError) naming the file if ``gt_seg_map`` is not ``0..num_classes-1`` or
    ``ignore_index``.

    Place it right after ``LoadAnnotations``. It also checks that the mask is one channel and has the
    image's original size (``ori_shape``), which catches an image paired with the wrong mask. A sample without
    a mask and without ``seg_map_path`` (an image given to an inferencer) is passed through unchanged; one
    with ``seg_map_path`` but no loaded mask is an ``InputError`` (``LoadAnnotations`` missing before it).

    Args:
        num_classes: number of train ids (19 for Cityscapes).
        ignore_index: the one other value allowed (255).
    """

    def __init__(self, num_classes=19, ignore_index=255):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)

    def transform(self, results):
        if 'gt_seg_map' not in results:
            if results.get('seg_map_path') is None:  # inference on an image: no ground truth to check
                return results
            raise InputError(f'CheckSegMap got no loaded mask for {results["seg_map_path"]}: put LoadAnnotations '
                             'before it in the pipeline')
        seg = results['gt_seg_map']
        path = results.get('seg_map_path', '<unknown mask>')
        if seg.ndim != 2:
            raise InputError(f'mask {path} has shape {seg.shape}; expected one channel of train ids '
                             '(a *_color.png or RGB file instead of *_labelTrainIds.png?)')
        ori_shape = results.get('ori_shape')
        if ori_shape is not None and tuple(seg.shape) != tuple(ori_shape[:2]):
            raise InputError(f'image/mask pairing mismatch: mask {path} is {tuple(seg.shape)} but image '
                             f'{results.get("img_path")} is {tuple(ori_shape[:2])}')
        bad, pixels = mask_values_outside(seg, self.num_classes, self.ignore_index)
        if bad:
            raise InputError(
                f'mask {path} holds values {bad} ({pixels} pixels); allowed are train ids '
                f'0..{self.num_classes - 1} and {self.ignore_index} (ignore). Raw *_labelIds.png must be '
                'converted with tools/data/prepare_cityscapes.py')
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})'
