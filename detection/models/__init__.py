"""Registers the detection modules into MMDetection's ``MODELS`` registry (imports only)."""
from .ssd_head import SSDHeadWithLossCls  # noqa: F401
from .ssd_vgg_bn import SSDVGGBN  # noqa: F401

__all__ = ['SSDVGGBN', 'SSDHeadWithLossCls']
