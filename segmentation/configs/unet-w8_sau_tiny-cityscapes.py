_base_ = ['./_base_/unet-w8_fcn_adam_tiny-cityscapes.py']
act = dict(type='SAU')
model = dict(backbone=dict(act_cfg=act), decode_head=dict(act_cfg=act), auxiliary_head=dict(act_cfg=act))
