"""What tools/train.py and tools/eval.py share: config loading, ``--act``, input checks, errors.

No model or training code lives here: MMEngine configs go to ``Runner.from_cfg`` and fairseq
configs (a top-level ``fairseq = dict(...)``) to ``translation.runner``.
"""
import os
import os.path as osp
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
    except (CLIError, FloatingPointError) as e:  # FloatingPointError: FiniteLossHook stopped a NaN/inf loss
        print(f'error: {e}', file=sys.stderr)
    except FileNotFoundError as e:  # e.g. a dataset file that the early checks could not foresee
        print(f'error: {e.strerror or e}: {e.filename or ""} (check the dataset and paths in the config)',
              file=sys.stderr)
    return 1


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
    """Raise CLIError naming the first missing dataset path (data_root, ann_file, data_prefix).

    The message ends with the config's ``data_prepare_hint`` (the command that makes or checks
    the data) when it has one.
    """
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
                    hint = cfg.get('data_prepare_hint')
                    raise CLIError(f'dataset path not found: {path} (needed by {key})'
                                   + (f'; {hint}' if hint else ''))


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
    """The loaded checkpoint, or CLIError naming ``path`` (a missing, truncated or foreign file)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    if not osp.isfile(path):
        raise CLIError(f'{what} not found: {path}')
    try:
        return _load_checkpoint(path, map_location='cpu')
    except Exception as e:  # torch.load's many ways to fail on a truncated or foreign file
        raise CLIError(f'cannot read checkpoint {path}: {type(e).__name__}: {e}') from e


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
