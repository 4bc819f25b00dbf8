"""What tools/train.py and tools/eval.py share: config loading, ``--act``, input checks, errors.

No model or training code lives here: MMEngine configs go to ``Runner.from_cfg`` and fairseq
configs (a top-level ``fairseq = dict(...)``) to ``translation.runner``.
"""
import contextlib
import os
import os.path as osp
import re
import sys
import warnings

# setuptools<81 (needed for mmengine's mmdet:: config paths) warns on every mmengine/mmcv import
# mmengine 0.10.7 calls torch.load without weights_only, and torch >= 2.6 defaults it to True, which
# refuses MMEngine's own checkpoints (they pickle the message hub); restore the old default here,
# in the CLIs only: load checkpoints you trust, as with any pickle
os.environ.setdefault('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class CLIError(Exception):
    """Bad input the user can fix; reported as one line, exit status 1."""


def run_main(main, argv=None):
    """Call ``main(argv)``; known bad-input errors become one ``error: ...`` line and exit 1."""
    try:
        return main(argv)
    except (CLIError, FloatingPointError, FileExistsError) as e:  # FloatingPointError: FiniteLossHook
        print(f'error: {_one_line(e)}', file=sys.stderr)
    except FileNotFoundError as e:  # e.g. a dataset file that the early checks could not foresee
        if e.filename:  # the OS's own error: say where to look
            print(f'error: {e.strerror}: {e.filename} (check the dataset and paths in the config)', file=sys.stderr)
        else:  # raised with a message of its own
            print(f'error: {_one_line(e)}', file=sys.stderr)
    except (ValueError, AssertionError) as e:
        if not _is_input_error(e):
            raise
        message = _one_line(e)
        if message.startswith('failed to load image: '):  # MMCV's LoadImageFromFile: the decoder returned None
            message = f'image {message[len("failed to load image: "):]} does not decode (a corrupt file?)'
        print(f'error: {message}', file=sys.stderr)
    return 1


def _is_input_error(e):
    """``sau_core.input_checks.InputError`` (data checks of our datasets and transforms, checkpoints of the
    translation runner), or MMCV's ``failed to load image`` assertion (an image that does not decode)."""
    checks = sys.modules.get('sau_core.input_checks')  # not imported: nothing could have raised it
    return ((checks is not None and isinstance(e, checks.InputError))
            or (isinstance(e, AssertionError) and _one_line(e).startswith('failed to load image: ')))


def _one_line(e):
    """The message of ``e`` on one line; for an error re-raised from a DataLoader worker (``Caught X in
    DataLoader worker process 0. Original Traceback ...``), the original error's own line."""
    text = str(e).strip()
    if 'Original Traceback' in text:
        last = text.splitlines()[-1]
        text = last.split(': ', 1)[1] if ': ' in last else last
    return ' '.join(line.strip() for line in text.splitlines())


def ensure_repo_on_path():
    """Let configs' ``custom_imports`` (``detection.models``) and ``translation`` import from a checkout."""
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)


def load_config(path):
    """``Config.fromfile`` with a one-line error for a missing or unparsable file."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise CLIError(f'config file not found: {path}')
    ensure_repo_on_path()
    try:
        return Config.fromfile(path)
    except Exception as e:  # a broken config: syntax, bad _base_, failed custom_imports, ...
        raise CLIError(f'cannot load config {path}: {type(e).__name__}: {e}') from e


def is_fairseq(cfg):
    return 'fairseq' in cfg


def check_config_kind(cfg, path):
    """CLIError unless ``cfg`` is a config of the zoo's kinds: an MMEngine one (``model``) or a fairseq one."""
    if not is_fairseq(cfg) and not isinstance(cfg.get('model'), dict):
        raise CLIError(f'{path} is not a config of this zoo: it has neither `model = dict(...)` (MMDetection, '
                       'MMSegmentation) nor `fairseq = dict(...)` (translation); see the configs under '
                       'detection/, segmentation/ and translation/')


_MISSING = object()


def _config_value(cfg, key):
    """The config's value at a dotted ``--cfg-options`` key (list items by index), or _MISSING; CLIError for
    an index past the end of a list (MMEngine's merge raises a KeyError there)."""
    node = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    for part in key.split('.'):
        if isinstance(node, (list, tuple)) and part.lstrip('-').isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                raise CLIError(f'--cfg-options {key}: index {index} is past the end of the config\'s list '
                               f'({len(node)} items)')
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def _kind(value):
    if isinstance(value, bool):
        return 'true/false'
    if isinstance(value, (int, float)):
        return 'a number'
    if isinstance(value, (list, tuple)):
        return 'a list'
    if isinstance(value, dict):
        return 'a dict'
    return None  # strings and anything else: not checked (a str field may take a number)


def check_cfg_options(cfg, options):
    """CLIError for a ``--cfg-options key=value`` whose value is not of the kind the config holds there.

    Numbers, true/false, lists and dicts must stay what they are (an int may become a float); ``None``
    switches anything off; new keys and string values are not checked. Without this, ``max_iters=abc``
    or ``lr=[1]`` fail deep inside the loop or optimizer with a traceback that names neither.
    """
    for key, value in (options or {}).items():
        old = _config_value(cfg, key)
        if old is _MISSING or old is None or value is None:
            continue
        expected = _kind(old)
        if expected is not None and _kind(value) != expected:
            raise CLIError(f'--cfg-options {key}={value!r}: expected {expected}, as the config has '
                           f'({key}={old!r})')


def translation_runner():
    """The translation engineer's ``translation.runner`` (``train(args)``, ``evaluate(args)``)."""
    ensure_repo_on_path()
    import translation.runner
    return translation.runner


def replace_act_cfgs(node, new_act):
    """Replace every dict-valued ``act_cfg`` under ``node`` (dicts and lists) by a copy of ``new_act``.

    ``act_cfg=None`` (a layer without activation) stays None. Returns the number replaced.
    """
    count = 0
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'act_cfg' and isinstance(value, dict):
                node[key] = dict(new_act)
                count += 1
            else:
                count += replace_act_cfgs(value, new_act)
    elif isinstance(node, (list, tuple)):
        for item in node:
            count += replace_act_cfgs(item, new_act)
    return count


def apply_act(cfg, name):
    """``--act NAME``: every activation of ``cfg.model`` becomes ``sau_core.act_cfg(NAME)``."""
    import sau_core
    try:
        new_act = sau_core.act_cfg(name)
    except ValueError as e:
        raise CLIError(f'--act: {e}') from None
    if replace_act_cfgs(cfg.get('model'), new_act) == 0:
        raise CLIError(f'--act {name}: the config\'s model has no act_cfg to replace')
    imports = cfg.setdefault('custom_imports', dict(imports=[], allow_failed_imports=False))
    if 'sau_core.mm' not in imports['imports']:  # SAU and Softplus are registered there
        imports['imports'] = list(imports['imports']) + ['sau_core.mm']


def _act_cfgs(node, path):
    """(dotted path, act_cfg dict) of every dict-valued ``act_cfg`` under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'act_cfg' and isinstance(value, dict):
                yield f'{path}.{key}', value
            else:
                yield from _act_cfgs(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _act_cfgs(item, f'{path}.{i}')


def check_act_cfgs(cfg):
    """CLIError naming the first ``act_cfg`` of ``cfg.model`` whose type no registry of the config's scope
    has (a typo such as ``type='Sau'``), before the model is built."""
    from unittest import mock

    import mmengine.logging
    import sau_core
    from mmengine.registry import MODELS
    from mmengine.utils import import_modules_from_strings
    imports = cfg.get('custom_imports')
    if imports:  # --act may have added sau_core.mm after the config was loaded
        import_modules_from_strings(**imports)
    # the registry's lookups log (DEBUG) through MMEngine's current logger and so would create one, bound to
    # this moment's sys.stdout, before the Runner makes its own; a caller that swaps sys.stdout (pytest's
    # capsys) would leave it writing to a closed stream
    with mock.patch.object(mmengine.logging, 'print_log', lambda *args, **kwargs: None), \
            MODELS.switch_scope_and_registry(cfg.get('default_scope')) as registry:
        for path, act in _act_cfgs(cfg.get('model'), 'model'):
            kind = act.get('type')
            if isinstance(kind, str) and registry.get(kind) is None:
                known = ', '.join(a['type'] for a in sau_core.ACT_CFGS.values())
                raise CLIError(f'{path}: unknown activation type {kind!r} (not in the {registry.scope} MODELS '
                               f'registry); the zoo\'s activations are {known} (or use --act NAME)')


@contextlib.contextmanager
def framework_errors():
    """A type that no MMEngine registry has (``KeyError: 'X is not in the mmdet::model registry. Please
    check ...'``, raised from deep inside the build) or an argument its class does not take becomes one
    CLIError line."""
    try:
        yield
    except KeyError as e:
        found = re.search(r'([\w.:]+) is not in the (\S+) registry', str(e))
        if not found:
            raise
        raise CLIError(f'unknown type {found.group(1)!r} in the config (not in the {found.group(2)} registry): a '
                       'typo, or a module missing from custom_imports') from e
    except TypeError as e:  # a config dict with a key its class does not take (``max_iterz=5``)
        found = re.fullmatch(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(e))
        if not found:
            raise
        raise CLIError(f'{found.group(1)} takes no argument {found.group(2)!r}: a typo in the config or '
                       '--cfg-options?') from e


@contextlib.contextmanager
def fairseq_option_errors():
    """fairseq's argparse errors (an unknown option or activation in ``fairseq.train``/``generate`` or --act)
    become one CLIError line instead of a usage screen and exit status 2."""
    import argparse
    original = argparse.ArgumentParser.error

    def error(self, message):
        raise CLIError(f'fairseq rejects the config\'s options: {message}')
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def apply_common_options(cfg, args, config_path):
    """``--cfg-options``, ``--act``, ``--launcher``, ``--seed`` and the work_dir rule of MMDetection."""
    if getattr(args, 'cfg_options', None):
        cfg.merge_from_dict(args.cfg_options)
    if getattr(args, 'act', None):
        apply_act(cfg, args.act)
    cfg.launcher = args.launcher
    if getattr(args, 'seed', None) is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=args.seed)
    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


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


def _local(path):
    return '://' not in path


def check_datasets(cfg, loader_keys):
    """Raise CLIError naming the first missing dataset path (data_root, ann_file, data_prefix), or the first
    problem in the content of a VOC-format dataset (``tools/data/check_voc.py``'s ``check_split``).

    The message ends with the config's ``data_prepare_hint`` (the command that makes or checks
    the data) when it has one. Notes (VOC images without objects) are printed.
    """
    hint = cfg.get('data_prepare_hint')
    for key in loader_keys:
        loader = cfg.get(key)
        if not loader:
            continue
        for ds in _datasets(loader.get('dataset')):
            root = ds.get('data_root') or ''
            paths = [root] if root else []
            if ds.get('ann_file'):
                paths.append(osp.join(root, ds['ann_file']))
            prefix = ds.get('data_prefix') or {}
            paths += [osp.join(root, p) for p in prefix.values() if isinstance(p, str) and p]
            for path in paths:
                if _local(path) and not osp.exists(path):
                    raise CLIError(f'dataset path not found: {path} (needed by {key})'
                                   + (f'; {hint}' if hint else ''))
            if ds.get('type') == 'VOCDataset' and all(_local(p) for p in paths):
                _check_voc_dataset(ds, key, hint)


def _check_voc_dataset(ds, key, hint):
    """The content of one VOCDataset (image list, JPEGs, XML, boxes) before MMDetection reads it."""
    if osp.join(REPO_ROOT, 'tools', 'data') not in sys.path:
        sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'data'))
    import check_voc
    root = ds.get('data_root') or ''
    voc = osp.normpath(osp.join(root, (ds.get('data_prefix') or {}).get('sub_data_root', '')))
    list_file = osp.join(root, ds['ann_file'])
    classes = (ds.get('metainfo') or {}).get('classes') or check_voc.VOC_CLASSES
    filter_cfg = ds.get('filter_cfg') or {}
    training = key == 'train_dataloader' and bool(filter_cfg.get('filter_empty_gt'))
    problems, notes = check_voc.check_split(voc, check_voc.read_ids(list_file), list_file,
                                            tuple(classes), training=training)
    for note in notes:
        print(f'note: {note}', flush=True)
    if problems:
        more = f' (and {len(problems) - 1} more problems)' if len(problems) > 1 else ''
        raise CLIError(f'{problems[0]}{more} (needed by {key})' + (f'; {hint}' if hint else ''))


def fetch_checkpoint(path_or_url):
    """A local path as it is; a URL (http, https, file) downloaded once into the zoo's cache.

    Checkpoints named the OpenMMLab way (``<config>_<date>-<sha256[:8]>.pth``) are checked against the hash
    prefix in their name; a download that does not match is deleted and refused.
    """
    if '://' not in path_or_url:
        return path_or_url
    import re
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
        raise CLIError(f'{path_or_url}: {e}') from None
    except OSError as e:  # offline, 404, ...
        raise CLIError(f'cannot download {path_or_url}: {e}') from None
    return target


def read_checkpoint(path, what='checkpoint'):
    """The loaded checkpoint, or one error line naming ``path`` (a missing, truncated or foreign file)."""
    from sau_core.input_checks import read_checkpoint as load
    if not osp.isfile(path):
        raise CLIError(f'{what} not found: {path}')
    return load(path)


def check_checkpoint_matches(model, checkpoint_path):
    """Raise CLIError unless the checkpoint's state_dict has exactly the model's keys and shapes."""
    ckpt = read_checkpoint(checkpoint_path)
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise CLIError(f'{checkpoint_path} holds no state_dict')
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
        raise CLIError(f'checkpoint {checkpoint_path} does not fit this config\'s model: '
                       f'{"; ".join(parts)} keys; was it trained with another config or --act?')


def train_summary(runner, cfg):
    """One line after training: the last validation metric (the checkpoint hook's ``save_best`` metric, else
    every plain metric) and where the checkpoints are."""
    scalars = {key[len('val/'):]: buffer.current() for key, buffer in runner.message_hub.log_scalars.items()
               if key.startswith('val/')}
    best = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('save_best')
    keys = [best] if isinstance(best, str) and best in scalars else [
        key for key in scalars if '.' not in key and key not in ('time', 'data_time')]
    shown = ', '.join(f'{key} {scalars[key]:.4g}' for key in keys) or 'no validation ran'
    return f'train done: last validation {shown}; checkpoints in {cfg.work_dir}'


def add_common_arguments(parser):
    """The flags tools/train.py and tools/eval.py share."""
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value (mmengine DictAction)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_args(parser, argv=None):
    """Parse, then export LOCAL_RANK for MMEngine's launcher as MMDetection's tools do."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args
