_base_ = ['./_base_/unet_fcn_adam-250e_cityscapes.py']
act = dict(type='ReLU')  # the baseline; every other one is `tools/train.py ... --act NAME`
model = dict(backbone=dict(act_cfg=act), decode_head=dict(act_cfg=act), auxiliary_head=dict(act_cfg=act))
