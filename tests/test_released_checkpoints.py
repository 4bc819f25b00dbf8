"""The released checkpoints (``checkpoints/``) reproduce what the model zoo says about them.

For every model in ``detection/``, ``segmentation/`` and ``translation/metafile.yml`` that names a checkpoint
(``Weights``): the file's sha256 is the one in the metafile, its name follows the OpenMMLab convention
``<config stem>_<YYYYMMDD>-<sha256[:8]>.pth``, and ``tools/eval.py CONFIG CHECKPOINT`` on the task's tiny data
gives the metrics written in the metafile (to the 4 decimals written there) and in ``MODEL_ZOO.md``.
The expected values are read from the metafiles, never written here.

The tiny data is made the way ``make demo`` makes it: the task's ``prepare`` commands from
``tools/zoo/tasks.py`` (fixed seeds, idempotent) into ``data/``, the paths the tiny configs read.
"""
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import yaml

from tools.zoo.tasks import TASKS, run_tool

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

TASK_DIRS = ('detection', 'segmentation', 'translation')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}


def load_metafile(task):
    with open(osp.join(REPO, task, 'metafile.yml')) as f:
        return yaml.safe_load(f)


def released_models():
    models = []
    for task in TASK_DIRS:
        for model in load_metafile(task)['Models']:
            if model.get('Weights'):
                models.append((task, model))
    return models


RELEASED = released_models()
IDS = [model['Name'] for _, model in RELEASED]


def sha256sum(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def test_every_task_releases_its_tiny_checkpoint():
    released_configs = {model['Config'] for _, model in RELEASED}
    for name, task in TASKS.items():
        assert task.config in released_configs, f'{name}: no released checkpoint for {task.config}'


def test_released_checkpoints_are_small():
    total = sum(osp.getsize(osp.join(REPO, model['Weights'])) for _, model in RELEASED)
    assert total < 20 * 2**20, f'{total} bytes released'


@pytest.mark.parametrize('task,model', RELEASED, ids=IDS)
def test_checkpoint_hash_and_name(task, model):
    path = osp.join(REPO, model['Weights'])
    assert osp.isfile(path), f'{model["Weights"]} missing'
    digest = sha256sum(path)
    assert digest == model['Metadata']['sha256']
    stem = osp.splitext(osp.basename(model['Config']))[0]
    assert re.fullmatch(re.escape(stem) + r'_\d{8}-' + digest[:8] + r'\.pth', osp.basename(path))


@pytest.fixture(scope='module')
def evaluated(tmp_path_factory):
    """tools/eval.py on every released checkpoint (run side by side): {model name: metrics JSON}."""
    out = tmp_path_factory.mktemp('released_eval')
    for name, task in TASKS.items():
        for i, command in enumerate(task.prepare):
            run_tool(command, str(out / f'{name}_prepare{i}.log'))
    procs = {}
    for task, model in RELEASED:
        name = model['Name']
        log = open(out / f'{name}.log', 'w')
        # a link to the released file: tools/eval.py's fairseq generation writes <checkpoint>_generate/ beside
        # the checkpoint it is given, which must not land in checkpoints/
        link = out / name / osp.basename(model['Weights'])
        link.parent.mkdir()
        link.symlink_to(osp.join(REPO, model['Weights']))
        command = [sys.executable, 'tools/eval.py', model['Config'], str(link),
                   '--work-dir', str(out / name / 'eval'), '--out', str(out / f'{name}.json')]
        procs[name] = (subprocess.Popen(command, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT), log)
    results = {}
    for name, (proc, log) in procs.items():
        proc.wait(timeout=600)
        log.close()
        with open(out / f'{name}.log') as f:
            text = f.read()
        assert proc.returncode == 0, f'{name}: tools/eval.py failed:\n{text[-3000:]}'
        with open(out / f'{name}.json') as f:
            results[name] = json.load(f)
    return results


def expected_metrics(model):
    (result,) = model['Results']
    metrics = result['Metrics']
    assert metrics, f'{model["Name"]}: no metrics in the metafile'
    return metrics


@pytest.mark.parametrize('task,model', RELEASED, ids=IDS)
def test_eval_reproduces_the_metafile(task, model, evaluated):
    measured = evaluated[model['Name']]
    for key, value in expected_metrics(model).items():
        assert key in measured, f'{key} not in the eval output {sorted(measured)}'
        assert f'{measured[key]:.4f}' == f'{value:.4f}', f'{model["Name"]} {key}: {measured[key]} != {value}'


@pytest.mark.parametrize('task,model', RELEASED, ids=IDS)
def test_model_zoo_md_shows_the_metafile(task, model, evaluated):
    with open(osp.join(REPO, 'MODEL_ZOO.md')) as f:
        rows = [line for line in f if line.startswith('|') and osp.basename(model['Weights']) in line]
    assert len(rows) == 1, f'{model["Weights"]}: {len(rows)} rows in MODEL_ZOO.md'
    row = rows[0]
    assert model['Metadata']['sha256'] in row
    measured = evaluated[model['Name']]
    for key in expected_metrics(model):
        assert f'{key} {measured[key]:.4f}' in row, f'{key} {measured[key]:.4f} not in: {row}'


def test_a_checkpoint_url_is_downloaded_once_and_hash_checked(tmp_path, monkeypatch):
    import shutil

    from tools.zoo.errors import InputError
    from tools.zoo.io import fetch_checkpoint
    monkeypatch.setenv('SAU_ZOO_CACHE', str(tmp_path / 'cache'))
    released = osp.join(REPO, 'checkpoints', sorted(os.listdir(osp.join(REPO, 'checkpoints')))[0])
    url = 'file://' + released
    fetched = fetch_checkpoint(url)
    assert fetched.startswith(str(tmp_path / 'cache')) and osp.basename(fetched) == osp.basename(released)
    with open(fetched, 'rb') as a, open(released, 'rb') as b:
        assert a.read() == b.read()
    assert fetch_checkpoint(url) == fetched  # cached: not downloaded again
    assert fetch_checkpoint(released) == released  # a local path stays as it is

    wrong = tmp_path / re.sub(r'-[0-9a-f]{8}\.pth$', '-00000000.pth', osp.basename(released))
    shutil.copy(released, wrong)
    with pytest.raises(InputError, match='hash'):
        fetch_checkpoint('file://' + str(wrong))
    assert not osp.exists(tmp_path / 'cache' / 'checkpoints' / wrong.name)
    with pytest.raises(InputError, match='cannot download'):
        fetch_checkpoint('file://' + str(tmp_path / 'missing-12345678.pth'))
