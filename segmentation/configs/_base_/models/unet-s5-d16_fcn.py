# mmseg's U-Net (UNet-S5-D16 backbone, FCN decode head, FCN auxiliary head), made explicit where the SAU
# zoo differs: activation, normalisation and initialisation, each set in all three parts.
_base_ = ['mmseg::_base_/models/fcn_unet_s5-d16.py']
custom_imports = dict(imports=['sau_core.mm', 'segmentation.sau_seg'], allow_failed_imports=False)

# BN, not mmseg's SyncBN: one process needs no sync. For multi-GPU add `--cfg-options sync_bn=torch`,
# which makes MMEngine convert every BN to SyncBN once the model is distributed.
norm_cfg = dict(type='BN', requires_grad=True)
# The paper's Xavier-uniform for every conv (this replaces UNet's Kaiming and the heads' Normal(0.01)).
xavier_init = [dict(type='Xavier', distribution='uniform', layer='Conv2d'),
               dict(type='Constant', val=1, bias=0, layer=['_BatchNorm', 'GroupNorm'])]
# act_cfg: mmseg's ReLU here; leaf configs set theirs and `tools/train.py --act NAME` rewrites all three.
model = dict(
    data_preprocessor=dict(size=(512, 1024)),  # mmseg's Cityscapes crop
    backbone=dict(act_cfg=dict(type='ReLU'), norm_cfg=norm_cfg, init_cfg=xavier_init),
    decode_head=dict(num_classes=19, act_cfg=dict(type='ReLU'), norm_cfg=norm_cfg, init_cfg=xavier_init),
    auxiliary_head=dict(num_classes=19, act_cfg=dict(type='ReLU'), norm_cfg=norm_cfg, init_cfg=xavier_init),
    test_cfg=dict(_delete_=True, mode='whole'))
