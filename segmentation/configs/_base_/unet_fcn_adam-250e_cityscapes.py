# The full recipe, activation left at ReLU: U-Net + FCN heads on Cityscapes 512x1024 crops, Adam 5e-4,
# batch 32 on one process (EpochBasedTrainLoop needs a finite sampler), 250 epochs.
_base_ = ['./models/unet-s5-d16_fcn.py', './datasets/cityscapes.py', './schedules/adam_250e.py',
          'mmseg::_base_/default_runtime.py']
train_dataloader = dict(batch_size=32, sampler=dict(type='DefaultSampler', shuffle=True))
log_processor = dict(by_epoch=True)  # mmseg's runtime logs by iteration
