"""Reliability of training runs: NaN stop, atomic checkpoints, crash and resume (tools.zoo.hooks, fairseq).

Every run goes through ``tools/train.py`` in a subprocess with one torch thread: mostly the tiny
segmentation config (3 epochs of 5 iterations, a checkpoint per epoch), plus one SSD run (iteration-based
loop) and one fairseq Transformer run. The MMEngine hooks are switched on by ``--cfg-options`` (MMEngine
imports dotted hook types), which is also how a user enables them without code changes. 2.5-3.5 min in all
(2 shared cores).
"""
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SAU_TINY = osp.join(REPO, 'segmentation', 'configs', 'unet-w8_sau_tiny-cityscapes.py')
SSD_TINY = osp.join(REPO, 'detection', 'configs', 'ssd300-w0.125_sau_tinyvoc.py')
NMT_TINY = osp.join(REPO, 'translation', 'configs', 'transformer_tiny_sau.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
EVAL = osp.join(REPO, 'tools', 'eval.py')

pytest.importorskip('mmseg')
from tools.data import make_tiny_cityscapes, make_tiny_voc  # noqa: E402
from tools.zoo import hooks  # noqa: E402
from tools.zoo.io import atomic_write  # noqa: E402

EPOCHS = 3
HOOKS = ['default_hooks.checkpoint.type=tools.zoo.hooks.AtomicCheckpointHook',
         'default_hooks.finite_loss.type=tools.zoo.hooks.FiniteLossHook',
         'default_hooks.random_state.type=tools.zoo.hooks.RandomStateHook']
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

# tools/train.py with os.fsync replaced: the process SIGKILLs itself when it fsyncs the temporary file of
# the checkpoint named in argv[1], i.e. with the new checkpoint fully written but not yet renamed.
KILL_WHILE_SAVING = '''
import os, signal, sys
target = sys.argv.pop(1)
real_fsync = os.fsync
def fsync(fd):
    name = os.readlink(f'/proc/self/fd/{fd}')
    if os.path.basename(name).startswith('.' + target + '.'):
        os.kill(os.getpid(), signal.SIGKILL)
    real_fsync(fd)
os.fsync = fsync
sys.argv = sys.argv[1:]
from tools import train
from tools.zoo.errors import run_main
sys.exit(run_main(train.main, sys.argv[1:]))
'''


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('rel') / 'tiny_cityscapes')
    make_tiny_cityscapes.make_tiny_cityscapes(root, seed=0)
    return root


def train_argv(root, work_dir, *options):
    roots = [f'{k}.dataset.data_root={root}' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    return [SAU_TINY, '--work-dir', str(work_dir), '--seed', '0', '--cfg-options', *roots, *HOOKS,
            f'train_cfg.max_epochs={EPOCHS}', 'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1', *options]


def run(argv, timeout=240):
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def state_dict(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


@pytest.fixture(scope='module')
def uninterrupted(tiny_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    proc = run([TRAIN, *train_argv(tiny_root, work_dir)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work_dir


# --- NaN / inf loss -------------------------------------------------------------------------------
def fake_runner(iteration=0, epoch=0):
    return SimpleNamespace(iter=iteration, epoch=epoch)


def sigkill_when(child, condition, timeout=180):
    """SIGKILL the training subprocess as soon as ``condition()`` holds (its first checkpoint is complete)."""
    try:
        deadline = time.monotonic() + timeout
        while not condition():
            assert child.poll() is None, 'training ended before its first checkpoint'
            assert time.monotonic() < deadline, f'no first checkpoint after {timeout} s'
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_finite_loss_hook_names_the_iteration_and_the_term():
    hook = hooks.FiniteLossHook()
    finite = {'loss': torch.tensor(1.0), 'decode.loss_ce': torch.tensor(0.7), 'decode.acc_seg': torch.tensor(50.)}
    hook.after_train_iter(fake_runner(), 0, outputs=finite)  # no error
    nan = dict(finite, **{'decode.loss_ce': torch.tensor(float('nan')), 'loss': torch.tensor(float('nan'))})
    with pytest.raises(FloatingPointError, match=r'iteration 8 \(epoch 2\): decode\.loss_ce=nan;'):
        hook.after_train_iter(fake_runner(7, 1), 3, outputs=nan)
    # every term finite but the sum overflowed: the total is named
    with pytest.raises(FloatingPointError, match=r'iteration 1 \(epoch 1\): loss=inf'):
        hook.after_train_iter(fake_runner(), 0, outputs=dict(finite, loss=torch.tensor(float('inf'))))
    # only loss terms count: a NaN accuracy is not a reason to stop
    hook.after_train_iter(fake_runner(), 0, outputs=dict(finite, **{'decode.acc_seg': torch.tensor(float('nan'))}))


def test_nan_loss_stops_the_run_before_any_checkpoint(tiny_root, tmp_path):
    # Adam at 1e30: the first step sends the weights to ~1e30 and the second forward overflows
    proc = run([TRAIN, *train_argv(tiny_root, tmp_path, 'optim_wrapper.optimizer.lr=1e30')])
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]  # the traceback's last line, or run_main's one line
    assert re.match(r'(FloatingPointError|error): non-finite loss at iteration 2 \(epoch 1\): decode\.loss_ce=nan',
                    last), last
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.pth')]


def test_add_reliability_hooks_is_idempotent_and_keeps_arguments():
    from mmengine.config import Config
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=3, max_keep_ckpts=1))))
    hooks.add_reliability_hooks(cfg)
    hooks.add_reliability_hooks(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='AtomicCheckpointHook', interval=3, max_keep_ckpts=1)
    assert [h['type'] for h in cfg.custom_hooks] == ['FiniteLossHook', 'RandomStateHook']
    cfg = Config(dict(default_hooks=dict(checkpoint=None, finite_loss=dict(type='tools.zoo.hooks.FiniteLossHook'))))
    hooks.add_reliability_hooks(cfg)
    assert cfg.default_hooks.checkpoint is None  # checkpoints switched off stay off
    assert [h['type'] for h in cfg.custom_hooks] == ['RandomStateHook']
    cfg = hooks.add_reliability_hooks(Config(dict()))  # MMEngine's implicit CheckpointHook(interval=1)
    assert cfg.default_hooks.checkpoint == dict(type='AtomicCheckpointHook', interval=1)


# --- atomic checkpoints ---------------------------------------------------------------------------
def test_atomic_write_replaces_whole_files_and_cleans_up_on_error(tmp_path, monkeypatch):
    path = tmp_path / 'sub' / 'x.pth'
    atomic_write(path, b'old')
    atomic_write(path, b'new content')
    assert path.read_bytes() == b'new content'

    def fail(fd):
        raise OSError('disk full')
    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='disk full'):
        atomic_write(path, b'never')
    assert path.read_bytes() == b'new content' and os.listdir(path.parent) == ['x.pth']


def test_kill_while_saving_keeps_the_previous_checkpoint_and_resume_finishes(tiny_root, tmp_path, uninterrupted):
    # the tiny config keeps one checkpoint (max_keep_ckpts=1): mmengine's own hook deletes epoch_1.pth
    # before writing epoch_2.pth, so this kill would leave no checkpoint at all
    proc = run(['-c', KILL_WHILE_SAVING, 'epoch_2.pth', TRAIN, *train_argv(tiny_root, tmp_path)])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    files = sorted(os.listdir(tmp_path))
    assert 'epoch_1.pth' in files and 'epoch_2.pth' not in files
    partial = [f for f in files if f.endswith('.partial')]
    assert len(partial) == 1 and partial[0].startswith('.epoch_2.pth.')
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')
    assert state_dict(tmp_path / 'epoch_1.pth')  # complete and loadable

    proc = run([TRAIN, *train_argv(tiny_root, tmp_path), '--resume'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'removing' in proc.stdout + proc.stderr  # the partial file, logged
    files = os.listdir(tmp_path)
    assert not [f for f in files if f.endswith('.partial')]
    assert f'epoch_{EPOCHS}.pth' in files and 'epoch_1.pth' not in files  # max_keep_ckpts=1 still holds
    final, reference = state_dict(tmp_path / f'epoch_{EPOCHS}.pth'), state_dict(uninterrupted / f'epoch_{EPOCHS}.pth')
    assert final.keys() == reference.keys()
    assert all(torch.equal(final[k], reference[k]) for k in final)


def test_eval_of_a_truncated_checkpoint_is_one_line_naming_the_file(tiny_root, tmp_path, uninterrupted):
    good = (uninterrupted / f'epoch_{EPOCHS}.pth').read_bytes()
    bad = tmp_path / 'truncated.pth'
    bad.write_bytes(good[:len(good) // 2])
    roots = [f'{k}.dataset.data_root={tiny_root}' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    proc = run([EVAL, SAU_TINY, str(bad), '--work-dir', str(tmp_path), '--cfg-options', *roots])
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and f'cannot read checkpoint {bad}' in errors[0]


# --- crash and resume -----------------------------------------------------------------------------
def test_sigkill_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tiny_root, tmp_path, uninterrupted):
    child = subprocess.Popen([sys.executable, TRAIN, *train_argv(tiny_root, tmp_path)], cwd=REPO, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # last_checkpoint (the file --resume reads) is written, atomically, after the checkpoint it names
    sigkill_when(child, lambda: (tmp_path / 'last_checkpoint').exists())
    assert not (tmp_path / f'epoch_{EPOCHS}.pth').exists()  # killed mid-way

    proc = run([TRAIN, *train_argv(tiny_root, tmp_path), '--resume'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'random states restored' in proc.stdout + proc.stderr
    final, reference = state_dict(tmp_path / f'epoch_{EPOCHS}.pth'), state_dict(uninterrupted / f'epoch_{EPOCHS}.pth')
    assert final.keys() == reference.keys()
    different = [k for k in final if not torch.equal(final[k], reference[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


def test_iteration_based_detection_resume_after_a_kill_while_saving_is_exact(tmp_path_factory):
    """SSD (IterBasedTrainLoop, by-iteration checkpoints): MMEngine replays the dataloader up to the
    resumed iteration, so RandomStateHook must leave the reseeded states alone for the run to match."""
    root = tmp_path_factory.mktemp('voc')
    make_tiny_voc.make_tiny_voc(str(root), trainval=8, test=4, seed=0)
    roots = [f'{k}.dataset.data_root={root}/VOCdevkit/' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]

    def argv(work_dir):
        return [SSD_TINY, '--work-dir', str(work_dir), '--seed', '0', '--cfg-options', *roots, *HOOKS,
                'train_cfg.max_iters=4', 'default_hooks.checkpoint.interval=2']
    reference, resumed = tmp_path_factory.mktemp('ssd_reference'), tmp_path_factory.mktemp('ssd_resumed')
    assert run([TRAIN, *argv(reference)]).returncode == 0
    proc = run(['-c', KILL_WHILE_SAVING, 'iter_4.pth', TRAIN, *argv(resumed)])
    assert proc.returncode == -signal.SIGKILL and (resumed / 'iter_2.pth').exists(), proc.stderr[-3000:]
    proc = run([TRAIN, *argv(resumed), '--resume'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'random states restored' not in proc.stdout + proc.stderr
    final, expected = state_dict(resumed / 'iter_4.pth'), state_dict(reference / 'iter_4.pth')
    assert final.keys() == expected.keys()
    different = [k for k in final if not torch.equal(final[k], expected[k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'


# Entries of a fairseq Transformer state_dict that are not trained weights: the positional embedding's
# uninitialised ``_float_tensor`` buffer, and the encoder layers' copies of their weights for PyTorch's
# inference fast path (``in_proj_weight``, ``fc1_bias``, ...; fairseq 0.12.2 refreshes them when it loads
# a checkpoint, so after a resume they hold the resumed-from weights).
NOT_TRAINED = re.compile(r'(\._float_tensor|^encoder\.layers\.\d+\.(in_proj|out_proj|fc1|fc2)_(weight|bias))$')


def test_translation_sigkill_then_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path_factory):
    pytest.importorskip('fairseq')
    from tools.data import make_tiny_en_de, prepare_wmt14_en_de
    out = tmp_path_factory.mktemp('tiny_en_de')
    make_tiny_en_de.make_corpus(out / 'raw', n_train=600, n_valid=50, n_test=20, seed=3)
    prepare_wmt14_en_de.prepare(out, out / 'raw', bpe_tokens=300, workers=1, download=False)
    data = out / 'bin'

    def argv(work_dir):
        return [TRAIN, NMT_TINY, '--work-dir', str(work_dir), '--seed', '0', '--cfg-options', f'fairseq.data={data}',
                'fairseq.train.max_update=30', 'fairseq.train.save_interval_updates=10']
    reference, resumed = tmp_path_factory.mktemp('nmt_reference'), tmp_path_factory.mktemp('nmt_resumed')
    proc = run(argv(reference))
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = subprocess.Popen([sys.executable, *argv(resumed)], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    log = resumed / 'fairseq_train.log'
    # "Saved checkpoint" is logged once checkpoint_last.pt, fairseq's in-place copy, is complete
    sigkill_when(child, lambda: log.exists() and 'Saved checkpoint' in log.read_text())
    assert 'num_updates 30' not in log.read_text()  # killed mid-way

    proc = run([*argv(resumed), '--resume'])
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = re.search(r'Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ (\d+) updates\)', log.read_text())
    assert loaded and 0 < int(loaded.group(1)) < 30  # usually 10: mid-epoch (12 updates per epoch)
    final, expected = (torch.load(d / 'checkpoint_last.pt', map_location='cpu', weights_only=False)
                       for d in (resumed, reference))
    assert final['optimizer_history'][-1]['num_updates'] == expected['optimizer_history'][-1]['num_updates'] == 30
    assert final['model'].keys() == expected['model'].keys()
    trained = [k for k in final['model'] if not NOT_TRAINED.search(k)]
    assert len(trained) == len(final['model']) - 18  # 2 buffers + 2 layers x 8 fast-path copies
    different = [k for k in trained if not torch.equal(final['model'][k], expected['model'][k])]
    assert not different, f'{len(different)} tensors differ, e.g. {different[:3]}'
    adam, adam_expected = final['last_optimizer_state']['state'], expected['last_optimizer_state']['state']
    assert adam.keys() == adam_expected.keys()
    assert all(torch.equal(v, adam_expected[i][name]) for i in adam for name, v in adam[i].items() if torch.is_tensor(v))


# --- tools/train.py: add_reliability_hooks by default, readable --resume checkpoints ----------------------
def test_train_tool_adds_the_reliability_hooks_by_default(tiny_root, tmp_path):
    argv = [a for a in train_argv(tiny_root, tmp_path, 'optim_wrapper.optimizer.lr=1e30') if a not in HOOKS]
    proc = run([TRAIN, *argv])
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: non-finite loss at iteration 2 (epoch 1): decode.loss_ce=nan')
    assert 'Traceback' not in proc.stderr
    assert 'AtomicCheckpointHook' in proc.stdout + proc.stderr  # the hook table MMEngine logs


@pytest.mark.parametrize('how', ['path', 'auto'])
def test_resume_from_a_truncated_checkpoint_is_one_line_naming_the_file(tiny_root, tmp_path, uninterrupted, how):
    good = (uninterrupted / f'epoch_{EPOCHS}.pth').read_bytes()
    bad = tmp_path / 'epoch_1.pth'
    bad.write_bytes(good[:len(good) // 2])
    (tmp_path / 'last_checkpoint').write_text(str(bad))
    proc = run([TRAIN, *train_argv(tiny_root, tmp_path), '--resume', *([str(bad)] if how == 'path' else [])])
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
    assert len(errors) == 1 and f'cannot read checkpoint {bad}' in errors[0]


# fairseq copies its first checkpoint file to checkpoint_last.pt; here the copy is killed after 1000 bytes
KILL_WHILE_COPYING = '''
import os, shutil, signal, sys
from fairseq.file_io import PathManager
from translation import runner
def copy_then_die(fsrc, fdst, *args, **kwargs):
    fdst.write(fsrc.read(1000))
    fdst.flush()
    os.kill(os.getpid(), signal.SIGKILL)
shutil.copyfileobj = copy_then_die
shutil._USE_CP_SENDFILE = False  # Linux copies with sendfile, not copyfileobj, unless told otherwise
with runner._atomic_checkpoint_copies():
    PathManager.copy(sys.argv[1], sys.argv[2], overwrite=True)
'''


def test_translation_kill_while_copying_to_checkpoint_last_keeps_the_previous_one(tmp_path):
    pytest.importorskip('fairseq')
    last, new = tmp_path / 'checkpoint_last.pt', tmp_path / 'checkpoint2.pt'
    torch.save({'update': 1}, last)
    torch.save({'update': 2, 'weights': torch.ones(1_000_000)}, new)
    proc = run(['-c', KILL_WHILE_COPYING, str(new), str(last)])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert torch.load(last, weights_only=False) == {'update': 1}
    assert [f.name for f in tmp_path.iterdir() if f.name.endswith('.partial')]  # the copy was under way
