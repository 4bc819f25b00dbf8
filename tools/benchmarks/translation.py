#!/usr/bin/env python
"""Training throughput and memory of fairseq's transformer_wmt_en_de with SAU vs ReLU.

    python tools/benchmarks/translation.py                       # base sizes, 6+6 layers, CPU
    python tools/benchmarks/translation.py --layers 2 --steps 5  # quicker

The activations are stepped interleaved in one process per round (``common``): fairseq builds each model
through its own argument parser and ``TransformerModel.build_model`` with ``--user-dir translation``, and each
step is fairseq's ``label_smoothed_cross_entropy`` forward, backward and an Adam step on a fixed random batch.
Words/s counts target tokens, as fairseq's ``wps``. Memory: ``common.MemoryMeter``'s step memory (the peak of
tensor bytes one step adds: activations kept for backward, gradients, Adam's temporaries). Not a test.
"""
import argparse
import sys

from tools.benchmarks.common import (add_arguments, best_of, measure, parse_acts, print_spread, print_table,
                                     ratio_columns, run_workers)
from tools.zoo.errors import run_main


#: the ratio columns: (result key, label)
COLUMNS = [('step_s', 'time'), ('step_mib', 'step memory')]

def build(act, layers, vocab):
    """fairseq's transformer_wmt_en_de (shared embeddings, ``--activation-fn act``) and its criterion."""
    import torch
    from fairseq import options, tasks
    from fairseq.data import Dictionary
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.models.transformer import TransformerModel

    dictionary = Dictionary()
    for i in range(vocab - len(dictionary)):
        dictionary.add_symbol(f'w{i}')
    parser = options.get_training_parser()
    from translation.runner import USER_DIR
    argv = ['/dev/null', '--user-dir', USER_DIR, '--arch', 'transformer_wmt_en_de',
            '--activation-fn', act, '--share-all-embeddings', '--encoder-layers', str(layers),
            '--decoder-layers', str(layers), '--criterion', 'label_smoothed_cross_entropy',
            '--label-smoothing', '0.1', '--task', 'translation', '-s', 'en', '-t', 'de']
    cfg = convert_namespace_to_omegaconf(options.parse_args_and_arch(parser, argv))
    task = tasks.get_task('translation')(cfg.task, dictionary, dictionary)
    torch.manual_seed(0)  # after the imports, so that every activation's model starts from the same weights
    model = TransformerModel.build_model(cfg.model, task)
    return model, task.build_criterion(cfg.criterion), dictionary


def worker(args):
    """The activations of ``--worker`` in this process, stepped interleaved; prints one JSON line each."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def build_step(act):
        model, criterion, dictionary = build(act, args.layers, args.vocab)
        model.to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
        bsz, length = args.sentences, args.length
        tokens = torch.randint(dictionary.nspecial, len(dictionary), (bsz, length))
        prev = torch.cat([torch.full((bsz, 1), dictionary.eos()), tokens[:, :-1]], 1)
        sample = {'id': torch.arange(bsz), 'nsentences': bsz, 'ntokens': bsz * length,
                  'target': tokens.to(device),
                  'net_input': {'src_tokens': tokens.flip(1).to(device),
                                'src_lengths': torch.full((bsz,), length, device=device),
                                'prev_output_tokens': prev.to(device)}}

        def step():
            optimizer.zero_grad()
            loss, _, _ = criterion(model, sample)
            loss.backward()
            optimizer.step()

        def info():
            # fairseq 0.12.2's encoder layers also hold unused copies of their weights for its inference fast
            # path (in_proj_weight, fc1_weight, ...): count only the parameters that train
            trained = sum(p.numel() for p in model.parameters() if p.grad is not None)
            alphas = sum(1 for name, _ in model.named_parameters() if name.endswith('activation_fn.alpha'))
            return dict(sau_alphas=alphas, params_m=trained / 1e6, threads=torch.get_num_threads())
        return step, info

    measure(build_step, args.worker.split(','), args.warmup, args.steps, device)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--layers', type=int, default=6, help='encoder and decoder layers (base: 6)')
    parser.add_argument('--vocab', type=int, default=8000, help='joint dictionary size (WMT14 BPE: ~40k)')
    parser.add_argument('--sentences', type=int, default=32, help='sentences per batch')
    parser.add_argument('--length', type=int, default=32, help='tokens per sentence (source and target)')
    parser.add_argument('--steps', type=int, default=10, help='timed steps (the median is reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    parser.add_argument('--threads', type=int, default=0, help='torch threads (0: torch default)')
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    acts = parse_acts(args.acts)
    results = run_workers(__file__, acts, args.rounds,
                          [f'--{k}={getattr(args, k)}' for k in ('layers', 'vocab', 'sentences', 'length', 'steps',
                                                                'warmup', 'threads', 'device')])
    best = best_of(results, ('step_s', 'step_mib'))
    ratios, cells = ratio_columns(results, args.baseline, COLUMNS)
    first = results[acts[0]][0]
    print(f'transformer_wmt_en_de, {args.layers}+{args.layers} layers (d 512, FFN 2048, 8 heads), '
          f'{first["params_m"]:.1f}M trained parameters, batch {args.sentences}x{args.length} tokens, '
          f'vocab {args.vocab}, {args.device}, {first["threads"]} thread(s), median of {args.steps} steps, '
          f'interleaved, best of {args.rounds} round(s)')
    print_table(['activation', 'words/s', 'step ms', 'step memory (MiB)'] + ratios + ['SAU alphas'],
                [[act, f'{args.sentences * args.length / b["step_s"]:.0f}', f'{1000 * b["step_s"]:.1f}',
                  f'{b["step_mib"]:.0f}'] + cells[act]
                 + [str(results[act][0]['sau_alphas'])] for act, b in best.items()])
    print_spread(results, args.baseline, COLUMNS)
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
