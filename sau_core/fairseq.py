"""fairseq integration: ``--activation-fn sau`` and the paper's other baselines fairseq lacks.

fairseq's activation lookup is closed in two places, both fixed when fairseq is imported:
``utils.get_activation_fn`` is an if/elif chain ending in ``RuntimeError``, and the
``activation_fn`` fields of ``TransformerConfig`` and the dataclass models are typed by a
``ChoiceEnum`` built from ``utils.get_available_activation_fns()`` at class definition (Hydra also
keeps a copy of each dataclass model as a config node). :func:`register` therefore

1. wraps (never replaces) both functions: the names in :data:`ACTIVATIONS` give a fresh module
   from :func:`sau_core.create_act_layer` on every call, so each FFN layer keeps its own SAU
   (its own alpha) as a child module and the checkpoint holds one alpha per layer; every other
   name goes to fairseq's own function;
2. rebuilds the ChoiceEnum on every activation field of ``TransformerConfig`` and the registered
   model dataclasses (argparse choices and OmegaConf validation read these);
3. re-stores the Hydra config nodes of the dataclass models it changed.

Importing this module calls :func:`register`; calling it again only refreshes (2) and (3), for
models registered since. ``translation/`` (the fairseq ``--user-dir``) imports this module.

Per-channel parameters: fairseq's FFN applies the activation to ``fc1``'s output, a (T, B, C) tensor, so
``sau_per_channel`` (``PerChannelSAU``) is built here with ``channel_dim=-1``: one alpha per FFN feature (C),
not per batch column as dim 1 would give. Its alpha is sized from ``fc1.out_features`` when the layer
registers ``fc1`` (``sau_core.per_channel``), before fairseq counts the parameters or builds the optimizer.

(1)-(3) rely on fairseq's private structure (the names and types above, and how ``register_model`` stores its
Hydra node), so :func:`register` first checks that the installed fairseq is the version they were written for,
:data:`FAIRSEQ_VERSION` (the zoo's patched builds are versioned ``0.12.2+sauzoo...``).
"""
import dataclasses
import functools
from enum import Enum

from .activations import ACT_CFGS, act_cfg, create_act_layer
from .module import SAU

#: the activations added to fairseq: the zoo's names fairseq lacks, plus ``swish``, whose fairseq
#: version returns the ``nn.SiLU`` class instead of a function and is not in fairseq's choices.
ACTIVATIONS = tuple(name for name in ACT_CFGS if name not in ('relu', 'gelu'))

#: act_cfg types with per-channel parameters: fairseq's (T, B, C) input has its channels on the last dim
_CHANNELS_LAST = frozenset({'PerChannelSAU'})

_MARK = '_sau_zoo_wrapped'
#: the fairseq release whose private code register() patches (a local version suffix, +sauzoo..., is allowed)
FAIRSEQ_VERSION = '0.12.2'
_CHOICE_TYPES = {}  # tuple of choices -> its ChoiceEnum, so a repeated register() changes nothing


def register():
    """Add :data:`ACTIVATIONS` to fairseq's activation lookup, choices and Hydra nodes (idempotent)."""
    import fairseq
    from fairseq import utils

    check_fairseq_version(fairseq.__version__)
    # Patch (1): wraps two functions of fairseq.utils, written for fairseq 0.12.2 (checked above).
    if not getattr(utils.get_activation_fn, _MARK, False):
        utils.get_activation_fn = _wrap_get_activation_fn(utils.get_activation_fn)
        utils.get_available_activation_fns = _wrap_available(utils.get_available_activation_fns)
    _refresh_choices(utils.get_available_activation_fns())


def check_fairseq_version(version):
    """Raise unless ``version`` is :data:`FAIRSEQ_VERSION` (with any local suffix such as ``+sauzoo.313cfab5``)."""
    if version.split('+')[0] != FAIRSEQ_VERSION:
        raise RuntimeError(
            f'sau_core.fairseq patches the private code of fairseq {FAIRSEQ_VERSION}, but fairseq {version} is '
            'installed. Before changing FAIRSEQ_VERSION, check in the new fairseq that: utils.get_activation_fn '
            'and utils.get_available_activation_fns still exist and are looked up through the module (not '
            'imported by name elsewhere); the activation_fn fields of TransformerConfig and of the dataclasses in '
            'fairseq.models.MODEL_DATACLASS_REGISTRY are still ChoiceEnums built from '
            'get_available_activation_fns(); and register_model still stores each model dataclass in Hydra\'s '
            "ConfigStore as group='model', name=<model name>, provider='fairseq'. Then run tests/test_translation.py.")


def make_activation(name):
    """A fresh module for the zoo activation ``name``, laid out for fairseq's (T, B, C) tensors.

    SAU runs in place here: every caller of ``get_activation_fn``'s result in fairseq 0.12.2 applies it to a
    Linear's fresh output (``activation_fn(self.fc1(x))``, ``dense``, ``ff1``, ``lm_head_transform_weight``), which
    nothing else reads, so overwriting it is safe, and the FFN then keeps one (T, B, ffn_dim) tensor for backward,
    as ReLU does (out of place: two, SAU's input and fc2's). Where in place cannot run (the zero-centred form,
    alpha out of its range, torch.compile) the layer runs out of place, as ``SAU(inplace=True)`` does anywhere.
    """
    cfg = act_cfg(name)
    if cfg['type'] in _CHANNELS_LAST:
        cfg['channel_dim'] = -1
    layer = create_act_layer(cfg)
    if isinstance(layer, SAU):
        layer.inplace = True
    return layer


def _wrap_get_activation_fn(original):
    @functools.wraps(original)
    def get_activation_fn(activation):
        name = str(activation)  # fairseq passes a str or a ChoiceEnum member
        if name in ACTIVATIONS:
            return make_activation(name)
        return original(activation)

    setattr(get_activation_fn, _MARK, True)
    return get_activation_fn


def _wrap_available(original):
    @functools.wraps(original)
    def get_available_activation_fns():
        choices = list(original())
        return choices + [name for name in ACTIVATIONS if name not in choices]

    setattr(get_available_activation_fns, _MARK, True)
    return get_available_activation_fns


def _refresh_choices(choices):
    """Retype every activation-choice field and re-store the Hydra nodes of those models.

    Patches (2) and (3): rewrites dataclass fields and annotations of fairseq's configs and re-stores Hydra nodes
    the way fairseq 0.12.2's register_model does (register() checked the version)."""
    from fairseq.dataclass import ChoiceEnum
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from fairseq.models.transformer import TransformerConfig
    from hydra.core.config_store import ConfigStore

    fairseq_own = set(_unwrapped_available()())
    new_type = _CHOICE_TYPES.setdefault(tuple(choices), ChoiceEnum(choices))
    retyped = {cls for cls in {TransformerConfig, *MODEL_DATACLASS_REGISTRY.values()}
               if _retype(cls, fairseq_own, new_type)}
    store = ConfigStore.instance()
    for name, cls in MODEL_DATACLASS_REGISTRY.items():
        if cls in retyped:  # as fairseq.models.register_model stores them
            node = cls()
            node._name = name
            store.store(name=name, group='model', node=node, provider='fairseq')
    return retyped


def _retype(cls, fairseq_own, new_type):
    """Give ``cls``'s activation-choice fields the type ``new_type``; True if it has any."""
    found = False
    for f in dataclasses.fields(cls):
        if _is_activation_choice(f.type, fairseq_own):
            f.type = new_type  # Field objects are shared with subclasses that inherit the field
            for klass in cls.__mro__:  # OmegaConf reads the annotations (typing.get_type_hints)
                annotations = klass.__dict__.get('__annotations__', {})
                if f.name in annotations:
                    annotations[f.name] = new_type
            found = True
    return found


def _is_activation_choice(field_type, fairseq_own):
    """A ChoiceEnum offering at least fairseq's own activations (before or after a rebuild)."""
    return (isinstance(field_type, type) and issubclass(field_type, Enum)
            and fairseq_own <= {member.value for member in field_type})


def _unwrapped_available():
    from fairseq import utils

    fn = utils.get_available_activation_fns
    while getattr(fn, _MARK, False):
        fn = fn.__wrapped__
    return fn


register()
