"""A probe for the distributed-training tests (tests/test_distributed.py): an MMEngine hook, imported by the
test configs through ``custom_imports`` (``tests/`` on ``PYTHONPATH``).

After every training iteration ``DistProbeHook`` all-gathers, over the ranks of the run (one rank: itself),
the total loss of each rank, every SAU ``alpha`` and all parameters flattened, and records

- ``loss``: the mean of the ranks' losses (each rank's loss is the mean over its own share of the batch,
  and the shares are equal, so this is the loss of the whole batch, the number a 1-process run logs);
- ``alphas``: rank 0's SAU alphas, in ``named_parameters`` order;
- ``alpha_rank_diff`` / ``param_rank_diff``: the largest absolute difference of any alpha / parameter
  between any rank and rank 0 (0.0 when DDP keeps the replicas identical, as it must).

Rank 0 writes the record to ``out_file`` (JSON) when training ends, together with the model wrapper's
type, ``find_unused_parameters`` and the world size.

Run as a script, ``python tests/dist_probe.py OUT.json tools/train.py ARGS...`` (under torchrun or not)
does the same for fairseq: it runs ``tools/train.py ARGS`` with fairseq's ``Trainer.train_step`` wrapped to
record, after every update, the SAU alphas and their (and all parameters') largest difference between
ranks. fairseq checks that the ranks' gradient norms agree only on GPUs (``Trainer._grad_norm_buf``).
"""
import json
import os
import sys

import torch
from mmengine.dist import all_gather, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def gather_diffs(alphas, params):
    """(largest |alpha - rank 0's alpha|, the same for all parameters) over the ranks; 0.0 on one process."""
    if not torch.distributed.is_initialized():
        return 0.0, 0.0
    all_alphas, all_params = all_gather(alphas), all_gather(params)
    return (max((a - all_alphas[0]).abs().max().item() for a in all_alphas),
            max((p - all_params[0]).abs().max().item() for p in all_params))


def flat_parameters(model):
    """(the SAU alphas, all parameters), each flattened and concatenated in ``named_parameters`` order."""
    named = [(name, p.detach().reshape(-1)) for name, p in model.named_parameters()]
    return torch.cat([p for name, p in named if name.endswith('.alpha')]), torch.cat([p for _, p in named])


@HOOKS.register_module()
class DistProbeHook(Hook):
    priority = 'VERY_LOW'  # after the optimizer step and every other hook of the iteration

    def __init__(self, out_file):
        self.out_file = out_file
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        alphas, params = flat_parameters(model)
        all_losses = all_gather(torch.as_tensor(outputs['loss']).detach().reshape(1).double())
        alpha_rank_diff, param_rank_diff = gather_diffs(alphas, params)
        self.records.append(dict(
            iter=runner.iter + 1, loss=torch.cat(all_losses).mean().item(),
            rank_losses=[x.item() for x in all_losses], alphas=alphas.tolist(),
            alpha_rank_diff=alpha_rank_diff, param_rank_diff=param_rank_diff))

    def after_train(self, runner):
        if get_rank() != 0:
            return
        wrapper = runner.model
        with open(self.out_file, 'w') as f:
            json.dump(dict(world_size=get_world_size(), wrapper=type(wrapper).__name__,
                           find_unused_parameters=getattr(wrapper, 'find_unused_parameters', None),
                           iters=self.records), f, indent=1)


def run_fairseq_probed(out_file, argv):
    """``tools/train.py argv`` with fairseq's ``Trainer.train_step`` recording every update; returns its status."""
    from tools import train  # noqa: I100  (first: it quiets mmengine's import-time warnings)
    from tools.zoo.errors import run_main
    from fairseq.trainer import Trainer

    records, train_step = [], Trainer.train_step

    def probed_train_step(self, samples, raise_oom=False):
        result = train_step(self, samples, raise_oom)
        alphas, params = flat_parameters(self.model)
        alpha_rank_diff, param_rank_diff = gather_diffs(alphas, params)
        records.append(dict(update=self.get_num_updates(), alphas=alphas.tolist(),
                            alpha_rank_diff=alpha_rank_diff, param_rank_diff=param_rank_diff))
        return result

    Trainer.train_step = probed_train_step
    status = run_main(train.main, argv[1:])
    if int(os.environ.get('RANK', 0)) == 0:
        with open(out_file, 'w') as f:
            json.dump(dict(world_size=int(os.environ.get('WORLD_SIZE', 1)), updates=records), f, indent=1)
    return status


if __name__ == '__main__':
    sys.exit(run_fairseq_probed(sys.argv[1], sys.argv[2:]))
