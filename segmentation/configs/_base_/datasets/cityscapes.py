# mmseg's Cityscapes settings (512x1024 crops, 19 classes, 255 ignored) with the zoo's checks:
# CheckedCityscapesDataset (missing data, image/mask pairing) and CheckSegMap (mask values) after loading.
_base_ = ['mmseg::_base_/datasets/cityscapes.py']
dataset_type = 'CheckedCityscapesDataset'
check = dict(type='CheckSegMap', num_classes=19, ignore_index=255)
train_pipeline = _base_.train_pipeline
train_pipeline.insert(2, check)  # right after LoadAnnotations
test_pipeline = _base_.test_pipeline
test_pipeline.insert(3, check)  # after Resize and LoadAnnotations, as mmseg loads the mask unresized
train_dataloader = dict(dataset=dict(type=dataset_type, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(type=dataset_type, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])  # aAcc, mIoU, mAcc
test_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])  # the same plus IoU.<class>
# Shown by tools/train.py and tools/eval.py when a dataset path is missing.
data_prepare_hint = ('download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from cityscapes-dataset.com, '
                     'unzip them into data/cityscapes and run: python tools/data/prepare_cityscapes.py data/cityscapes')
