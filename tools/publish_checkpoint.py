#!/usr/bin/env python
"""Make a release checkpoint: strip the training state, hash, name it the OpenMMLab way.

    python tools/publish_checkpoint.py work_dirs/unet-w8_sau_tiny-cityscapes/epoch_30.pth released/ \\
        --config segmentation/configs/unet-w8_sau_tiny-cityscapes.py
    # -> released/unet-w8_sau_tiny-cityscapes_20261123-1a2b3c4d.pth

What is kept is what ``tools/eval.py`` needs and nothing more:

- MMEngine checkpoints (``state_dict``, ``meta``, ``optimizer``, ``param_schedulers``, ``message_hub``):
  ``state_dict`` and ``meta``;
- fairseq checkpoints (``model``, ``cfg``/``args``, ``optimizer_history``, ``last_optimizer_state``,
  ``extra_state``): ``model``, ``cfg``/``args``, ``task_state``, and ``optimizer_history`` reduced to the
  names and the update count that fairseq's loader requires (no optimizer or lr-scheduler state);
  ``extra_state`` (meters, data iterator) is emptied.

The name is ``<config stem>_<YYYYMMDD>-<sha256[:8]>.pth``: the stem of ``--config`` (default: the config
file name MMEngine recorded in ``meta.experiment_name``), today's date (UTC), and the first 8 hex digits
of the sha256 of the written file itself. The file is serialised in memory, hashed and written atomically
(``tools.zoo.io.atomic_write``), so OUT_DIR never holds a partial checkpoint under a checkpoint's name.

The source is read with ``weights_only=True`` (``tools.zoo.io.read_checkpoint``; ``--trust-checkpoint``
unpickles a local file fully), and the published file must load that way too: one that would still need a
full unpickle is refused, not written. The hash in the name guards against corruption, not against a
malicious file; a published checkpoint is safe to load because it holds only tensors and plain values (and
fairseq's ``argparse.Namespace``), not because of its name.
"""
import argparse
import hashlib
import io
import os.path as osp
import re
import sys
import time

from tools.zoo.errors import InputError, run_main
from tools.zoo.io import TRUST_FLAG, atomic_write, read_checkpoint, unsafe_reason

MM_KEEP = ('state_dict', 'meta')
FAIRSEQ_KEEP = ('model', 'cfg', 'args', 'task_state')


def sha256sum(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def is_fairseq(ckpt):
    return 'model' in ckpt and ('cfg' in ckpt or 'args' in ckpt)


def strip(ckpt):
    """The checkpoint without optimizer, scheduler and logging state (a new dict; tensors shared)."""
    if not isinstance(ckpt, dict):
        raise InputError(f'not a checkpoint dict but a {type(ckpt).__name__}')
    if is_fairseq(ckpt):
        out = {k: ckpt[k] for k in FAIRSEQ_KEEP if k in ckpt}
        # fairseq's _upgrade_state_dict needs optimizer_history[-1] with these keys and extra_state
        last = (ckpt.get('optimizer_history') or [{}])[-1]
        out['optimizer_history'] = [{'criterion_name': last.get('criterion_name', 'CrossEntropyCriterion'),
                                     'optimizer_name': last.get('optimizer_name', 'FairseqNAG'),
                                     'lr_scheduler_state': {}, 'num_updates': last.get('num_updates', 0)}]
        out['extra_state'] = {}
        return out
    if 'state_dict' in ckpt:
        out = {k: ckpt[k] for k in MM_KEEP if k in ckpt}
        meta = dict(out.get('meta') or {})
        meta.pop('hook_msgs', None)  # the checkpoint hook's bookkeeping (last/best checkpoint paths)
        out['meta'] = meta
        return out
    raise InputError('neither an MMEngine checkpoint (no "state_dict") nor a fairseq one (no "model" '
                       'with "cfg"/"args")')


def config_stem(ckpt, config):
    if config:
        return osp.splitext(osp.basename(config))[0]
    name = (ckpt.get('meta') or {}).get('experiment_name') if isinstance(ckpt, dict) else None
    if name:  # MMEngine: <config stem>_<YYYYMMDD>_<HHMMSS>
        return re.sub(r'_\d{8}_\d{6}$', '', name)
    raise InputError('cannot tell the config name from this checkpoint; pass --config CONFIG')


def publish(src, out_dir, config=None, date=None, trust=False):
    """Write the stripped checkpoint into ``out_dir``; return ``(path, sha256)``. ``trust``: read ``src`` with a
    full unpickle (``--trust-checkpoint``)."""
    import torch
    ckpt = read_checkpoint(src, trust=trust)
    stripped = strip(ckpt)
    stem = config_stem(ckpt, config)
    buffer = io.BytesIO()  # the name holds the file's hash: serialise, hash, then write
    torch.save(stripped, buffer)
    data = buffer.getvalue()
    reason = unsafe_reason(data)
    if reason:
        raise InputError(f'{src}: the published checkpoint would need a full unpickle ({reason}); it must load '
                         f'with weights_only=True, so remove that from the checkpoint first')
    digest = hashlib.sha256(data).hexdigest()
    date = date or time.strftime('%Y%m%d', time.gmtime())
    path = osp.join(out_dir, f'{stem}_{date}-{digest[:8]}.pth')
    atomic_write(path, data)
    return path, digest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='MMEngine .pth or fairseq .pt checkpoint')
    parser.add_argument('out_dir', help='folder for the published file (created if missing)')
    parser.add_argument('--config', help='the config the checkpoint was trained with (names the file)')
    parser.add_argument(TRUST_FLAG, action='store_true',
                        help='read a local checkpoint that needs a full unpickle (runs any code the file carries); '
                        'only for a file you vouch for')
    args = parser.parse_args(argv)
    path, digest = publish(args.checkpoint, args.out_dir, args.config, trust=args.trust_checkpoint)
    size = osp.getsize(path)
    print(f'{path}  sha256 {digest}  {size / 2**20:.2f} MiB (from {osp.getsize(args.checkpoint) / 2**20:.2f} MiB)')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
