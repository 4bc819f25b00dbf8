_base_ = ['./_base_/unet_fcn_adam-250e_cityscapes.py']
act = dict(type='SAU')  # alpha=0.15, n=20000: the paper's defaults
model = dict(backbone=dict(act_cfg=act), decode_head=dict(act_cfg=act), auxiliary_head=dict(act_cfg=act))
