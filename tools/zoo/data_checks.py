"""Checks of the data on disk that the zoo's entry points, datasets, transforms and data tools share.

- :func:`check_datasets`: the dataset paths a config names, before the model is built (``tools/train.py``,
  ``tools/eval.py``); :func:`dataset_errors` adds to a dataset's own error which loader needed it and the
  config's hint. The content checks live in the datasets (``CheckedVOCDataset``, ``CheckedCityscapesDataset``),
  so they run from any entry point that builds them.
- :func:`image_file_problem`: a JPEG/PNG that cannot decode completely, from its first and last bytes.
- :func:`mask_values_outside`: the values of a segmentation mask that are not train ids.
"""
import contextlib
import os
import os.path as osp

import numpy as np

from tools.zoo.errors import InputError

#: (start, end marker) of the image formats the zoo reads; the end marker must lie in the file's last bytes
_SIGNATURES = {
    '.jpg': (b'\xff\xd8\xff', b'\xff\xd9'),
    '.jpeg': (b'\xff\xd8\xff', b'\xff\xd9'),
    '.png': (b'\x89PNG\r\n\x1a\n', b'IEND'),
}
_TAIL = 4096  # JPEGs may carry a few padding bytes after their end-of-image marker


def _datasets(dataset_cfg):
    """The leaf dataset configs inside wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(dataset_cfg, dict):
        return
    if isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        for child in dataset_cfg['datasets']:
            yield from _datasets(child)
    elif isinstance(dataset_cfg.get('dataset'), dict):
        yield from _datasets(dataset_cfg['dataset'])
    else:
        yield dataset_cfg


def _leaf_datasets(cfg, loader_keys):
    """(loader key, leaf dataset config) of the loaders ``loader_keys`` that ``cfg`` has."""
    for key in loader_keys:
        loader = cfg.get(key)
        if loader:
            for ds in _datasets(loader.get('dataset')):
                yield key, ds


def _needed_by(message, key, cfg):
    """``message`` with the loader that needed the data and the config's ``data_prepare_hint``, the command
    that makes or checks the data, when it has one."""
    hint = cfg.get('data_prepare_hint')
    return f'{message} (needed by {key})' + (f'; {hint}' if hint else '')


def check_datasets(cfg, loader_keys):
    """``InputError`` naming the first missing dataset path (data_root, ann_file, data_prefix) of the loaders
    ``loader_keys``; local paths only."""
    for key, ds in _leaf_datasets(cfg, loader_keys):
        root = ds.get('data_root') or ''
        paths = [root] if root else []
        if ds.get('ann_file'):
            paths.append(osp.join(root, ds['ann_file']))
        prefix = ds.get('data_prefix') or {}
        paths += [osp.join(root, p) for p in prefix.values() if isinstance(p, str) and p]
        for path in paths:
            if '://' not in path and not osp.exists(path):
                raise InputError(_needed_by(f'dataset path not found: {path}', key, cfg))


@contextlib.contextmanager
def dataset_errors(cfg, loader_keys):
    """An ``InputError`` of a dataset built inside (the content checks of ``CheckedVOCDataset``) that names
    its annotation file (``path``) gets the loader of ``loader_keys`` that reads that file and the config's
    hint, as :func:`check_datasets` words its own errors."""
    try:
        yield
    except InputError as e:
        if e.path is None:
            raise
        for key, ds in _leaf_datasets(cfg, loader_keys):
            if ds.get('ann_file') and osp.normpath(osp.join(ds.get('data_root') or '', ds['ann_file'])) == \
                    osp.normpath(e.path):
                raise InputError(_needed_by(str(e), key, cfg)) from e
        raise


def image_file_problem(path):
    """Why the JPEG/PNG file ``path`` cannot decode completely (missing, empty, not that format, truncated),
    or None when it looks whole. Reads the first and last few bytes only, so it is cheap enough to run on
    every file of a dataset before training; other suffixes are not checked."""
    signature = _SIGNATURES.get(os.path.splitext(path)[1].lower())
    if signature is None:
        return None
    start, end = signature
    try:
        with open(path, 'rb') as f:
            head = f.read(len(start))
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    kind = 'PNG' if start.startswith(b'\x89PNG') else 'JPEG'
    if size == 0:
        return 'is empty'
    if head != start:
        return f'is not a {kind} file (it starts with {head[:4]!r})'
    if end not in tail:
        return f'is a truncated {kind} file (no end marker; {size} bytes)'
    return None


def mask_values_outside(mask, num_classes, ignore_index):
    """``(values, pixels)``: the values of the integer ``mask`` other than the train ids ``0..num_classes-1``
    and ``ignore_index``, sorted, and how many pixels hold them (``([], 0)`` for a good mask)."""
    counts = np.bincount(mask.ravel().astype(np.int64), minlength=ignore_index + 1)
    counts[:num_classes] = 0
    counts[ignore_index] = 0
    return np.flatnonzero(counts).tolist(), int(counts.sum())
