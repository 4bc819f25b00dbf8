"""Checkpoint I/O and atomic writes: the one writer and the one reader every tool, hook and runner of the zoo uses.

- :func:`atomic_open` / :func:`atomic_write`: a file holds either its old content or all of the new one,
  whatever kills the process (MMEngine checkpoints through ``AtomicCheckpointHook``, fairseq's checkpoint copies,
  published checkpoints, metrics and sweep tables).
- :func:`read_checkpoint`: a zoo or framework checkpoint, or one ``InputError`` line naming the file.
- :func:`fetch_checkpoint`: a checkpoint URL downloaded once and hash-checked; :func:`check_checkpoint_matches`:
  a checkpoint against the model it is about to be loaded into.
"""
import contextlib
import os
import os.path as osp
import re

from tools.zoo.errors import InputError

#: the suffix of the temporary files of :func:`atomic_open` (``.<name>.<pid>.partial`` beside the target)
PARTIAL_SUFFIX = '.partial'


@contextlib.contextmanager
def atomic_open(path):
    """A binary file to write ``path`` through, so that ``path`` holds either its old content or all of the new.

    The bytes go to ``.<name>.<pid>.partial`` in the same folder (same file system, so the rename is atomic),
    which is fsynced and renamed over ``path`` (``os.replace``) when the ``with`` block ends; the folder is
    fsynced so that the rename survives a power loss. On an error the temporary file is removed; a killed
    process leaves it behind, under a name no reader takes for the target.
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}{PARTIAL_SUFFIX}')
    try:
        with open(tmp, 'wb') as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path, data):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` through :func:`atomic_open`."""
    with atomic_open(path) as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)


def read_checkpoint(path, what='checkpoint'):
    """The loaded checkpoint (a zoo or framework checkpoint: trusted, ``weights_only=False``), or ``InputError``:
    ``<what> not found: <path>``, or ``cannot read checkpoint <path>: ...`` when torch cannot load it (truncated
    after a crash, not a checkpoint)."""
    import torch
    if not osp.isfile(path):
        raise InputError(f'{what} not found: {path}')
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as e:  # torch.load's many ways to fail on a truncated or foreign file
        raise InputError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e


def fetch_checkpoint(path_or_url):
    """A local path as it is; a URL (http, https, file) downloaded once into the zoo's cache.

    Checkpoints named the OpenMMLab way (``<config>_<date>-<sha256[:8]>.pth``) are checked against the hash
    prefix in their name; a download that does not match is deleted and refused.
    """
    if '://' not in path_or_url:
        return path_or_url
    from urllib.parse import urlparse

    from torch.hub import download_url_to_file
    name = osp.basename(urlparse(path_or_url).path)
    cache = osp.join(os.environ.get('SAU_ZOO_CACHE', osp.expanduser('~/.cache/sau-zoo')), 'checkpoints')
    target = osp.join(cache, name)
    if osp.isfile(target):
        return target
    os.makedirs(cache, exist_ok=True)
    match = re.search(r'-([0-9a-f]{8})\.pth?$', name)
    try:
        download_url_to_file(path_or_url, target, hash_prefix=match.group(1) if match else None,
                             progress=False)
    except RuntimeError as e:  # torch.hub's hash mismatch
        raise InputError(f'{path_or_url}: {e}') from None
    except OSError as e:  # offline, 404, ...
        raise InputError(f'cannot download {path_or_url}: {e}') from None
    return target


def check_checkpoint_matches(model, checkpoint_path):
    """``InputError`` unless the checkpoint's state_dict has exactly the model's keys and shapes."""
    ckpt = read_checkpoint(checkpoint_path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise InputError(f'{checkpoint_path} holds no state_dict')
    state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (('missing', missing), ('unexpected', unexpected),
                            ('with another shape', shapes)):
            if keys:
                parts.append(f'{len(keys)} {label} (e.g. {keys[0]})')
        raise InputError(f'checkpoint {checkpoint_path} does not fit this config\'s model: '
                         f'{"; ".join(parts)} keys; was it trained with another config or --act?')
