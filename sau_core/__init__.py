"""SAU, the Smooth Activation Unit (Biswas et al., arXiv 2109.13210), as a fused PyTorch op."""
from .activations import ACT_CFGS, act_cfg, create_act_layer
from .module import SAU
from .op import sau
from .reference import sau_reference

__all__ = ['SAU', 'sau', 'sau_reference', 'act_cfg', 'create_act_layer', 'ACT_CFGS']
__version__ = '0.1.0'
