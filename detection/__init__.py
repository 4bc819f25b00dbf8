"""SAU detection: SSD300 with a VGG16-BN backbone whose activation is an MMCV ``act_cfg``, on VOC data checked as it
is read.

Importing the package (a config's ``custom_imports=['detection.models']`` does) registers its modules in
MMDetection's registries: ``models`` (``SSDVGGBN``, ``SSDHeadWithLossCls``) and ``datasets``
(``CheckedVOCDataset``).
"""
from . import datasets, models  # noqa: F401  (register on import)
