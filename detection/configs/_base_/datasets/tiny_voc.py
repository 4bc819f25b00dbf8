# The generated tiny VOC-format data (python tools/data/make_tiny_voc.py): VOC2007 layout with
# trainval/test splits, 3 of the 20 VOC classes. Light augmentation (flip only), since the tiny
# runs last 100 iterations; no worker processes, so it runs anywhere.
_base_ = './voc0712_ssd300.py'
img_scale = (300, 300)
data_root = 'data/tiny_voc/VOCdevkit/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=img_scale, keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,  # must be False with num_workers=0
    dataset=dict(
        _delete_=True, type='CheckedVOCDataset', data_root=data_root,
        ann_file='VOC2007/ImageSets/Main/trainval.txt', data_prefix=dict(sub_data_root='VOC2007/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
data_prepare_hint = 'make the tiny data with: python tools/data/make_tiny_voc.py'
