"""SAU detection: SSD300 with a VGG16-BN backbone whose activation is an MMCV ``act_cfg``."""
