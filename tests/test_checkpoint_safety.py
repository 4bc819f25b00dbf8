"""Checkpoint loading is weights_only=True everywhere (issue 12), the version guards beside every patch of another
library's private code, and the SSD recipe's weight decay on SAU's alpha.

The malicious checkpoint is a real ``torch.save`` file whose unpickling runs ``exec`` (creating a marker file):
every entry point that reads a checkpoint (tools/eval.py with a path and a file:// URL, tools/train.py --resume
with a path and from the work dir, the translation train and eval paths, tools/publish_checkpoint.py,
tools/plot.py) must refuse it with exit status 1 and one ``error:`` line naming the file, the reason and
``--trust-checkpoint``, and the marker must never appear. The released checkpoints, MMEngine and fairseq
training checkpoints and the published ones load without a full unpickle (their end-to-end evaluation and
resume are in test_released_checkpoints.py, test_reliability.py, test_translation.py, test_zoo_tools.py).
"""
import argparse
import os
import os.path as osp
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from tools.zoo import config  # noqa: I100  (first: it quiets mmengine's import-time warnings)
from tools.zoo import io as zoo_io
from tools.zoo.errors import InputError, run_main

pytest.importorskip('mmseg')
from tools import eval as eval_tool  # noqa: E402
from tools import train as train_tool  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SEG = osp.join(REPO, 'segmentation', 'configs', 'unet-w8_sau_tiny-cityscapes.py')
DET = osp.join(REPO, 'detection', 'configs', 'ssd300-w0.125_sau_tinyvoc.py')
SSD_FULL = osp.join(REPO, 'detection', 'configs', 'ssd300_sau.py')
NMT = osp.join(REPO, 'translation', 'configs', 'transformer_tiny_sau.py')
RELEASED = sorted(osp.join(REPO, 'checkpoints', f) for f in os.listdir(osp.join(REPO, 'checkpoints')))
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}
ENV.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
TRUST = '--trust-checkpoint'

pytestmark = pytest.mark.usefixtures('one_torch_thread')


# ---------------------------------------------------------------- the malicious file

class _Payload:
    """Unpickles as ``exec(code)``: creates ``marker``. A full unpickle runs it; weights_only=True must not."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").close()',)


def malicious_checkpoint(path, marker, kind='mmengine', legacy=False):
    """A checkpoint of the given kind (MMEngine, fairseq) with the payload in a harmless-looking entry; exec
    returns None, so a trusted load gets a well-formed checkpoint."""
    if kind == 'mmengine':
        state = {'meta': {'epoch': 1, 'note': _Payload(marker)}, 'state_dict': {'w': torch.ones(2)}}
    else:
        state = {'model': {'w': torch.ones(2)}, 'cfg': {'note': _Payload(marker)}, 'args': None}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    assert not osp.exists(marker)
    return path


@pytest.fixture
def evil(tmp_path):
    """(the malicious MMEngine-style checkpoint, its marker path)"""
    marker = tmp_path / 'PWNED'
    return malicious_checkpoint(tmp_path / 'epoch_1.pth', marker), marker


def test_the_malicious_checkpoint_really_runs_code_when_fully_unpickled(tmp_path):
    marker = tmp_path / 'PWNED'
    for legacy in (False, True):
        path = malicious_checkpoint(tmp_path / f'x{legacy}.pth', marker, legacy=legacy)
        torch.load(path, weights_only=False)
        assert marker.exists()
        marker.unlink()


def refusal_line(path):
    return (f'error: refusing to load checkpoint {path}: it needs exec, which is not on the zoo\'s allow-list; '
            'only a full unpickle could load it, and that runs whatever code the file carries; pass '
            '--trust-checkpoint if it is a local file you vouch for')


# ---------------------------------------------------------------- entry points (in this process, as run_main runs them)

from cli_cases import cli, mmengine_globals_restored, one_error_line  # noqa: E402,F401 (an autouse fixture)


def script(*argv, cwd=REPO, timeout=300):
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)
    return proc


@pytest.fixture(scope='module')
def city(tmp_path_factory):
    from tools.data import make_tiny_cityscapes
    out = tmp_path_factory.mktemp('safety_city') / 'tiny_cityscapes'
    make_tiny_cityscapes.make_tiny_cityscapes(str(out), seed=0)
    return out


@pytest.fixture(scope='module')
def fake_bin(tmp_path_factory):
    """A fairseq data folder that passes the runner's check (its two dictionaries)."""
    path = tmp_path_factory.mktemp('safety_nmt_bin')
    for lang in ('en', 'de'):
        (path / f'dict.{lang}.txt').write_text('hallo 1\n')
    return path


def seg_options(city, tmp_path):
    return ['--work-dir', tmp_path / 'work', '--cfg-options', *[f'{k}.dataset.data_root={city}' for k in LOADERS],
            'train_cfg.max_epochs=1', 'train_cfg.val_begin=2']


def test_eval_refuses_it_as_a_path(evil, city, tmp_path, capsys):
    path, marker = evil
    assert cli(eval_tool, [SEG, path, *seg_options(city, tmp_path)], capsys) == refusal_line(path)
    assert not marker.exists()


def test_eval_refuses_it_as_a_file_url_and_keeps_no_copy(evil, city, tmp_path, capsys, monkeypatch):
    path, marker = evil
    monkeypatch.setenv('SAU_ZOO_CACHE', str(tmp_path / 'cache'))
    url = f'file://{path}'
    line = cli(eval_tool, [SEG, url, *seg_options(city, tmp_path)], capsys)
    assert line.startswith(f'error: refusing to load checkpoint {url}: it needs exec, which is not on the zoo')
    assert line.endswith('a download is never unpickled fully (--trust-checkpoint is for local files you vouch for)')
    assert not marker.exists()
    assert os.listdir(tmp_path / 'cache' / 'checkpoints') == []  # deleted, not left for a later run
    # --trust-checkpoint never covers a URL
    line = cli(eval_tool, [SEG, url, TRUST, *seg_options(city, tmp_path)], capsys)
    assert line.startswith(f'error: --trust-checkpoint is for a local file you vouch for, never for a URL ({url})')
    assert not marker.exists()


@pytest.mark.parametrize('how', ['path', 'auto'])
def test_train_resume_refuses_it(how, evil, city, tmp_path, capsys):
    path, marker = evil
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text(str(path))  # what --resume without a path resumes from
    argv = [SEG, *seg_options(city, tmp_path), '--resume', *([path] if how == 'path' else [])]
    assert cli(train_tool, argv, capsys) == refusal_line(path)
    assert not marker.exists()


def test_train_trust_never_reaches_a_url_in_the_config(evil, city, tmp_path, capsys):
    path, marker = evil
    argv = [SEG, *seg_options(city, tmp_path), 'model.pretrained=https://example.com/x.pth', '--resume', path,
            TRUST]
    line = cli(train_tool, argv, capsys)
    assert line.startswith('error: --trust-checkpoint would also reach https://example.com/x.pth '
                           '(model.pretrained in the config), a URL')
    assert not marker.exists()


@pytest.mark.parametrize('how', ['--resume PATH', '--resume (checkpoint_last.pt)', 'eval'])
def test_translation_paths_refuse_it(how, fake_bin, tmp_path, capsys):
    pytest.importorskip('fairseq')
    marker = tmp_path / 'PWNED'
    work = tmp_path / 'work'
    work.mkdir()
    options = ['--cfg-options', f'fairseq.data={fake_bin}']
    if how == '--resume PATH':
        path = malicious_checkpoint(tmp_path / 'checkpoint7.pt', marker, kind='fairseq')
        line = cli(train_tool, [NMT, '--work-dir', work, *options, '--resume', path], capsys)
    elif how == '--resume (checkpoint_last.pt)':
        path = malicious_checkpoint(work / 'checkpoint_last.pt', marker, kind='fairseq')
        line = cli(train_tool, [NMT, '--work-dir', work, *options, '--resume'], capsys)
    else:
        path = malicious_checkpoint(tmp_path / 'checkpoint_best.pt', marker, kind='fairseq')
        line = cli(eval_tool, [NMT, path, *options], capsys)
    assert line == refusal_line(path)
    assert not marker.exists()


# ---------------------------------------------------------------- the same as real processes

def test_processes_refuse_it_with_exit_1_and_one_line(city, tmp_path):
    """tools/eval.py (the legacy, non-zip torch.save format too), tools/publish_checkpoint.py, tools/plot.py."""
    marker = tmp_path / 'PWNED'
    legacy = malicious_checkpoint(tmp_path / 'legacy.pth', marker, legacy=True)
    proc = script('tools/eval.py', SEG, legacy, *seg_options(city, tmp_path))
    assert one_error_line(proc.returncode, proc.stderr) == refusal_line(legacy)

    path = malicious_checkpoint(tmp_path / 'epoch_1.pth', marker)
    proc = script('tools/publish_checkpoint.py', path, tmp_path / 'released')
    assert one_error_line(proc.returncode, proc.stderr) == refusal_line(path)
    assert not osp.exists(tmp_path / 'released') or os.listdir(tmp_path / 'released') == []

    proc = script('tools/plot.py', 'alphas', path, tmp_path / 'alphas.png')
    assert one_error_line(proc.returncode, proc.stderr) == refusal_line(path)
    assert not osp.exists(tmp_path / 'alphas.png')
    assert not marker.exists()


def test_trust_checkpoint_unpickles_a_local_file_and_publish_writes_a_safe_one(tmp_path):
    """The flag does what it says (the payload runs: the user vouched for the file), and what publish writes
    loads with weights_only=True whatever it read."""
    marker = tmp_path / 'PWNED'
    path = malicious_checkpoint(tmp_path / 'epoch_1.pth', marker)
    proc = script('tools/publish_checkpoint.py', path, tmp_path / 'released', '--config', SEG, TRUST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert marker.exists()
    [name] = os.listdir(tmp_path / 'released')
    published = zoo_io.read_checkpoint(str(tmp_path / 'released' / name))
    assert published['meta'] == {'epoch': 1, 'note': None} and set(published) == {'meta', 'state_dict'}


def test_plot_alphas_trusts_a_local_file_only_with_the_flag(evil, tmp_path, capsys):
    from tools import plot
    path, marker = evil
    assert run_main(plot.main, ['alphas', str(path), str(tmp_path / 'a.png')]) == 1
    assert capsys.readouterr().err.strip() == refusal_line(path) and not marker.exists()
    # vouched for: unpickled (the payload runs), and then it holds no SAU alpha to plot
    assert run_main(plot.main, ['alphas', str(path), str(tmp_path / 'a.png'), TRUST]) == 1
    assert marker.exists()
    assert capsys.readouterr().err.strip() == f'error: {path} has no SAU alphas (no state_dict key ends in ".alpha"): ' \
        'was it trained with another activation?'


def test_publish_refuses_to_write_a_file_that_would_need_a_full_unpickle(tmp_path):
    from tools import publish_checkpoint
    torch.save({'state_dict': {'w': torch.ones(1)}, 'meta': {'when': types.SimpleNamespace(a=1)}},
               tmp_path / 'odd.pth')
    with pytest.raises(InputError, match=r'the published checkpoint would need a full unpickle \(it needs '
                                         r'types\.SimpleNamespace'):
        publish_checkpoint.publish(str(tmp_path / 'odd.pth'), str(tmp_path / 'out'), SEG, trust=True)
    assert not osp.exists(tmp_path / 'out') or os.listdir(tmp_path / 'out') == []


# ---------------------------------------------------------------- the frameworks' own loads

def test_checkpoint_loading_forces_weights_only_on_the_frameworks_loaders(evil, monkeypatch):
    """MMEngine 0.10.7 calls torch.load without weights_only, the zoo's fairseq build with weights_only=False:
    inside checkpoint_loading() both are weights_only=True, even with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD set by
    the user, and everything is as before once the block ends."""
    from mmengine.runner.checkpoint import _load_checkpoint
    path, marker = evil
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    before = set(torch.serialization.get_safe_globals())
    with zoo_io.checkpoint_loading():
        with pytest.raises(pickle.UnpicklingError, match='GLOBAL exec was not an allowed global'):
            _load_checkpoint(str(path), map_location='cpu')
        with pytest.raises(pickle.UnpicklingError, match='GLOBAL exec was not an allowed global'):
            torch.load(path, weights_only=False)  # what checkpoint_utils.load_checkpoint_to_cpu calls
        assert _load_checkpoint(RELEASED[0], map_location='cpu')['state_dict']
    assert not marker.exists()
    assert os.environ['TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'] == '1' and 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ
    assert set(torch.serialization.get_safe_globals()) == before
    with zoo_io.checkpoint_loading(trust=True):  # --trust-checkpoint: MMEngine's load unpickles fully
        _load_checkpoint(str(path), map_location='cpu')
    assert marker.exists()


def test_fairseq_loader_reads_the_released_checkpoint_weights_only(evil):
    pytest.importorskip('fairseq')
    from fairseq import checkpoint_utils
    path, marker = evil
    released = [p for p in RELEASED if 'transformer' in osp.basename(p)][0]
    with zoo_io.checkpoint_loading():
        state = checkpoint_utils.load_checkpoint_to_cpu(released)
        with pytest.raises(pickle.UnpicklingError):
            checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert state['model'] and not marker.exists()


# ---------------------------------------------------------------- what the allow-list holds and lets through

def _unsafe_globals(path):
    with zoo_io.checkpoint_loading():
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)


@pytest.mark.parametrize('path', RELEASED, ids=[osp.basename(p) for p in RELEASED])
def test_released_checkpoints_load_weights_only(path):
    assert _unsafe_globals(path) == []
    state = zoo_io.read_checkpoint(path)
    assert 'state_dict' in state or 'model' in state
    if 'model' in state:  # fairseq-train's cfg.model
        assert isinstance(state['cfg']['model'], argparse.Namespace)


def test_allow_list_is_what_the_zoo_checkpoints_need():
    names = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
             for kind in zoo_io.allowed_globals().values() for g in kind}
    assert {'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr', 'numpy.ndarray', 'numpy.dtype',
            'numpy._core.multiarray._reconstruct', 'numpy._core.multiarray.scalar', 'argparse.Namespace',
            'omegaconf.dictconfig.DictConfig'} <= names
    assert not {'builtins.eval', 'builtins.exec', 'os.system', 'posix.system', 'builtins.open'} & names


def _mmengine_training_checkpoint(path):
    """What Runner.save_checkpoint writes with the zoo's hooks: the message hub (HistoryBuffers, numpy scalars in
    the runtime info), the optimizer, the schedulers and RandomStateHook's random states (numpy's MT19937)."""
    from mmengine.logging import MessageHub

    from tools.zoo.hooks import RandomStateHook
    hub = MessageHub(name=f'safety-{os.getpid()}')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/lr', 1e-3)
    hub.update_info('best_score', np.float32(0.25), resumed=True)
    hub.update_info('eta', np.float64(12.5), resumed=True)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    checkpoint = dict(meta=dict(epoch=1, iter=5, seed=0), state_dict=model.state_dict(),
                      message_hub=hub.state_dict(), optimizer=optimizer.state_dict(), param_schedulers=[])
    RandomStateHook().before_save_checkpoint(None, checkpoint)
    torch.save(checkpoint, path)
    MessageHub._instance_dict.pop(hub.instance_name, None)
    return checkpoint


def test_mmengine_training_checkpoints_load_weights_only_and_resume_their_state(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    path = str(tmp_path / 'epoch_1.pth')
    written = _mmengine_training_checkpoint(path)
    assert set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) >= {
        'builtins.getattr', 'mmengine.logging.history_buffer.HistoryBuffer', 'numpy.ndarray'}  # needs the list
    assert _unsafe_globals(path) == []
    state = zoo_io.read_checkpoint(path)
    assert isinstance(state['message_hub']['log_scalars']['train/loss'], HistoryBuffer)
    assert state['message_hub']['log_scalars']['train/loss'].current() == 0.5
    assert state['message_hub']['runtime_info']['best_score'] == np.float32(0.25)
    numpy_state = state['rng_states']['numpy']
    assert numpy_state[0] == 'MT19937' and np.array_equal(numpy_state[1], written['rng_states']['numpy'][1])
    assert state['rng_states']['python'] == written['rng_states']['python']
    hub = MessageHub(name=f'safety-load-{os.getpid()}')
    hub.load_state_dict(state['message_hub'])  # what Runner.resume does with it
    assert hub.get_scalar('train/lr').current() == 1e-3
    MessageHub._instance_dict.pop(hub.instance_name, None)


def test_the_allow_listed_getattr_returns_only_history_buffer_statistics(tmp_path):
    from mmengine.logging import HistoryBuffer

    class Attribute:
        def __init__(self, name):
            self.name = name

        def __reduce__(self):
            return getattr, (HistoryBuffer, self.name)
    for name, ok in (('mean', True), ('max', True), ('__init__', False), ('update', False)):
        path = tmp_path / f'{name}.pth'
        torch.save({'state_dict': {}, 'meta': {'f': Attribute(name)}}, path)
        if ok:
            assert zoo_io.read_checkpoint(str(path))['meta']['f'] is getattr(HistoryBuffer, name)
        else:
            with pytest.raises(InputError, match=rf"refusing to load checkpoint .*: it needs getattr\(HistoryBuffer,"
                                                 rf"'{name}'\), which is not on the zoo's allow-list"):
                zoo_io.read_checkpoint(str(path))


def test_fairseq_checkpoints_load_weights_only(tmp_path):
    """fairseq-train's cfg (a dict with an argparse.Namespace) and a checkpoint re-saved after fairseq's own
    loader (cfg an OmegaConf DictConfig, as fairseq's scripts/average_checkpoints.py writes)."""
    pytest.importorskip('fairseq')
    from fairseq import checkpoint_utils
    released = [p for p in RELEASED if 'transformer' in osp.basename(p)][0]
    with zoo_io.checkpoint_loading():
        state = checkpoint_utils.load_checkpoint_to_cpu(released)
    resaved = str(tmp_path / 'averaged.pt')
    torch.save(state, resaved)
    assert 'omegaconf.dictconfig.DictConfig' in torch.serialization.get_unsafe_globals_in_checkpoint(resaved)
    assert _unsafe_globals(resaved) == []
    assert zoo_io.read_checkpoint(resaved)['cfg'].model.activation_fn == 'sau'


def test_a_truncated_file_is_unreadable_not_refused(tmp_path):
    junk = tmp_path / 'junk.pth'
    junk.write_text('not a checkpoint')
    with pytest.raises(InputError, match=f'^cannot read checkpoint {junk}: UnpicklingError: Unsupported operand'):
        zoo_io.read_checkpoint(str(junk))
    for legacy in (False, True):
        path = tmp_path / f'cut{legacy}.pth'
        torch.save({'state_dict': {'w': torch.ones(1000)}}, path, _use_new_zipfile_serialization=not legacy)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        with pytest.raises(InputError, match=f'^cannot read checkpoint {path}: '):
            zoo_io.read_checkpoint(str(path))


def test_no_tool_sets_torch_force_no_weights_only_load_for_the_process():
    code = ('import os, tools.train, tools.eval, tools.publish_checkpoint, tools.plot, tools.zoo.hooks, '
            'translation.runner; print(os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"))')
    proc = script('-c', code, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == 'None', proc.stderr[-3000:]


# ---------------------------------------------------------------- version guards of the patches of private code

OTHER = '0.99.0'


def _guard(patch_where, library, written_for, installed, recheck):
    return (rf'{patch_where}.* was written for {library} {written_for}, but {library} {installed} is installed: '
            rf're-check .*{recheck}')


def test_the_installed_libraries_are_the_versions_the_patches_were_written_for():
    import fairseq
    import mmengine

    from tools.zoo.hooks import AtomicCheckpointHook
    from translation import runner
    assert mmengine.__version__ == config.MMENGINE_VERSION == AtomicCheckpointHook.MMENGINE_VERSION
    assert fairseq.__version__.split('+')[0] == runner.FAIRSEQ_VERSION
    assert sys.version_info[:2] == config.PYTHON_VERSION
    with config.framework_errors(), config.fairseq_option_errors(), runner._atomic_checkpoint_copies():
        pass


def test_mmengine_guards_fire_on_another_mmengine(monkeypatch):
    import mmengine
    from mmengine.config import Config

    from tools.zoo.hooks import AtomicCheckpointHook
    monkeypatch.setattr(mmengine, '__version__', OTHER)
    with pytest.raises(RuntimeError, match=_guard('AtomicCheckpointHook._save_checkpoint_with_step', 'mmengine',
                                                  '0.10.7', OTHER, 'CheckpointHook._save_checkpoint_with_step')):
        AtomicCheckpointHook().before_train(None)
    from tools.zoo.hooks import SignalCheckpointHook
    with pytest.raises(RuntimeError, match=_guard('SignalCheckpointHook._save_and_exit', 'mmengine', '0.10.7',
                                                  OTHER, "CheckpointHook's private _save_checkpoint")):
        SignalCheckpointHook().before_train(None)
    with pytest.raises(RuntimeError, match=_guard('framework_errors', 'mmengine', '0.10.7', OTHER,
                                                  'build_from_cfg')):
        with config.framework_errors():
            pass
    with pytest.raises(RuntimeError, match=_guard('check_act_cfgs', 'mmengine', '0.10.7', OTHER, 'print_log')):
        config.check_act_cfgs(Config(dict(model=dict(act_cfg=dict(type='SAU')))))


def test_python_guards_fire_on_another_python(monkeypatch):
    monkeypatch.setattr(config, 'sys', types.SimpleNamespace(version_info=(3, 12, 1, 'final', 0)))
    with pytest.raises(RuntimeError, match=_guard('fairseq_option_errors', 'Python', '3.11', '3.12',
                                                  'ArgumentParser.parse_args')):
        with config.fairseq_option_errors():
            pass
    with pytest.raises(RuntimeError, match=_guard('framework_errors', 'Python', '3.11', '3.12', 'TypeError')):
        with config.framework_errors():
            pass


def test_fairseq_guard_fires_on_another_fairseq(monkeypatch):
    fairseq = pytest.importorskip('fairseq')
    from fairseq.file_io import PathManager

    from translation import runner
    copy = PathManager.__dict__['copy']
    monkeypatch.setattr(fairseq, '__version__', '0.13.0+sauzoo.abc')
    with pytest.raises(RuntimeError, match=_guard('PathManager.copy', 'fairseq', '0.12.2', r'0\.13\.0\+sauzoo.abc',
                                                  'PathManager.copy')):
        with runner._atomic_checkpoint_copies():
            pass
    assert PathManager.__dict__['copy'] is copy  # nothing patched


# ---------------------------------------------------------------- SSD: weight decay on SAU's alpha

def _weight_decay_by_parameter(cfg_options):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.utils import import_modules_from_strings
    cfg = config.load_config(SSD_FULL)
    config.check_cfg_options(cfg, cfg_options)
    cfg.merge_from_dict(cfg_options)
    import_modules_from_strings(**cfg.custom_imports)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    names = {id(p): n for n, p in model.named_parameters()}
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    return {names[id(p)]: group['weight_decay'] for group in optimizer.param_groups for p in group['params']}


def test_ssd_recipe_decays_alpha_as_the_paper_reads_and_one_flag_turns_that_off():
    default = _weight_decay_by_parameter({})
    alphas = [n for n in default if n.endswith('.alpha')]
    assert len(alphas) == 23 and all(n.endswith('.activate.alpha') for n in alphas)  # 15 backbone + 8 neck
    assert not [n for n in default if 'alpha' in n and n not in alphas]  # the key matches the alphas only
    assert set(default.values()) == {5e-4}  # the paper's text: weight decay 5e-4 on every parameter

    off = _weight_decay_by_parameter({'optim_wrapper.paramwise_cfg.custom_keys.alpha.decay_mult': 0})
    assert off.keys() == default.keys()
    assert {off[n] for n in alphas} == {0.0}
    assert {v for n, v in off.items() if n not in alphas} == {5e-4}
