"""The SAU zoo's tools: entry points at the top (``train.py``, ``eval.py``, ``demo.py``, ...), the plumbing they
share in :mod:`tools.zoo`, and ``benchmarks/``, ``data/``, ``env/``."""
