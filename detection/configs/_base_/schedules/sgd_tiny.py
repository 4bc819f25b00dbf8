# A few CPU minutes on the tiny data: the paper's optimiser with a larger lr (1e-2 instead of
# 1e-3, which would need the full 120k iterations), the same 1/1000 linear warm-up over 50 iterations.
_base_ = './sgd_120k.py'
max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[int(max_iters * 0.8)], gamma=0.1),
]
