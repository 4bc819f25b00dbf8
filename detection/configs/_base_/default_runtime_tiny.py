# The runtime for the tiny runs: log every 10 iterations, keep only the final checkpoint.
_base_ = './default_runtime.py'
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=100000, max_keep_ckpts=1))
