"""The SAU zoo's fairseq ``--user-dir``: importing it adds ``--activation-fn sau`` (and swish,
leaky_relu, elu, softplus, prelu, relu6) to fairseq; see ``sau_core/fairseq.py``."""
from sau_core import fairseq as _sau_fairseq  # noqa: F401  (registers on import)
