"""Checkpoint I/O and atomic writes: the one writer and the one reader every tool, hook and runner of the zoo uses.

- :func:`atomic_open` / :func:`atomic_write`: a file holds either its old content or all of the new one,
  whatever kills the process (MMEngine checkpoints through ``AtomicCheckpointHook``, fairseq's checkpoint copies,
  published checkpoints, metrics and sweep tables).
- :func:`read_checkpoint`: a zoo or framework checkpoint, loaded with ``weights_only=True`` and the few classes
  those files hold allow-listed (:func:`allowed_globals`), or one ``InputError`` line naming the file: missing,
  unreadable, or refused because only a full unpickle (which runs whatever code the file carries) could load it.
- :func:`checkpoint_loading`: the same rule for the frameworks' own loads (MMEngine's ``load_checkpoint`` and
  ``resume``, fairseq's ``--restore-file`` and generation), scoped to a ``with`` block.
- :func:`fetch_checkpoint`: a checkpoint URL downloaded once and hash-checked; :func:`check_checkpoint_matches`:
  a checkpoint against the model it is about to be loaded into.

No process-wide ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``: a full unpickle happens only for a local file the user
vouches for with ``--trust-checkpoint`` (``trust=True`` here), never for a URL.
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


#: the flag that lets a tool fully unpickle a local checkpoint (tools/train.py --resume, tools/eval.py,
#: tools/publish_checkpoint.py); named in every refusal
TRUST_FLAG = '--trust-checkpoint'
_FORCE_SAFE = 'TORCH_FORCE_WEIGHTS_ONLY_LOAD'  # torch.load: weights_only=True even where the caller passes False
_FORCE_UNSAFE = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'  # torch.load: weights_only=False where the caller passes none
#: the only attributes the allow-listed ``getattr`` returns: the statistics methods MMEngine's HistoryBuffer
#: pickles by reference (``getattr(HistoryBuffer, 'mean')``) in every training checkpoint's message hub
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')


def _history_buffer_method(obj, name):
    """The ``builtins.getattr`` of :func:`allowed_globals`: ``HistoryBuffer.<statistics method>`` and nothing
    else (a real ``getattr`` would hand a pickle any attribute of any allow-listed object)."""
    import pickle

    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    owner = getattr(obj, '__qualname__', type(obj).__name__)
    raise pickle.UnpicklingError(f'GLOBAL getattr({owner},{name!r}) was not an allowed global by default.')


def allowed_globals():
    """``{kind of checkpoint: [globals]}``: what ``weights_only=True`` loading needs beyond torch's own set.

    Measured with ``torch.serialization.get_unsafe_globals_in_checkpoint`` (and, for the classes a pickle only
    names at run time, the loads themselves) on the released files in ``checkpoints/``, fresh MMEngine and
    fairseq training checkpoints, and a fairseq checkpoint re-saved after fairseq's own loader. The released
    and published MMEngine checkpoints need none. Every entry only builds data: constructors of plain values,
    classes whose unpickling sets their own attributes; ``getattr`` is :func:`_history_buffer_method`.
    """
    import argparse
    import collections
    import typing

    import numpy as np
    kinds = {}
    try:
        from mmengine.logging import HistoryBuffer
    except ImportError:  # a fairseq-only environment
        pass
    else:
        reconstruct, scalar = np.ndarray.__reduce__(np.zeros(1))[0], np.float64(0).__reduce__()[0]
        kinds['MMEngine training checkpoint (message hub; RandomStateHook numpy state)'] = [
            HistoryBuffer, (_history_buffer_method, 'builtins.getattr'),
            np.ndarray, np.dtype, (reconstruct, 'numpy._core.multiarray._reconstruct'),
            (reconstruct, 'numpy.core.multiarray._reconstruct'),  # the name numpy < 2 wrote
            (scalar, 'numpy._core.multiarray.scalar'), (scalar, 'numpy.core.multiarray.scalar'),
            # np.dtype(...) unpickles to its class (Float64DType, ...), which BUILD sets the state of
            *sorted({type(np.dtype(code)) for code in '?bBhHiIlLqQefd'}, key=lambda t: t.__name__)]
    kinds['fairseq checkpoint (fairseq-train, published: cfg.model is an argparse.Namespace)'] = [argparse.Namespace]
    try:
        from omegaconf import DictConfig, ListConfig
        from omegaconf.base import ContainerMetadata, Metadata
        from omegaconf.nodes import AnyNode
    except ImportError:
        pass
    else:
        kinds['fairseq checkpoint re-saved after fairseq\'s loader (cfg as an OmegaConf DictConfig)'] = [
            DictConfig, ListConfig, ContainerMetadata, Metadata, AnyNode, (typing.Any, 'typing.Any'),
            dict, int, list, collections.defaultdict]
    return kinds


def _flat_allowed_globals():
    return [g for kind in allowed_globals().values() for g in kind]


@contextlib.contextmanager
def checkpoint_loading(trust=False):
    """Every ``torch.load`` in the block, the frameworks' own included, as :func:`read_checkpoint` loads.

    Not trusted (the default): ``weights_only=True`` forced (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``: MMEngine 0.10.7
    passes no ``weights_only``, the zoo's fairseq build passes ``False``) with :func:`allowed_globals`.
    ``trust=True`` (``--trust-checkpoint``, a local file the user vouches for): MMEngine's calls unpickle fully
    (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``; fairseq's do by themselves). The environment and torch's allow-list
    are restored when the block ends, so nothing of it outlives the load.
    """
    import torch
    saved = {name: os.environ.get(name) for name in (_FORCE_SAFE, _FORCE_UNSAFE)}
    before = torch.serialization.get_safe_globals()
    for name in saved:
        os.environ.pop(name, None)
    os.environ[_FORCE_UNSAFE if trust else _FORCE_SAFE] = '1'
    if not trust:
        torch.serialization.add_safe_globals(_flat_allowed_globals())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


_REFUSALS = (  # torch's weights-only rejections -> what the file holds
    (r'GLOBAL (\S+) was not an allowed global', 'it needs {0}, which is not on the zoo\'s allow-list'),
    (r'GLOBAL (\S+) whose module (\S+) is blocked', 'it needs {0}, which torch blocks'),
    (r'reduce for unrecognized function (.+?)(?: which belongs to .*)?$', 'it calls {0}'),
    (r'Can only build .* but got (.+)$', 'it sets the state of a {0}'),
    (r'Can only create new object .* but got (.+)$', 'it creates a {0}'),
)


def _refusal_reason(message):
    """What a weights-only ``UnpicklingError`` says the file holds, or None (not a refusal: a cut file).

    Parses torch's messages (torch/_weights_only_unpickler.py); if a torch release rewords them the file is still
    not unpickled, only reported as ``cannot read checkpoint`` (tests/test_checkpoint_safety.py pins the line)."""
    for line in reversed(message.splitlines()):
        for pattern, reason in _REFUSALS:
            found = re.search(pattern, line.strip())
            if found:
                return reason.format(*found.groups())
    return None


def _unpickler_detail(message):
    """The unpickler's own line from torch's weights-only ``UnpicklingError`` text (``Unsupported operand 110``
    for a file that is not a pickle), without torch's advice to rerun with ``weights_only=False``."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    detail = [line for line in lines if not line.startswith(('Weights only load failed', 'Please file an issue',
                                                             'Check the documentation', 'In PyTorch'))]
    return detail[0] if detail else (lines[-1] if lines else '')


def refusal(path, reason):
    """The one line for a checkpoint that only a full unpickle could load (``path``: a file or a URL)."""
    if '://' in str(path):
        what_to_do = f'a download is never unpickled fully ({TRUST_FLAG} is for local files you vouch for)'
    else:
        what_to_do = f'pass {TRUST_FLAG} if it is a local file you vouch for'
    return (f'refusing to load checkpoint {path}: {reason}; only a full unpickle could load it, and that runs '
            f'whatever code the file carries; {what_to_do}')


def read_checkpoint(path, what='checkpoint', trust=False, name=None):
    """The loaded checkpoint, or ``InputError``: ``<what> not found: <path>``; ``cannot read checkpoint <path>:
    ...`` when torch cannot load it (truncated after a crash, not a checkpoint); ``refusing to load checkpoint
    <path>: ...`` (:func:`refusal`) when only a full unpickle could. ``trust=True`` (``--trust-checkpoint``, a
    local file the user vouches for) unpickles fully. ``name``: what the messages call the file (its URL)."""
    import pickle

    import torch
    if not osp.isfile(path):
        raise InputError(f'{what} not found: {path}')
    shown = name or path
    try:
        if trust:
            return torch.load(path, map_location='cpu', weights_only=False)
        with checkpoint_loading():
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(str(e))
        if reason is None:  # not a pickle, or a damaged one
            raise InputError(f'cannot read checkpoint {shown}: {type(e).__name__}: {_unpickler_detail(str(e))}') \
                from e
        raise InputError(refusal(shown, reason)) from None
    except Exception as e:  # torch.load's many ways to fail on a truncated or foreign file
        raise InputError(f'cannot read checkpoint {shown}: {type(e).__name__}: {e}') from e


def unsafe_reason(data):
    """None if the bytes of a ``torch.save`` load with ``weights_only=True`` and :func:`allowed_globals`, else
    what in them a full unpickle would be needed for (``tools/publish_checkpoint.py`` writes only the first)."""
    import io
    import pickle

    import torch
    try:
        with checkpoint_loading():
            torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        return _refusal_reason(str(e)) or _unpickler_detail(str(e))
    return None


def check_trust(trust, *sources):
    """``InputError`` if ``--trust-checkpoint`` would reach a URL among ``sources`` (``None`` skipped): a download
    is whatever the server sends, and the hash prefix in its name, which the sender chooses, guards against
    corruption only."""
    for source in sources:
        if trust and source and '://' in str(source):
            raise InputError(f'{TRUST_FLAG} is for a local file you vouch for, never for a URL ({source}): the '
                             'sha256 prefix in a checkpoint\'s name guards against corruption, not against a '
                             'malicious file; download it, check it, and pass the local path')


def fetch_checkpoint(path_or_url, trust=False):
    """A local path as it is; a URL (http, https, file) downloaded once into the zoo's cache.

    Checkpoints named the OpenMMLab way (``<config>_<date>-<sha256[:8]>.pth``) are checked against the hash
    prefix in their name; a download that does not match is deleted and refused. That prefix guards against a
    corrupt download, not a malicious one (the sender names the file), so a URL is never trusted:
    ``trust=True`` (``--trust-checkpoint``) with a URL is an ``InputError`` (:func:`check_trust`), and the file
    (downloaded or cached) must load with ``weights_only=True``: one that does not is deleted from the cache and
    refused, naming the URL.
    """
    check_trust(trust, path_or_url)
    if '://' not in path_or_url:
        return path_or_url
    from urllib.parse import urlparse

    from torch.hub import download_url_to_file
    name = osp.basename(urlparse(path_or_url).path)
    cache = osp.join(os.environ.get('SAU_ZOO_CACHE', osp.expanduser('~/.cache/sau-zoo')), 'checkpoints')
    target = osp.join(cache, name)
    if not osp.isfile(target):
        os.makedirs(cache, exist_ok=True)
        match = re.search(r'-([0-9a-f]{8})\.pth?$', name)
        try:
            download_url_to_file(path_or_url, target, hash_prefix=match.group(1) if match else None,
                                 progress=False)
        except RuntimeError as e:  # torch.hub's hash mismatch
            raise InputError(f'{path_or_url}: {e}') from None
        except OSError as e:  # offline, 404, ...
            raise InputError(f'cannot download {path_or_url}: {e}') from None
    try:
        read_checkpoint(target, name=path_or_url)
    except InputError:
        os.remove(target)  # not kept for a later run to pick up from the cache
        raise
    return target


def check_checkpoint_matches(model, checkpoint_path, trust=False):
    """``InputError`` unless the checkpoint's state_dict has exactly the model's keys and shapes (the file read by
    :func:`read_checkpoint`, ``trust`` passed on)."""
    ckpt = read_checkpoint(checkpoint_path, trust=trust)
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
