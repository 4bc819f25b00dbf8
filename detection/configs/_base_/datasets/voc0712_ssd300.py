# VOC07+12 trainval for training, VOC07 test for evaluation (mmdet's dataset base), with SSD's
# augmentation and 300x300 input as in mmdet's configs/pascal_voc/ssd300_voc0712.py.
# CheckedVOCDataset (detection/datasets.py, registered by the detection package that the model base's
# custom_imports imports) is mmdet's VOCDataset checking its files as it reads them: missing or broken
# JPEGs and XML, unknown classes, boxes outside their image, one line naming the files.
_base_ = 'mmdet::_base_/datasets/voc0712.py'
data_root = 'data/VOCdevkit/'
dataset_type = 'CheckedVOCDataset'
img_scale = (300, 300)  # SSD300 input
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Expand', mean=[123.675, 116.28, 103.53], to_rgb=True, ratio_range=(1, 4)),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs',  # 'instances': the ground truth for CocoMetric without a COCO json
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor', 'instances'))
]
train_dataloader = dict(
    batch_size=8,  # the paper's batch size (one process)
    num_workers=4,
    batch_sampler=None,  # all images are resized to 300x300: no aspect-ratio grouping needed
    dataset=dict(
        _delete_=True,
        type='ConcatDataset',
        ignore_keys=['dataset_type'],  # VOC2007 and VOC2012 differ only in this meta key
        datasets=[
            dict(type=dataset_type, data_root=data_root,
                 ann_file=f'VOC{year}/ImageSets/Main/trainval.txt',
                 data_prefix=dict(sub_data_root=f'VOC{year}/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=32),
                 pipeline=train_pipeline)
            for year in (2007, 2012)
        ]))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
# VOC07 test is reported with the 11-point AP (the paper, MMDetection's zoo); area-based AP beside it,
# and COCO-style AP (IoU 0.5:0.95, pycocotools) from the same ground truth converted on the fly
val_evaluator = [
    dict(type='VOCMetric', metric='mAP', eval_mode='11points'),
    dict(type='VOCMetric', metric='mAP', eval_mode='area', prefix='pascal_voc_area'),
    dict(type='CocoMetric', ann_file=None, metric='bbox', prefix='coco'),
]
test_evaluator = val_evaluator
# shown by tools/train.py and tools/eval.py when a dataset path is missing or its files are broken
data_prepare_hint = ('get Pascal VOC 2007+2012 as detection/README.md says, '
                     'then check it with: python tools/data/check_voc.py data/VOCdevkit')
