"""The plumbing the zoo's entry points share, one job per module: ``errors`` (the one error type and main
wrapper), ``config`` (configs and the shared flags), ``io`` (checkpoints, atomic writes), ``data_checks``
(dataset paths, image and mask files), ``hooks`` (MMEngine hooks), ``dist`` (launchers), ``tasks`` (the tasks
and how the demo and the sweep run the tools).

Imported as ``tools.zoo.<module>`` from the repository root: ``tools/env/setup.sh`` puts the root on the zoo
venv's path (a ``sau_zoo.pth`` file in its site-packages), so ``python tools/train.py ...``, the configs'
``custom_imports`` (``detection.models``, ``segmentation.sau_seg``) and the tests import from any folder.
Outside that venv, run with ``PYTHONPATH=<repository root>``, as in the OpenMMLab projects.
"""
import os.path as osp

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
