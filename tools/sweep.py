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

On a Slurm cluster (``--launcher slurm``, ``tools/zoo/slurm.py``) the same runs are one job array: each array
task runs the two commands above into the same run folder (with ``--launcher slurm`` when a run spans several
tasks), and ``--resume`` whenever the folder holds a checkpoint. Submission returns at once (``--wait``
blocks); ``--status`` and every rerun list each run's state (pending, running, done, failed, cancelled,
timed_out) with its log and, for a failure, its last error line, resubmit failed, cancelled and timed-out runs
(not ``--status``), and collect the finished runs into ``results.md``/``results.json`` (the runs still missing
listed under ``missing``). ``--dry-run`` prints the plan and the job script and submits nothing.

    python tools/sweep.py segmentation --config segmentation/configs/unet_sau_cityscapes.py --acts relu,sau \
        --seeds 5 --launcher slurm --partition gpu --gpus-per-run 8 --mem 256G --time 12:00:00 \
        --cfg-options train_dataloader.batch_size=4 sync_bn=torch
    python tools/sweep.py segmentation --status

- a paired comparison against SAU (``tools/zoo/stats.py``): for each activation A and metric, the mean over seeds
  of d = SAU - A (same seed), its standard error and the two-sided paired t-test's p (``scipy.stats.ttest_rel``),
  starred below 0.05 and, with two stars, also after Holm's correction over the table: whether a difference is
  distinguishable from seed-to-seed noise at the sweep's scale.

``--preset NAME`` names a list of activations instead of ``--acts``: ``paper`` (the paper's baselines and SAU)
or ``ablation`` (issue 17: SAU, ReLU, the paper's PReLU and SAU with one thing changed; README, 'Smoothing or
trainable slope?'):

    python tools/sweep.py segmentation --preset ablation --seeds 5 --work-dir work_dirs/ablation_seg

Units: the tables show mIoU/aAcc/mAcc and BLEU as the tools write them (already in %) and detection's mAP/AP,
which MMDetection writes as fractions, x100 (in %, as the paper's Table 5); ``results.json`` holds the raw
per-run values under ``runs`` and the shown ones under ``summary``.
"""
import argparse
import dataclasses
import functools
import json
import math
import os
import os.path as osp
import sys
import time

from tools.zoo import REPO_ROOT
from tools.zoo.errors import InputError, run_main
from tools.zoo.io import atomic_write
from tools.zoo import stats
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


def summarize(task_name, acts, seeds, runs, equal_tol, cfg_options, config=None):
    """``runs[act][seed]`` -> the results dict (tables' numbers, the comparison counts, the rule)."""
    task = TASKS[task_name]
    if config is not None:
        task = dataclasses.replace(task, config=config)
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
                paired=stats.paired_summary(runs, acts, seeds, task.metrics, scale, BASE),
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
    if results.get('paired'):
        lines += [''] + stats.paired_markdown(results['paired'], seeds, BASE)
    return '\n'.join(lines) + '\n'


def check_task(task_name, n_seeds, config=None):
    """The task (with ``config`` in place of its tiny config, when given); InputError for bad input."""
    if task_name not in TASKS:
        raise InputError(f'unknown task {task_name!r}; choose from {", ".join(TASKS)}')
    if n_seeds < 1:
        raise InputError(f'--seeds must be at least 1, not {n_seeds}')
    task = TASKS[task_name]
    if config is not None:
        if not osp.isfile(osp.join(REPO_ROOT, config)):
            raise InputError(f'--config: config file not found: {config}')
        task = dataclasses.replace(task, config=osp.relpath(osp.join(REPO_ROOT, config), REPO_ROOT))
    return task


def sweep(task_name, acts, n_seeds, work_dir, cfg_options=(), equal_tol=EQUAL_TOL, log=print, config=None):
    task = check_task(task_name, n_seeds, config)
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
    results = summarize(task_name, acts, seeds, runs, equal_tol, list(cfg_options),
                        None if config is None else task.config)
    atomic_write(osp.join(work_dir, 'results.json'), json.dumps(results, indent=2) + '\n')
    atomic_write(osp.join(work_dir, 'results.md'), to_markdown(results))
    log(f'runs: {done["trained"]} trained, {done["evaluated"]} evaluated only, {done["skipped"]} skipped '
        f'(metrics existed); results in {work_dir}/results.md and results.json')
    return results


# ------------------------------------------------------------------ on Slurm

def slurm_jobs(task, acts, seeds, work_dir, cfg_options, fairseq, resources):
    """``{(act, seed): RunJob}``: the local sweep's two commands per run, for ``tools/zoo/slurm.py``."""
    from tools.zoo import slurm
    options = ['--cfg-options', *cfg_options] if cfg_options else []
    launcher = ['--launcher', 'slurm'] if resources.tasks > 1 else []
    jobs = {}
    for act in acts:
        for seed in seeds:
            run_dir = osp.join(work_dir, act, f'seed{seed}')
            train = [sys.executable, 'tools/train.py', task.config, '--act', act, '--seed', str(seed),
                     '--work-dir', run_dir, *launcher]
            evaluate = [sys.executable, 'tools/eval.py', task.config, '{checkpoint}', '--act', act, '--work-dir',
                        osp.join(run_dir, 'eval'), '--out', '{metrics}', *options]
            jobs[(act, seed)] = slurm.RunJob(run_dir, train + options, evaluate,
                                             functools.partial(last_checkpoint, fairseq=fairseq),
                                             resume_at=len(train), max_requeues=resources.max_requeues,
                                             # Slurm kills at least max(delay, 30 s) after the signal
                                             checkpoint_wait_s=max(resources.signal_delay_s, 30) - 10)
    return jobs


def collect(task_name, task, acts, seeds, work_dir, equal_tol, cfg_options, config=None):
    """The tables over the finished runs: activations with every seed done; the others under ``missing``.
    None when no activation is complete."""
    runs, missing = {}, {}
    for act in acts:
        done = {}
        for seed in seeds:
            path = osp.join(work_dir, act, f'seed{seed}', 'metrics.json')
            if osp.isfile(path):
                with open(path) as f:
                    done[seed] = json.load(f)
        absent = [k for m in done.values() for k in task.metrics.values() if k not in m]
        if absent:
            raise InputError(f'{work_dir}/{act}: metrics.json lacks {", ".join(sorted(set(absent)))}')
        if len(done) == len(seeds):
            runs[act] = done
        else:
            missing[act] = [s for s in seeds if s not in done]
    complete = [a for a in acts if a in runs]
    if not complete:
        return None
    results = summarize(task_name, complete, seeds, runs, equal_tol, list(cfg_options), config)
    if missing:
        results['missing'] = missing
    atomic_write(osp.join(work_dir, 'results.json'), json.dumps(results, indent=2) + '\n')
    atomic_write(osp.join(work_dir, 'results.md'), to_markdown(results))
    return results


def slurm_sweep(task_name, acts, n_seeds, work_dir, cfg_options=(), equal_tol=EQUAL_TOL, resources=None,
                dry_run=False, wait=False, status_only=False, log=print, config=None):
    """The sweep as a Slurm job array (see the module's docstring); returns the collected results or None."""
    from tools.zoo import slurm
    task = check_task(task_name, n_seeds, config)
    resources = resources or slurm.Resources()
    fairseq = is_fairseq_config(task.config)
    work_dir = osp.abspath(work_dir)
    seeds = list(range(n_seeds))
    jobs = slurm_jobs(task, acts, seeds, work_dir, list(cfg_options), fairseq, resources)
    states = slurm.run_states([job.run_dir for job in jobs.values()])
    for (act, seed), job in jobs.items():
        log(slurm.state_line(f'{act} seed{seed}', states[job.run_dir]))
    submit = [key for key, job in jobs.items() if states[job.run_dir]['state'] in slurm.RESUBMIT]
    folder = osp.join(work_dir, 'slurm')
    name = f'sau-{task_name}'
    if dry_run:
        left = [f'{a} seed{s} ({states[jobs[(a, s)].run_dir]["state"]})' for a, s in jobs if (a, s) not in submit]
        log(f'dry run: would submit {len(submit)} run(s) as one job array: '
            + (', '.join(f'{a} seed{s}' for a, s in submit) or 'none'))
        log(f'skipped: {", ".join(left) or "none"}')
        log(f'resources per run: {resources.describe()}')
        if submit:
            example = jobs[submit[0]]
            log(f'each array task runs (for {submit[0][0]} seed{submit[0][1]}): {" ".join(example.train)} '
                f'[--resume when {example.run_dir} holds a checkpoint], then {" ".join(example.evaluate)}')
            log(f'job script ({folder}/<job id>_submission.sh):\n'
                + slurm.job_script(folder, resources, name, len(submit)))
        return None
    os.makedirs(work_dir, exist_ok=True)
    if not status_only:  # what --status reads when --acts/--seeds/--config are not given again
        atomic_write(osp.join(work_dir, 'sweep.json'), json.dumps(dict(
            acts=acts, seeds=n_seeds, config=config, cfg_options=list(cfg_options)), indent=2).encode() + b'\n')
    if status_only:
        pass
    elif submit:
        ids, seconds = slurm.submit([jobs[key] for key in submit], folder, resources, name)
        log(f'submitted {len(ids)} runs as job array {ids[0].split("_")[0]} in {seconds:.2f} s '
            f'({1000 * seconds / len(ids):.0f} ms per run); logs in {folder}')
    else:
        counts = {}
        for state in states.values():
            counts[state['state']] = counts.get(state['state'], 0) + 1
        log('nothing to submit (' + ', '.join(f'{n} {s}' for s, n in counts.items()) + ')')
    if wait and not status_only:
        start = time.time()
        states = slurm.wait([job.run_dir for job in jobs.values()], log=log)
        for (act, seed), job in jobs.items():
            log(slurm.state_line(f'{act} seed{seed}', states[job.run_dir]))
        log(f'waited {time.time() - start:.0f} s')
    results = collect(task_name, task, acts, seeds, work_dir, equal_tol, cfg_options, config and task.config)
    done = sum(osp.isfile(osp.join(job.run_dir, 'metrics.json')) for job in jobs.values())
    log(f'{done} of {len(jobs)} runs done; ' + (f'results in {work_dir}/results.md and results.json'
                                                 if results else 'no activation complete yet: no table'))
    if wait and not status_only and done < len(jobs):
        bad = [f'{a} seed{s} {states[jobs[(a, s)].run_dir]["state"]}' for a, s in jobs
               if not osp.isfile(osp.join(jobs[(a, s)].run_dir, 'metrics.json'))]
        raise InputError(f'{len(bad)} run(s) did not finish: {", ".join(bad)}; see --status, rerun to resubmit')
    return results


def add_slurm_arguments(parser):
    group = parser.add_argument_group('Slurm (--launcher slurm, --status)')
    group.add_argument('--launcher', choices=['local', 'slurm'], default='local',
                       help='local: run one after another here (default); slurm: one job array')
    group.add_argument('--status', action='store_true',
                       help='list each run\'s Slurm state and collect the finished ones; submit nothing')
    group.add_argument('--dry-run', action='store_true', help='print the plan and the job script; submit nothing')
    group.add_argument('--wait', action='store_true', help='after submitting, wait until no run is pending or running')
    group.add_argument('--partition')
    group.add_argument('--gpus-per-run', type=int, default=0, help='GPUs per run (default 0)')
    group.add_argument('--nodes-per-run', type=int, default=1)
    group.add_argument('--tasks-per-node', type=int, help='default: one per GPU of the node, 1 without GPUs')
    group.add_argument('--cpus-per-task', type=int)
    group.add_argument('--mem', help='memory per node, as sbatch --mem (e.g. 32G)')
    group.add_argument('--time', default='24:00:00', help='time limit per run (sbatch --time; default 24:00:00)')
    group.add_argument('--max-parallel', type=int, default=256, help='array tasks running at once (default 256)')
    group.add_argument('--signal-delay', type=int, default=300,
                       help='seconds before the time limit that training is told to checkpoint (default 300)')
    group.add_argument('--max-requeues', type=int, default=3,
                       help='time-limit/preemption requeues of a run before it is reported timed out (default 3)')
    group.add_argument('--sbatch', nargs='+', default=[], metavar='KEY=VALUE',
                       help='other sbatch options, without dashes (account=proj qos=high exclusive)')


def slurm_resources(args):
    from tools.zoo import slurm
    try:
        return slurm.Resources(
            partition=args.partition, gpus_per_run=args.gpus_per_run, nodes_per_run=args.nodes_per_run,
            tasks_per_node=args.tasks_per_node, cpus_per_task=args.cpus_per_task, mem=args.mem, time=args.time,
            max_parallel=args.max_parallel, signal_delay_s=args.signal_delay, max_requeues=args.max_requeues,
            sbatch=slurm.parse_sbatch_options(args.sbatch))
    except slurm.SlurmError as e:
        raise InputError(str(e)) from None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('task', help=f'one of {", ".join(TASKS)}')
    parser.add_argument('--acts', help='comma-separated activations (default relu,sau; --status: the submitted ones)')
    parser.add_argument('--preset', help=f'a named list of activations instead of --acts: '
                        f'{", ".join(stats.PRESETS)} (tools/zoo/stats.py)')
    parser.add_argument('--seeds', type=int, help='number of seeds, 0 .. SEEDS-1 (default 2; --status: the submitted)')
    parser.add_argument('--work-dir', help='default: work_dirs/sweep/TASK')
    parser.add_argument('--config', help="default: the task's tiny config (tools/zoo/tasks.py)")
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='passed to every tools/train.py and tools/eval.py call')
    parser.add_argument('--equal-tol', type=float, default=EQUAL_TOL,
                        help='SAU and a baseline are "equal" when they differ by less than this many metric '
                        'points (default %(default)s)')
    add_slurm_arguments(parser)
    args = parser.parse_args(argv)
    if args.task not in TASKS:
        raise InputError(f'unknown task {args.task!r}; choose from {", ".join(TASKS)}')
    work_dir = args.work_dir or osp.join(REPO_ROOT, 'work_dirs', 'sweep', args.task)
    if args.status:  # the submitted sweep's plan, unless given again
        saved = {}
        if osp.isfile(osp.join(work_dir, 'sweep.json')):
            with open(osp.join(work_dir, 'sweep.json')) as f:
                saved = json.load(f)
        args.acts = args.acts or (','.join(saved['acts']) if 'acts' in saved else None)
        args.seeds = args.seeds or saved.get('seeds')
        args.config = args.config or saved.get('config')
        args.cfg_options = args.cfg_options or saved.get('cfg_options', [])
    if args.preset is not None:
        if args.acts and not args.status:
            raise InputError('give --acts or --preset, not both')
        try:
            args.acts = ','.join(stats.resolve_preset(args.preset))
        except ValueError as e:
            raise InputError(f'--preset: {e}') from None
    acts = parse_acts(args.acts or 'relu,sau')
    args.seeds = 2 if args.seeds is None else args.seeds
    log = functools.partial(print, flush=True)
    if args.launcher == 'slurm' or args.status or args.dry_run:
        from tools.zoo.slurm import SlurmError
        try:
            results = slurm_sweep(args.task, acts, args.seeds, work_dir, args.cfg_options, args.equal_tol,
                                  slurm_resources(args), dry_run=args.dry_run, wait=args.wait,
                                  status_only=args.status, log=log, config=args.config)
        except SlurmError as e:
            raise InputError(str(e)) from None
        if results is not None:
            print(to_markdown(results))
        return 0
    results = sweep(args.task, acts, args.seeds, work_dir, args.cfg_options, args.equal_tol, log=log,
                    config=args.config)
    print(to_markdown(results))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
