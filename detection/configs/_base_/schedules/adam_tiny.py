# A couple of CPU minutes on the tiny data. Not the paper's recipe: Adam (lr 1e-3) instead of SGD
# lr 1e-3, which needs the full 120k iterations to leave the all-background solution; batch 4, so
# that 100 updates fit in the budget. The same kind of linear warm-up (1/1000, 10 iterations).
max_iters = 100
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=10),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[80], gamma=0.1),
]
auto_scale_lr = dict(enable=False, base_batch_size=4)
