# The paper's SSD recipe: SGD, lr 1e-3, momentum 0.9, weight decay 5e-4, batch 8, 120k iterations.
train_cfg = dict(type='IterBasedTrainLoop', max_iters=120000, val_interval=10000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
# Weight decay and SAU's alpha: the paper gives "weight decay 5e-4" and excludes no parameter, so, as its text
# reads, the decay applies to every parameter, each SAU alpha (its parameters are named `<module>.alpha`)
# included. MMEngine's DefaultOptimWrapperConstructor matches custom_keys as substrings of the parameter names,
# so this entry touches exactly the alphas; decay_mult=1.0 is the paper's reading (the same decay as everything
# else), made visible here. The alternative, no decay on alpha (as PReLU's slope is often kept), is one flag:
#   --cfg-options optim_wrapper.paramwise_cfg.custom_keys.alpha.decay_mult=0
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=1e-3, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(custom_keys=dict(alpha=dict(decay_mult=1.0))))
param_scheduler = [
    # Warm-up (our addition; the paper states none): lr rises linearly from 1e-6 to 1e-3 over the
    # first 500 iterations, as in mmdet's SSD300 VOC recipe. Without pre-trained weights the first
    # steps see random features and a multibox loss dominated by thousands of unmatched anchors;
    # the warm-up keeps those first large gradients from blowing up BN statistics and SAU's alpha.
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    # The paper gives no decay; we keep the original SSD VOC schedule (Liu et al. 2016):
    # x0.1 at 80k and at 100k of the 120k iterations.
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=120000, milestones=[80000, 100000],
         gamma=0.1),
]
# lr 1e-3 is for a total batch of 8; with --cfg-options auto_scale_lr.enable=True it scales linearly
auto_scale_lr = dict(enable=False, base_batch_size=8)
