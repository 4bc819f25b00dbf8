"""Data preparation and checks, one script per dataset (VOC, Cityscapes, WMT14 En-De) and its tiny stand-in."""
