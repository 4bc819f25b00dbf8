# The paper's recipe: Adam, learning rate 5e-4, batch 32, 250 epochs.
# The paper prints the learning rate as "5" with its exponent lost. We read it as 5e-4: Adam's usual range
# for training a BN U-Net from scratch is 1e-4..1e-3 (PyTorch's default is 1e-3); 5e-3 is ten times past
# it, and 5e-5 would leave 250 epochs short of convergence. The paper names no schedule: constant rate.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=5e-4, betas=(0.9, 0.999),
                                                         weight_decay=0.0))
param_scheduler = []
# batch_size is per process: 32 on one process; with N GPUs use 32/N (e.g. 4 on 8 GPUs), or set
# auto_scale_lr.enable=True to scale the rate with the total batch instead.
auto_scale_lr = dict(enable=False, base_batch_size=32)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=250, val_interval=25)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=20),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=True, interval=25, max_keep_ckpts=3,
                    save_best='mIoU', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
