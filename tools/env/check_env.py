"""Fail loudly unless the environment holds every piece the zoo needs, working together."""
import importlib.metadata as metadata

import torch

import mmcv
from mmcv.ops import nms
import fairseq  # noqa: F401  (imports on Python 3.11 only with the zoo's patch)
import mmdet  # noqa: F401
import mmseg  # noqa: F401
import sacrebleu  # noqa: F401
import pycocotools  # noqa: F401
import sau_core
import sau_core.kernels.cpu  # noqa: F401  (the compiled CPU kernels)
import tools.zoo  # noqa: F401  (the repository root on the venv's path: tools/env/setup.sh's sau_zoo.pth)

boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
assert keep.tolist() == [0, 2], f'mmcv.ops.nms is broken: kept {keep.tolist()}'
y = sau_core.sau(torch.zeros(3), 0.15, 20000.0)
assert torch.allclose(y, sau_core.sau_reference(torch.zeros(3), 0.15, 20000.0)), 'sau_core kernels are broken'
versions = {name: metadata.version(name) for name in
            ('torch', 'mmengine', 'mmcv', 'mmdet', 'mmsegmentation', 'fairseq', 'sacrebleu', 'numpy')}
print('environment ok:', ', '.join(f'{k} {v}' for k, v in versions.items()))
