"""``SSDHead`` with the ``loss_cls`` attribute that mmdet 3.3.0 forgets to set.

mmdet 3.3.0's ``SSDHead.__init__`` skips ``AnchorHead.__init__`` and never sets ``self.loss_cls``,
but ``BaseDenseHead._predict_by_feat_single`` reads ``self.loss_cls.custom_cls_channels``, so every
validation/prediction fails with ``AttributeError: 'SSDHead' object has no attribute 'loss_cls'``
(open-mmlab/mmdetection#11063, #11305). This subclass only adds that attribute: the softmax
cross-entropy that SSD's own ``loss_by_feat`` already computes, so training is unchanged, the
state_dict is the same as ``SSDHead``'s (the loss has no parameters), and prediction takes the
softmax branch as intended. Drop it once mmdet ships the fix.
"""
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS


@MODELS.register_module()
class SSDHeadWithLossCls(SSDHead):
    """``SSDHead`` plus ``self.loss_cls`` (softmax cross-entropy, SSD's classification loss)."""

    def __init__(self, *args, loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                            loss_weight=1.0), **kwargs):
        super().__init__(*args, **kwargs)
        if loss_cls.get('use_sigmoid', False):
            raise ValueError('SSDHead classifies with a softmax over num_classes + 1; '
                             'loss_cls must have use_sigmoid=False')
        self.loss_cls = MODELS.build(loss_cls)
