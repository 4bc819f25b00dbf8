_base_ = ['./_base_/models/ssd300_vgg16bn.py', './_base_/datasets/voc0712_ssd300.py',
          './_base_/schedules/sgd_120k.py', './_base_/default_runtime.py']
model = dict(backbone=dict(act_cfg=dict(type='SAU')), neck=dict(act_cfg=dict(type='SAU')))
