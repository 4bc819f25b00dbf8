# Reduced-width SSD300-VGG16-BN for the tiny CPU runs: the same layers, every width divided by 8
# (backbone stages 8-16-32-64-64, fc6/fc7 128, neck extras and head inputs scaled alike).
_base_ = './ssd300_vgg16bn.py'
model = dict(
    backbone=dict(base_channels=8),
    neck=dict(in_channels=(64, 128), out_channels=(64, 128, 64, 32, 32, 32)),
    bbox_head=dict(in_channels=(64, 128, 64, 32, 32, 32)))
