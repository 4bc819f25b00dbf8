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
"""
import json

import torch
from mmengine.dist import all_gather, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DistProbeHook(Hook):
    priority = 'VERY_LOW'  # after the optimizer step and every other hook of the iteration

    def __init__(self, out_file):
        self.out_file = out_file
        self.records = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        named = [(name, p.detach().reshape(-1)) for name, p in model.named_parameters()]
        alphas = torch.cat([p for name, p in named if name.endswith('.alpha')])
        params = torch.cat([p for _, p in named])
        loss = torch.as_tensor(outputs['loss']).detach().reshape(1).double()
        all_alphas, all_params, all_losses = all_gather(alphas), all_gather(params), all_gather(loss)
        self.records.append(dict(
            iter=runner.iter + 1,
            loss=torch.cat(all_losses).mean().item(),
            rank_losses=[x.item() for x in all_losses],
            alphas=alphas.tolist(),
            alpha_rank_diff=max((a - alphas).abs().max().item() for a in all_alphas),
            param_rank_diff=max((p - params).abs().max().item() for p in all_params)))

    def after_train(self, runner):
        if get_rank() != 0:
            return
        wrapper = runner.model
        with open(self.out_file, 'w') as f:
            json.dump(dict(world_size=get_world_size(), wrapper=type(wrapper).__name__,
                           find_unused_parameters=getattr(wrapper, 'find_unused_parameters', None),
                           iters=self.records), f, indent=1)
