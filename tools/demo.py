#!/usr/bin/env python
"""The zoo's tour on bundled tiny data (``make demo``): for each task, make the data, evaluate the released tiny
checkpoint, run it on an input with ``tools/infer.py`` (detections drawn on a tiny VOC test image, a segmentation
overlay of a tiny Cityscapes val image, a few translated test sentences), train the same config afresh and
evaluate that, and print one table of the metrics and where the pictures and translations are.

    python tools/demo.py                      # all tasks
    python tools/demo.py detection            # some of them

Each step runs the same command a researcher would (``tools/data/...``, ``tools/train.py``, ``tools/eval.py``;
the tasks are listed in ``tools/zoo/tasks.py``). Logs go to ``work_dirs/demo/<task>/``.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time

from tools.zoo import REPO_ROOT
from tools.zoo.errors import InputError, run_main
from tools.zoo.tasks import TASKS, is_fairseq_config, last_checkpoint, released_checkpoint, run_tool

#: what tools/infer.py is run on, per task, with the released checkpoint: (inputs, extra flags); the sentences
#: are the first lines of the tiny En-De test set (``TEST_SENTENCES`` of them)
SHOW = {
    'detection': (['data/tiny_voc/VOCdevkit/VOC2007/JPEGImages/000177.jpg'], ['--score-thr', '0.5']),
    'segmentation': (['data/tiny_cityscapes/leftImg8bit/val/frankfurt/frankfurt_000000_000019_leftImg8bit.png'], []),
    'translation': (['data/tiny_en_de/raw/test.en'], []),
}
TEST_SENTENCES = 3


def run_task(name, task):
    work_dir = osp.join(REPO_ROOT, 'work_dirs', 'demo', name)
    shutil.rmtree(work_dir, ignore_errors=True)  # the tour trains afresh every time
    os.makedirs(work_dir)
    start = time.time()
    for i, command in enumerate(task.prepare):
        run_tool(command, osp.join(work_dir, f'prepare{i}.log'))
    weights, _ = released_checkpoint(name, task)
    released = evaluate(task, weights, osp.join(work_dir, 'released'))
    print(f'{name:<13} released {weights}: {released}', flush=True)
    shown = show(name, task, weights, osp.join(work_dir, 'infer'))
    run_tool(['tools/train.py', task.config, '--work-dir', work_dir, '--seed', '0'], osp.join(work_dir, 'train.log'))
    checkpoint = last_checkpoint(work_dir, is_fairseq_config(task.config))
    if checkpoint is None:
        raise InputError(f'training left no checkpoint in {work_dir}; see {work_dir}/train.log')
    trained = evaluate(task, checkpoint, osp.join(work_dir, 'eval'))
    print(f'{name:<13} trained here: {trained}  ({time.time() - start:.0f} s)', flush=True)
    return dict(task=name, model=task.model, released=released, trained=trained, seconds=time.time() - start,
                shown=shown)


def show(name, task, weights, out):
    """tools/infer.py with the released checkpoint on the task's SHOW input; what it wrote, as one line (the
    translations themselves are printed)."""
    inputs, flags = SHOW[name]
    os.makedirs(out, exist_ok=True)
    if name == 'translation':  # a few sentences of the test set, as a file of their own
        with open(osp.join(REPO_ROOT, inputs[0]), encoding='utf-8') as f:
            sentences = f.read().splitlines()[:TEST_SENTENCES]
        inputs = [osp.join(out, 'sentences.en')]
        with open(inputs[0], 'w', encoding='utf-8') as f:
            f.write(''.join(line + '\n' for line in sentences))
    run_tool(['tools/infer.py', task.config, weights, *inputs, '--out', out, *flags], osp.join(out, 'infer.log'))
    if name == 'translation':
        with open(osp.join(out, 'translations.txt'), encoding='utf-8') as f:
            translations = f.read().splitlines()
        for source, target in zip(sentences, translations):
            print(f'{"":<13} {source}  ->  {target}', flush=True)
        shown = osp.join(out, 'translations.txt')
    else:
        shown = osp.join(out, 'vis', osp.basename(inputs[0]))
    what = f'the first {TEST_SENTENCES} sentences of {SHOW[name][0][0]}' if name == 'translation' else SHOW[name][0][0]
    print(f'{name:<13} tools/infer.py on {what}: {osp.relpath(shown, REPO_ROOT)}', flush=True)
    return osp.relpath(shown, REPO_ROOT)


def evaluate(task, checkpoint, work_dir):
    """tools/eval.py on one checkpoint; the task's metrics as one string."""
    os.makedirs(work_dir, exist_ok=True)
    metrics_file = osp.join(work_dir, 'metrics.json')
    run_tool(['tools/eval.py', task.config, checkpoint, '--work-dir', work_dir, '--out', metrics_file],
             osp.join(work_dir, 'eval.log'))
    with open(metrics_file) as f:
        measured = json.load(f)
    return ', '.join(f'{column} {measured[key]:.3f}' for column, key in task.metrics.items())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('tasks', nargs='*', help=f'any of {", ".join(TASKS)} (default: all)')
    names = parser.parse_args(argv).tasks or list(TASKS)
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        parser.error(f'unknown task {unknown[0]!r}; choose from {", ".join(TASKS)}')
    rows = [run_task(name, TASKS[name]) for name in names]
    print('\n| task | model and data | released checkpoint (tiny test split) | trained here | time |')
    print('|---|---|---|---|---:|')
    for row in rows:
        print(f'| {row["task"]} | {row["model"]} | {row["released"]} | {row["trained"]} | {row["seconds"]:.0f} s |')
    print('\nThe released checkpoints on an input (tools/infer.py):')
    for row in rows:
        print(f'  {row["task"]:<13} {row["shown"]}')
    print('\nTiny data and reduced widths: these numbers show the pipelines work end to end, they are not '
          'paper results. Logs and metrics: work_dirs/demo/<task>/.')
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
