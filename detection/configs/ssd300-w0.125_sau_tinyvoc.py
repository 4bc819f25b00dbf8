# Reduced-width (1/8) SSD300-VGG16-BN with SAU on the generated tiny VOC data: a CPU-minutes run.
_base_ = ['./_base_/models/ssd300_vgg16bn-w0.125.py', './_base_/datasets/tiny_voc.py',
          './_base_/schedules/adam_tiny.py', './_base_/default_runtime_tiny.py']
model = dict(backbone=dict(act_cfg=dict(type='SAU')), neck=dict(act_cfg=dict(type='SAU')))
