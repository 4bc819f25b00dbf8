"""MMSegmentation plugin for the SAU zoo: only what mmseg lacks, each a subclass of mmseg's own class.

Import it from a config with ``custom_imports = dict(imports=['sau_core.mm', 'segmentation.sau_seg'])``.
"""
from .datasets import CheckedCityscapesDataset  # noqa: F401
from .metrics import PerClassIoUMetric  # noqa: F401
from .transforms import CheckSegMap  # noqa: F401
