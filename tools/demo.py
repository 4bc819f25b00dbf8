#!/usr/bin/env python
"""The zoo's tour on bundled tiny data (``make demo``): for each task, make the data, train, evaluate, and print
one table of the metrics.

    python tools/demo.py                      # all tasks
    python tools/demo.py detection            # some of them

Each step runs the same command a researcher would (``tools/data/...``, ``tools/train.py``, ``tools/eval.py``),
with one CPU thread per process (the tiny models are faster that way on a small machine). Logs go to
``work_dirs/demo/<task>/``.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@dataclass(frozen=True)
class Task:
    model: str
    prepare: list  # commands that write the tiny dataset (each idempotent)
    config: str
    checkpoint: str  # relative to the work dir
    metrics: dict  # column -> key in the eval JSON


TASKS = {
    'detection': Task(
        model='SSD300-VGG16-BN, 1/8 width, SAU; tiny VOC',
        prepare=[['tools/data/make_tiny_voc.py']],
        config='detection/configs/ssd300-w0.125_sau_tinyvoc.py',
        checkpoint='iter_100.pth',
        metrics={'mAP (VOC 11-point)': 'pascal_voc/mAP', 'mAP (area)': 'pascal_voc_area/mAP',
                 'AP (COCO)': 'coco/bbox_mAP'}),
    'segmentation': Task(
        model='U-Net, width 8, SAU; tiny Cityscapes',
        prepare=[['tools/data/make_tiny_cityscapes.py']],
        config='segmentation/configs/unet-w8_sau_tiny-cityscapes.py',
        checkpoint='epoch_30.pth',
        metrics={'mIoU': 'mIoU', 'aAcc': 'aAcc', 'mAcc': 'mAcc'}),
    'translation': Task(
        model='Transformer 2+2 layers, d=128, SAU; tiny En-De',
        prepare=[['tools/data/make_tiny_en_de.py', 'data/tiny_en_de/raw'],
                 ['tools/data/prepare_wmt14_en_de.py', '--out', 'data/tiny_en_de', '--raw-dir',
                  'data/tiny_en_de/raw', '--bpe-tokens', '500']],
        config='translation/configs/transformer_tiny_sau.py',
        checkpoint='checkpoint_last.pt',
        metrics={'BLEU (sacreBLEU, detok)': 'sacrebleu', 'BLEU (tok, compound-split)': 'tok_bleu_compound_split'}),
}


def run(command, log):
    """Run a tool with this interpreter; on failure show the end of its log and stop."""
    with open(log, 'w') as f:
        done = subprocess.run([sys.executable, *command], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')})
    if done.returncode != 0:
        with open(log) as f:
            tail = f.readlines()[-25:]
        sys.exit(f'demo: `{" ".join(command)}` failed (exit {done.returncode}); end of {log}:\n' + ''.join(tail))


def run_task(name, task):
    work_dir = osp.join('work_dirs', 'demo', name)
    shutil.rmtree(osp.join(REPO, work_dir), ignore_errors=True)  # the tour trains afresh every time
    os.makedirs(osp.join(REPO, work_dir))
    start = time.time()
    for i, command in enumerate(task.prepare):
        run(command, osp.join(REPO, work_dir, f'prepare{i}.log'))
    run(['tools/train.py', task.config, '--work-dir', work_dir, '--seed', '0'],
        osp.join(REPO, work_dir, 'train.log'))
    metrics_file = osp.join(work_dir, 'metrics.json')
    run(['tools/eval.py', task.config, osp.join(work_dir, task.checkpoint), '--work-dir',
         osp.join(work_dir, 'eval'), '--out', metrics_file], osp.join(REPO, work_dir, 'eval.log'))
    with open(osp.join(REPO, metrics_file)) as f:
        measured = json.load(f)
    values = ', '.join(f'{column} {measured[key]:.3f}' for column, key in task.metrics.items())
    print(f'{name:<13} {values}  ({time.time() - start:.0f} s)', flush=True)
    return dict(task=name, model=task.model, metrics=values, seconds=time.time() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('tasks', nargs='*', help=f'any of {", ".join(TASKS)} (default: all)')
    names = parser.parse_args().tasks or list(TASKS)
    unknown = [name for name in names if name not in TASKS]
    if unknown:
        parser.error(f'unknown task {unknown[0]!r}; choose from {", ".join(TASKS)}')
    rows = [run_task(name, TASKS[name]) for name in names]
    print('\n| task | model and data | metrics (tiny test split) | train + eval |')
    print('|---|---|---|---:|')
    for row in rows:
        print(f'| {row["task"]} | {row["model"]} | {row["metrics"]} | {row["seconds"]:.0f} s |')
    print('\nTiny data and reduced widths: these numbers show the pipelines work end to end, they are not '
          'paper results. Logs and metrics: work_dirs/demo/<task>/.')


if __name__ == '__main__':
    main()
