# SSD300 (mmdet's model base) with a VGG16-BN backbone built from ConvModules, so that one act_cfg
# per module sets every activation: 15 in the backbone, 8 in the neck's extra layers (the head has none).
_base_ = 'mmdet::_base_/models/ssd300.py'
# sau_core.mm registers SAU (and an inplace-tolerant Softplus) in MMEngine's root MODELS registry;
# detection.models registers SSDVGGBN and SSDHeadWithLossCls in MMDetection's.
custom_imports = dict(imports=['sau_core.mm', 'detection.models'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        _delete_=True,  # no `vgg16_caffe` download: trained from scratch, as in the paper
        type='SSDVGGBN', depth=16, base_channels=64, norm_cfg=dict(type='BN'),
        act_cfg=dict(type='ReLU'), out_indices=(3, 5)),
    neck=dict(act_cfg=dict(type='ReLU')),
    bbox_head=dict(
        type='SSDHeadWithLossCls',  # SSDHead + the loss_cls attribute mmdet 3.3.0 misses
        num_classes=20,
        anchor_generator=dict(basesize_ratio_range=(0.2, 0.9))))  # mmdet's VOC setting
