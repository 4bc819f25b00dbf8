# The recipe scaled down to about a minute on 2 CPU cores, activation left at ReLU: the same U-Net + FCN
# heads at width 8 (base_channels 8 instead of 64, ~0.45M instead of 29M parameters), on the tiny
# Cityscapes-format data of `python tools/data/make_tiny_cityscapes.py` (64x128 images, no resize or crop).
_base_ = ['./unet_fcn_adam-250e_cityscapes.py']
data_root = 'data/tiny_cityscapes/'
crop_size = (64, 128)
model = dict(data_preprocessor=dict(size=crop_size), backbone=dict(base_channels=8),
             decode_head=dict(in_channels=8, channels=8), auxiliary_head=dict(in_channels=16, channels=8))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), _base_.check,
                  dict(type='RandomFlip', prob=0.5), dict(type='PackSegInputs')]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), _base_.check,
                 dict(type='PackSegInputs')]
train_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(batch_size=4, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=30, val_interval=30)
default_hooks = dict(logger=dict(interval=5), checkpoint=dict(interval=30, max_keep_ckpts=1))
# 150 steps instead of 23k: Adam at 3e-3 (6x the recipe's 5e-4) so that they suffice.
optim_wrapper = dict(optimizer=dict(lr=3e-3))
data_prepare_hint = 'generate it with: python tools/data/make_tiny_cityscapes.py'
