"""SAU, the Smooth Activation Unit (Biswas et al., arXiv 2109.13210), as a fused PyTorch op.

Needs torch only: the MMEngine and fairseq integrations (``sau_core.mm``, ``sau_core.fairseq``) import their
framework when they are imported themselves.
"""
from .activations import ACT_CFGS, act_cfg, create_act_layer
from .module import SAU, name_sau_layers
from .op import sau
from .reference import sau_reference

__all__ = ['SAU', 'sau', 'sau_reference', 'act_cfg', 'create_act_layer', 'ACT_CFGS', 'name_sau_layers']
__version__ = '0.1.0'
