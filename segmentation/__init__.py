"""U-Net on Cityscapes with SAU, through MMSegmentation (configs in ``configs/``, plugin in ``sau_seg``)."""
