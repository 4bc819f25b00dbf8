"""Configs for tools/train.py and tools/eval.py: loading, the shared flags, ``--cfg-options`` typing, ``--act``,
and the frameworks' errors about a config (an unknown type, argument or fairseq option) as one InputError line.

Configs are MMEngine files of two kinds: MMEngine runs (a ``model = dict(...)``: detection, segmentation) go to
``Runner.from_cfg``, fairseq runs (a top-level ``fairseq = dict(...)``: translation) to ``translation.runner``.
Three helpers here rely on private behaviour of other code (MMEngine's registry message and its logging,
argparse's ``ArgumentParser.error``, Python's ``TypeError`` message); each checks the version it was written
for (:data:`MMENGINE_VERSION`, :data:`PYTHON_VERSION`) first. Checkpoints are loaded by ``tools.zoo.io``
(``weights_only=True``); nothing here changes torch's loading for the process.
"""
import contextlib
import os
import os.path as osp
import re
import sys
import warnings

from tools.zoo.errors import InputError, check_version

#: the MMEngine release whose registry error message framework_errors parses and whose registry logging
#: check_act_cfgs silences
MMENGINE_VERSION = '0.10.7'
#: the Python whose argparse fairseq_option_errors patches and whose TypeError message framework_errors parses
PYTHON_VERSION = (3, 11)

# setuptools<81 (needed for mmengine's mmdet:: config paths) warns on every mmengine/mmcv import
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)


def _check_mmengine(patch, recheck):
    import mmengine
    check_version('mmengine', mmengine.__version__, MMENGINE_VERSION, patch, recheck)


def _check_python(patch, recheck):
    check_version('Python', '.'.join(map(str, sys.version_info[:2])), '.'.join(map(str, PYTHON_VERSION)),
                  patch, recheck)


def load_config(path):
    """``Config.fromfile`` with a one-line error for a missing or unparsable file."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise InputError(f'config file not found: {path}')
    try:
        return Config.fromfile(path)
    except Exception as e:  # a broken config: syntax, bad _base_, failed custom_imports, ...
        raise InputError(f'cannot load config {path}: {type(e).__name__}: {e}') from e


def is_fairseq(cfg):
    return 'fairseq' in cfg


def check_config_kind(cfg, path):
    """InputError unless ``cfg`` is a config of the zoo's kinds: an MMEngine one (``model``) or a fairseq one."""
    if not is_fairseq(cfg) and not isinstance(cfg.get('model'), dict):
        raise InputError(f'{path} is not a config of this zoo: it has neither `model = dict(...)` (MMDetection, '
                         'MMSegmentation) nor `fairseq = dict(...)` (translation); see the configs under '
                         'detection/, segmentation/ and translation/')


_MISSING = object()


def _config_value(cfg, key):
    """The config's value at a dotted ``--cfg-options`` key (list items by index), or _MISSING; InputError for
    an index past the end of a list (MMEngine's merge raises a KeyError there)."""
    node = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    for part in key.split('.'):
        if isinstance(node, (list, tuple)) and part.lstrip('-').isdigit():
            index = int(part)
            if not -len(node) <= index < len(node):
                raise InputError(f'--cfg-options {key}: index {index} is past the end of the config\'s list '
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
    """InputError for a ``--cfg-options key=value`` whose value is not of the kind the config holds there.

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
            raise InputError(f'--cfg-options {key}={value!r}: expected {expected}, as the config has '
                             f'({key}={old!r})')


def config_entries(node, wanted, path=''):
    """(dotted key, the dict holding it, key, value) of every entry under ``node`` (nested dicts and lists) for
    which ``wanted(key, value)``; a wanted entry's value is not searched further."""
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        dotted = f'{path}.{key}' if path else str(key)
        if isinstance(node, dict) and wanted(key, value):
            yield dotted, node, key, value
        else:
            yield from config_entries(value, wanted, dotted)


def _is_act_cfg(key, value):
    return key == 'act_cfg' and isinstance(value, dict)


def replace_act_cfgs(node, new_act):
    """Replace every dict-valued ``act_cfg`` under ``node`` (dicts and lists) by a copy of ``new_act``.

    ``act_cfg=None`` (a layer without activation) stays None. Returns the number replaced.
    """
    found = list(config_entries(node, _is_act_cfg))
    for _, parent, key, _ in found:
        parent[key] = dict(new_act)
    return len(found)


def apply_act(cfg, name):
    """``--act NAME``: every activation of ``cfg.model`` becomes ``sau_core.act_cfg(NAME)``; for a fairseq
    config, ``fairseq.train.activation_fn`` becomes NAME (fairseq checks it against its choices)."""
    if is_fairseq(cfg):
        cfg.fairseq.train.activation_fn = name
        return
    import sau_core
    try:
        new_act = sau_core.act_cfg(name)
    except ValueError as e:
        raise InputError(f'--act: {e}') from None
    if replace_act_cfgs(cfg.get('model'), new_act) == 0:
        raise InputError(f'--act {name}: the config\'s model has no act_cfg to replace')
    imports = cfg.setdefault('custom_imports', dict(imports=[], allow_failed_imports=False))
    if 'sau_core.mm' not in imports['imports']:  # SAU and Softplus are registered there
        imports['imports'] = list(imports['imports']) + ['sau_core.mm']


def check_act_cfgs(cfg):
    """InputError naming the first ``act_cfg`` of ``cfg.model`` whose type no registry of the config's scope
    has (a typo such as ``type='Sau'``), before the model is built."""
    from unittest import mock

    import mmengine.logging
    import sau_core
    _check_mmengine('tools.zoo.config.check_act_cfgs (mmengine.logging.print_log silenced)',
                    'that Registry.get / switch_scope_and_registry still log only through mmengine.logging.print_log '
                    '(mmengine/registry/registry.py)')
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
        for path, _, _, act in config_entries(cfg.get('model'), _is_act_cfg, 'model'):
            kind = act.get('type')
            if isinstance(kind, str) and registry.get(kind) is None:
                known = ', '.join(a['type'] for a in sau_core.ACT_CFGS.values())
                raise InputError(f'{path}: unknown activation type {kind!r} (not in the {registry.scope} MODELS '
                                 f'registry); the zoo\'s activations are {known} (or use --act NAME)')


@contextlib.contextmanager
def framework_errors():
    """A type that no MMEngine registry has (``KeyError: 'X is not in the mmdet::model registry. Please
    check ...'``, raised from deep inside the build) or an argument its class does not take becomes one
    InputError line."""
    _check_mmengine('tools.zoo.config.framework_errors (registry KeyError regex)',
                    'the KeyError message of mmengine/registry/build_functions.py build_from_cfg '
                    '("<type> is not in the <scope>::<name> registry")')
    _check_python('tools.zoo.config.framework_errors (TypeError regex)',
                  'the TypeError message for an unexpected keyword ("<Class>.__init__() got an unexpected '
                  'keyword argument \'<name>\'")')
    try:
        yield
    except KeyError as e:
        found = re.search(r'([\w.:]+) is not in the (\S+) registry', str(e))
        if not found:
            raise
        raise InputError(f'unknown type {found.group(1)!r} in the config (not in the {found.group(2)} registry): '
                         'a typo, or a module missing from custom_imports') from e
    except TypeError as e:  # a config dict with a key its class does not take (``max_iterz=5``)
        found = re.fullmatch(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'", str(e))
        if not found:
            raise
        raise InputError(f'{found.group(1)} takes no argument {found.group(2)!r}: a typo in the config or '
                         '--cfg-options?') from e


@contextlib.contextmanager
def fairseq_option_errors():
    """fairseq's argparse errors (an unknown option or activation in ``fairseq.train``/``generate`` or --act)
    become one InputError line instead of a usage screen and exit status 2."""
    import argparse
    _check_python('tools.zoo.config.fairseq_option_errors (argparse.ArgumentParser.error replaced)',
                  'that argparse.ArgumentParser.parse_args / parse_known_args still report every bad option '
                  'through self.error(message) and nothing else (argparse.py), as fairseq\'s '
                  'options.parse_args_and_arch calls them')
    original = argparse.ArgumentParser.error

    def error(self, message):
        raise InputError(f'fairseq rejects the config\'s options: {message}')
    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def apply_options(cfg, cfg_options=None, act=None):
    """``--cfg-options`` (after :func:`check_cfg_options`), then ``--act``; both kinds of config."""
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if act:
        apply_act(cfg, act)


def work_dir(cfg, cli_work_dir, config_path):
    """The run's folder, MMDetection's rule: ``--work-dir`` > ``work_dir`` in the config > ./work_dirs/<stem>."""
    if cli_work_dir is not None:
        return cli_work_dir
    if cfg.get('work_dir', None) is not None:
        return cfg.work_dir
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def apply_runner_options(cfg, args):
    """MMEngine configs: ``--launcher``, ``--seed`` and the work dir."""
    cfg.launcher = args.launcher
    if getattr(args, 'seed', None) is not None:
        cfg.randomness = dict(cfg.get('randomness') or {}, seed=args.seed)
    cfg.work_dir = work_dir(cfg, args.work_dir, args.config)


def add_common_arguments(parser):
    """The flags tools/train.py and tools/eval.py share."""
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value (mmengine DictAction)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load a checkpoint that needs a full unpickle (which runs any code the file carries); '
                        'only for a local file you vouch for, never a URL. Without it every checkpoint loads '
                        'with weights_only=True (see tools/zoo/README.md#checkpoint-loading)')


def parse_args(parser, argv=None):
    """Parse, then export LOCAL_RANK for MMEngine's launcher as MMDetection's tools do."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args
