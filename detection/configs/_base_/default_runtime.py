# mmdet's runtime, counted in iterations (the recipe is iteration-based).
_base_ = 'mmdet::_base_/default_runtime.py'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10000, by_epoch=False, max_keep_ckpts=3))
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
]
log_processor = dict(by_epoch=False)
