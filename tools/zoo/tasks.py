"""The zoo's tasks and how the tour (``tools/demo.py``) and the sweep (``tools/sweep.py``) run their tools.

Each task names its tiny config and the commands that make its tiny data; the tools run as subprocesses with
this interpreter, the repository root as working directory and one CPU thread per process unless
``OMP_NUM_THREADS`` says otherwise (the tiny models are faster that way on a small machine).
"""
import os
import os.path as osp
import subprocess
import sys
from dataclasses import dataclass

from tools.zoo import REPO_ROOT
from tools.zoo.config import is_fairseq, load_config
from tools.zoo.errors import InputError


@dataclass(frozen=True)
class Task:
    model: str
    prepare: list  # commands that write the tiny dataset (each idempotent)
    config: str
    metrics: dict  # column -> key in the eval JSON


TASKS = {
    'detection': Task(
        model='SSD300-VGG16-BN, 1/8 width, SAU; tiny VOC',
        prepare=[['tools/data/make_tiny_voc.py']],
        config='detection/configs/ssd300-w0.125_sau_tinyvoc.py',
        metrics={'mAP (VOC 11-point)': 'pascal_voc/mAP', 'mAP (area)': 'pascal_voc_area/mAP',
                 'AP (COCO)': 'coco/bbox_mAP'}),
    'segmentation': Task(
        model='U-Net, width 8, SAU; tiny Cityscapes',
        prepare=[['tools/data/make_tiny_cityscapes.py']],
        config='segmentation/configs/unet-w8_sau_tiny-cityscapes.py',
        metrics={'mIoU': 'mIoU', 'aAcc': 'aAcc', 'mAcc': 'mAcc'}),
    'translation': Task(
        model='Transformer 2+2 layers, d=128, SAU; tiny En-De',
        prepare=[['tools/data/make_tiny_en_de.py', 'data/tiny_en_de/raw'],
                 ['tools/data/prepare_wmt14_en_de.py', '--out', 'data/tiny_en_de', '--raw-dir',
                  'data/tiny_en_de/raw', '--bpe-tokens', '500']],
        config='translation/configs/transformer_tiny_sau.py',
        metrics={'BLEU (sacreBLEU, detok)': 'sacrebleu', 'BLEU (tok, compound-split)': 'tok_bleu_compound_split'}),
}


def released_checkpoint(task_name, task):
    """(weights path, metrics) of the task's released tiny checkpoint, from ``<task>/metafile.yml``."""
    import yaml
    with open(osp.join(REPO_ROOT, task_name, 'metafile.yml')) as f:
        models = yaml.safe_load(f)['Models']
    for model in models:
        if model['Config'] == task.config and model.get('Weights'):
            return model['Weights'], model['Results'][0]['Metrics']
    raise InputError(f'{task_name}/metafile.yml lists no released checkpoint for {task.config}')


def is_fairseq_config(config):
    return is_fairseq(load_config(osp.join(REPO_ROOT, config)))


def last_checkpoint(run_dir, fairseq):
    """The checkpoint training ended with: fairseq's checkpoint_last.pt, MMEngine's ``last_checkpoint``."""
    if fairseq:
        path = osp.join(run_dir, 'checkpoint_last.pt')
        return path if osp.isfile(path) else None
    pointer = osp.join(run_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        path = f.read().strip()
    if not osp.isabs(path):
        path = osp.join(REPO_ROOT, path)
    return path if osp.isfile(path) else None


def run_tool(command, log):
    """One tool in a subprocess (this interpreter, repo root as cwd); on failure an InputError naming the command
    and its log, with the log's end as its details."""
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1')}
    with open(log, 'w') as f:
        f.write('$ ' + ' '.join(command) + '\n')
        f.flush()
        done = subprocess.run([sys.executable, *command], cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT,
                              env=env)
    if done.returncode != 0:
        with open(log) as f:
            tail = ''.join(f.readlines()[-15:])
        raise InputError(f'`{" ".join(command)}` failed (exit {done.returncode}); see {log}; its end:', details=tail)
