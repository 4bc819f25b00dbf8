#!/usr/bin/env python
"""Train and evaluate every activation with every seed on one task; write the paper's comparison tables.

    python tools/sweep.py segmentation --acts relu,sau --seeds 2
    python tools/sweep.py detection --acts relu,swish,leaky_relu,elu,softplus,gelu,prelu,relu6,sau --seeds 5

TASK is one of ``tools/zoo/tasks.py``'s TASKS (its tiny config; point the config at real data with
``--cfg-options``). For each activation A and seed S (0 .. SEEDS-1) the sweep runs, in subprocesses with this
interpreter and ``OMP_NUM_THREADS=1`` unless set,

    tools/train.py CONFIG --act A --seed S --work-dir WORK_DIR/A/seedS [--cfg-options ...]
    tools/eval.py CONFIG <last checkpoint> --act A --out WORK_DIR/A/seedS/metrics.json [--cfg-options ...]

with their logs in ``train.log`` and ``eval.log`` of the run's folder. It is resumable: a run whose
``metrics.json`` exists is skipped; a run whose training finished (``train.done``) is only evaluated; an
interrupted training is continued with ``--resume``.

Then it writes ``WORK_DIR/results.md`` and ``WORK_DIR/results.json``:

- the paper's Table 5/6/7 layout: one row per activation, one column per metric (the task's metrics in
  ``tools/zoo/tasks.py``), ``mean +/- std`` over the seeds (sample standard deviation, n-1; 0 for one seed);
- the paper's Table 8 count: for each baseline, over seeds x metrics (paired by seed: SAU seed S against
  the baseline's seed S), how often SAU is better, equal or worse. **Equal** means
  ``|SAU - baseline| < EQUAL_TOL`` points (``--equal-tol``, default 0.1) of the table's unit; every metric
  here is a percentage or BLEU score where higher is better.

Units: the tables show mIoU/aAcc/mAcc and BLEU as the tools write them (already in %) and detection's mAP/AP,
which MMDetection writes as fractions, x100 (in %, as the paper's Table 5); ``results.json`` holds the raw
per-run values under ``runs`` and the shown ones under ``summary``.
"""
import argparse
import json
import math
import os
import os.path as osp
import sys
import time

from tools.zoo import REPO_ROOT
from tools.zoo.errors import InputError, run_main
from tools.zoo.io import atomic_write
from tools.zoo.tasks import TASKS, is_fairseq_config, last_checkpoint, run_tool

EQUAL_TOL = 0.1
BASE = 'sau'
#: factor from the metric JSON's values to the tables' percent points (MMDetection's metrics are fractions)
SCALE = {'detection': 100.0}


def known_acts():
    import sau_core
    return list(sau_core.ACT_CFGS)


def parse_acts(text):
    acts = [a.strip() for a in text.split(',') if a.strip()]
    known = known_acts()
    for act in acts:
        if act not in known:
            raise InputError(f'unknown activation {act!r}; choose from {", ".join(known)}')
    if not acts:
        raise InputError('--acts: give at least one activation')
    if len(set(acts)) != len(acts):
        raise InputError(f'--acts: an activation is listed twice: {text}')
    return acts


def run_one(task, act, seed, run_dir, cfg_options, fairseq):
    """Train and evaluate one (activation, seed); returns what was done: 'skipped', 'evaluated', 'trained'."""
    metrics_file = osp.join(run_dir, 'metrics.json')
    if osp.isfile(metrics_file):
        return 'skipped'
    os.makedirs(run_dir, exist_ok=True)
    options = ['--cfg-options', *cfg_options] if cfg_options else []
    done_marker = osp.join(run_dir, 'train.done')
    did = 'evaluated'
    if not osp.isfile(done_marker):
        command = ['tools/train.py', task.config, '--act', act, '--seed', str(seed), '--work-dir', run_dir]
        if last_checkpoint(run_dir, fairseq):  # an interrupted training: continue it
            command.append('--resume')
        run_tool(command + options, osp.join(run_dir, 'train.log'))
        with open(done_marker, 'w') as f:
            f.write(time.strftime('%Y-%m-%d %H:%M:%S\n'))
        did = 'trained'
    checkpoint = last_checkpoint(run_dir, fairseq)
    if checkpoint is None:
        raise InputError(f'training in {run_dir} finished but left no checkpoint; see {run_dir}/train.log')
    # tools/eval.py writes metrics.json atomically: it appears only when complete (it marks the run as done)
    run_tool(['tools/eval.py', task.config, checkpoint, '--act', act, '--work-dir', osp.join(run_dir, 'eval'),
              '--out', metrics_file] + options, osp.join(run_dir, 'eval.log'))
    return did


def mean_std(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def summarize(task_name, acts, seeds, runs, equal_tol, cfg_options):
    """``runs[act][seed]`` -> the results dict (tables' numbers, the comparison counts, the rule)."""
    task = TASKS[task_name]
    columns = list(task.metrics)
    scale = SCALE.get(task_name, 1.0)
    summary = {}
    for act in acts:
        summary[act] = {}
        for column, key in task.metrics.items():
            values = [scale * float(runs[act][seed][key]) for seed in seeds]
            mean, std = mean_std(values)
            summary[act][column] = dict(mean=mean, std=std, n=len(values), values=values)
    comparison = {}
    if BASE in acts:
        for base in acts:
            if base == BASE:
                continue
            counts = dict(better=0, equal=0, worse=0)
            for seed in seeds:
                for key in task.metrics.values():
                    diff = scale * (float(runs[BASE][seed][key]) - float(runs[base][seed][key]))
                    counts['equal' if abs(diff) < equal_tol else 'better' if diff > 0 else 'worse'] += 1
            comparison[base] = counts
    return dict(task=task_name, config=task.config, acts=acts, seeds=seeds, cfg_options=cfg_options,
                metrics=dict(task.metrics), columns=columns, scale=scale,
                runs={act: {str(seed): {k: runs[act][seed][k] for k in task.metrics.values()}
                            for seed in seeds} for act in acts},
                summary=summary, comparison=comparison,
                equal_rule=f'|SAU - baseline| < {equal_tol:g} points (table units), per seed (paired) and metric; '
                           f'higher is better')


def to_markdown(results):
    columns = results['columns']
    seeds = results['seeds']
    lines = [f'# Sweep: {results["task"]} ({results["config"]})', '',
             f'{len(seeds)} seed(s) ({", ".join(map(str, seeds))}) per activation, mean +/- std (sample std, n-1)'
             + (f', metric values x{results["scale"]:g} (in %).' if results['scale'] != 1 else '.')
             + (f' `--cfg-options {" ".join(results["cfg_options"])}`.' if results['cfg_options'] else ''), '',
             '| activation | ' + ' | '.join(columns) + ' |', '|---|' + '---:|' * len(columns)]
    for act in results['acts']:
        cells = [f'{results["summary"][act][c]["mean"]:.2f} +/- {results["summary"][act][c]["std"]:.2f}'
                 for c in columns]
        lines.append(f'| {act} | ' + ' | '.join(cells) + ' |')
    lines.append('')
    if results['comparison']:
        lines += [f'SAU against each baseline, counted over {len(seeds)} seed(s) x {len(columns)} metrics '
                  f'(equal: {results["equal_rule"]}):', '',
                  '| baseline | SAU better | equal | SAU worse |', '|---|---:|---:|---:|']
        for base, c in results['comparison'].items():
            lines.append(f'| {base} | {c["better"]} | {c["equal"]} | {c["worse"]} |')
    else:
        lines.append('No SAU vs baseline count: `sau` is not among the activations.')
    return '\n'.join(lines) + '\n'


def sweep(task_name, acts, n_seeds, work_dir, cfg_options=(), equal_tol=EQUAL_TOL, log=print):
    if task_name not in TASKS:
        raise InputError(f'unknown task {task_name!r}; choose from {", ".join(TASKS)}')
    if n_seeds < 1:
        raise InputError(f'--seeds must be at least 1, not {n_seeds}')
    task = TASKS[task_name]
    fairseq = is_fairseq_config(task.config)
    work_dir = osp.abspath(work_dir)
    seeds = list(range(n_seeds))
    runs, done = {}, dict(skipped=0, evaluated=0, trained=0)
    for act in acts:
        runs[act] = {}
        for seed in seeds:
            run_dir = osp.join(work_dir, act, f'seed{seed}')
            start = time.time()
            did = run_one(task, act, seed, run_dir, list(cfg_options), fairseq)
            done[did] += 1
            with open(osp.join(run_dir, 'metrics.json')) as f:
                runs[act][seed] = json.load(f)
            missing = [k for k in task.metrics.values() if k not in runs[act][seed]]
            if missing:
                raise InputError(f'{run_dir}/metrics.json lacks {", ".join(missing)}')
            shown = ', '.join(f'{k} {runs[act][seed][k]:.2f}' for k in task.metrics.values())
            log(f'{act} seed{seed}: {did}{"" if did == "skipped" else f" in {time.time() - start:.0f} s"}: {shown}')
    results = summarize(task_name, acts, seeds, runs, equal_tol, list(cfg_options))
    atomic_write(osp.join(work_dir, 'results.json'), json.dumps(results, indent=2) + '\n')
    atomic_write(osp.join(work_dir, 'results.md'), to_markdown(results))
    log(f'runs: {done["trained"]} trained, {done["evaluated"]} evaluated only, {done["skipped"]} skipped '
        f'(metrics existed); results in {work_dir}/results.md and results.json')
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('task', help=f'one of {", ".join(TASKS)}')
    parser.add_argument('--acts', default='relu,sau', help='comma-separated activations (default relu,sau)')
    parser.add_argument('--seeds', type=int, default=2, help='number of seeds, 0 .. SEEDS-1 (default 2)')
    parser.add_argument('--work-dir', help='default: work_dirs/sweep/TASK')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to every tools/train.py and tools/eval.py call')
    parser.add_argument('--equal-tol', type=float, default=EQUAL_TOL,
                        help='SAU and a baseline are "equal" when they differ by less than this many metric '
                        'points (default %(default)s)')
    args = parser.parse_args(argv)
    if args.task not in TASKS:
        raise InputError(f'unknown task {args.task!r}; choose from {", ".join(TASKS)}')
    acts = parse_acts(args.acts)
    work_dir = args.work_dir or osp.join(REPO_ROOT, 'work_dirs', 'sweep', args.task)
    results = sweep(args.task, acts, args.seeds, work_dir, args.cfg_options, args.equal_tol,
                    log=lambda line: print(line, flush=True))
    print(to_markdown(results))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
