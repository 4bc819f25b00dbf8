"""Distributed training on the zoo's engines, AMP, gradient accumulation and ``torch.compile``, all on CPU.

- MMEngine (segmentation): ``torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch`` (gloo)
  against one process with the same total batch and seed: same loss curve, same SAU alphas, identical
  replicas on both ranks after every step (``tests/dist_probe.py``), DDP without unused parameters;
  detection (SSD, iteration-based, distributed validation) on 2 processes: identical replicas.
- fairseq (translation): the same through ``tools/train.py``, fairseq's own distributed training (env://,
  gloo, ``legacy_ddp``) against one process with ``update_freq=2``, alphas compared after every update.
- SAU in a ConvModule stack under CPU autocast (bf16, fp16); ``--amp`` without a GPU; MMEngine's
  ``accumulative_counts``; ``torch.compile`` (inductor) against eager; the tiny U-Net and SSD300 task models
  under ``torch.compile(fullgraph=True)`` and bf16 autocast.

Every training is a subprocess with one thread per process on the tiny generated data; about 1.5 minutes in
all on 2 shared cores.
"""
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TESTS = osp.join(REPO, 'tests')
TRAIN = osp.join(REPO, 'tools', 'train.py')
SEG_TINY = osp.join(REPO, 'segmentation', 'configs', 'unet-w8_sau_tiny-cityscapes.py')
SSD_TINY = osp.join(REPO, 'detection', 'configs', 'ssd300-w0.125_sau_tinyvoc.py')
NMT_TINY = osp.join(REPO, 'translation', 'configs', 'transformer_tiny_sau.py')

pytest.importorskip('mmseg')
from mmcv.cnn import ConvModule  # noqa: E402

import sau_core.mm  # noqa: E402,F401  (registers SAU for ConvModule)

pytestmark = pytest.mark.usefixtures('one_torch_thread')
ENV = {**os.environ, 'OMP_NUM_THREADS': '1',
       'PYTHONPATH': os.pathsep.join([TESTS, os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)}


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(argv, nproc=1, probe=None, timeout=300):
    """``tools/train.py argv`` in one process, or under torchrun with ``nproc`` processes on 127.0.0.1;
    with ``probe`` (a JSON path), through ``tests/dist_probe.py``, which records fairseq's updates there."""
    launch = [] if nproc == 1 else ['-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
                                    '--master_addr=127.0.0.1', f'--master_port={free_port()}']
    script = [TRAIN] if probe is None else [osp.join(TESTS, 'dist_probe.py'), str(probe), TRAIN]
    proc = subprocess.run([sys.executable, *launch, *script, *argv, *(['--launcher', 'pytorch'] if nproc > 1 else [])],
                          cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def sau_stack(per_channel=8):
    """Two ConvModules with SAU (one shared alpha, then ``per_channel`` alphas), GroupNorm, a 1x1 head."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        ConvModule(3, 8, 3, padding=1, act_cfg=dict(type='SAU')),
        ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='GN', num_groups=2),
                   act_cfg=dict(type='SAU', num_parameters=per_channel)),
        torch.nn.Conv2d(8, 4, 1))


def alpha_grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if name.endswith('alpha')}


# --- MMEngine: segmentation on 2 processes ------------------------------------------------------------
# The tiny SAU U-Net made batch-size independent so that 2 x 4 images and 1 x 8 images are the same step:
# GroupNorm instead of BN (per-sample statistics; torch's SyncBatchNorm needs GPUs), no dropout and no
# random flip (each process draws its own random numbers), and DistProbeHook recording every step.
# Measured with BN (mmseg's default for this model): the per-rank BN statistics differ from the full
# batch's, the loss differs by up to 1.1e-2 and the alphas by 1.4e-2 within 4 steps.
SEG_CONFIG = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['sau_core.mm', 'segmentation.sau_seg', 'dist_probe'], allow_failed_imports=False)
norm = dict(type='GN', num_groups=4, requires_grad=True)
model = dict(backbone=dict(norm_cfg=norm), decode_head=dict(norm_cfg=norm, dropout_ratio=0.0),
             auxiliary_head=dict(norm_cfg=norm, dropout_ratio=0.0))
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), dict(type='PackSegInputs')]
train_dataloader = dict(dataset=dict(data_root={root!r}, pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(data_root={root!r}))
test_dataloader = val_dataloader
train_cfg = dict(max_epochs=2, val_begin=1000)  # 12 images: 2 steps of 8 (8 + 4) per epoch, no validation
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [dict(type='DistProbeHook', out_file={probe!r})]
'''


@pytest.fixture(scope='module')
def seg_runs(tmp_path_factory):
    """(1 process, batch 8) and (2 processes, batch 4 each): the probes' records and the final weights."""
    from tools.data import make_tiny_cityscapes
    tmp = tmp_path_factory.mktemp('dist_seg')
    root = str(tmp / 'tiny_cityscapes')
    make_tiny_cityscapes.make_tiny_cityscapes(root, seed=0, per_city=(4, 1))  # 12 train images
    runs = {}
    for nproc, batch in ((1, 8), (2, 4)):
        config, probe, work_dir = tmp / f'seg_{nproc}.py', tmp / f'probe_{nproc}.json', tmp / f'work_{nproc}'
        config.write_text(SEG_CONFIG.format(base=SEG_TINY, root=root, probe=str(probe)))
        proc = run([str(config), '--work-dir', str(work_dir), '--seed', '0', '--cfg-options',
                    f'train_dataloader.batch_size={batch}'], nproc=nproc)
        assert proc.stdout.count('train done:') == 1  # the summary line from rank 0 only
        weights = torch.load(work_dir / 'epoch_2.pth', map_location='cpu', weights_only=False)['state_dict']
        [scalars] = work_dir.glob('*/vis_data/scalars.json')
        logged = [json.loads(line)['loss'] for line in scalars.read_text().splitlines() if '"loss"' in line]
        runs[nproc] = dict(json.loads(probe.read_text()), weights=weights, logged=logged)
    return runs


def test_the_json_log_holds_rank_0s_loss_averaged_over_the_last_10_steps(seg_runs):
    """Why the curves are compared through the probe: MMEngine's json log (``scalars.json``) holds the loss
    of rank 0's share of the batch only, and smoothed (``LogProcessor(window_size=10)``: the mean of the
    last 10 steps); with one process it is the whole batch's."""
    def running_mean(values):
        return [sum(values[:i + 1]) / (i + 1) for i in range(len(values))]
    one, two = seg_runs[1], seg_runs[2]
    assert one['logged'] == pytest.approx(running_mean([r['loss'] for r in one['iters']]), rel=1e-6)
    assert two['logged'] == pytest.approx(running_mean([r['rank_losses'][0] for r in two['iters']]), rel=1e-6)


def test_segmentation_on_two_processes_follows_the_one_process_loss_curve(seg_runs):
    one, two = seg_runs[1], seg_runs[2]
    assert (one['world_size'], two['world_size']) == (1, 2)
    assert [r['iter'] for r in one['iters']] == [r['iter'] for r in two['iters']] == [1, 2, 3, 4]
    for a, b in zip(one['iters'], two['iters']):
        assert b['rank_losses'][0] != b['rank_losses'][1]  # each rank trained on its own half of the batch
        # Measured: the losses agree to 3.6e-7 and the alphas to 3.6e-7 (float32 rounding: the gradient of
        # the 8 images is summed in another order); the tolerance leaves 10x for other CPUs' kernels.
        assert b['loss'] == pytest.approx(a['loss'], abs=5e-6)
        assert b['alphas'] == pytest.approx(a['alphas'], abs=5e-6)
    assert one['iters'][-1]['loss'] < one['iters'][0]['loss'] - 0.5  # it trained: 3.90 -> 3.03
    assert len(one['iters'][0]['alphas']) == 24  # one per SAU of the U-Net and its heads
    assert one['iters'][-1]['alphas'] != one['iters'][0]['alphas']
    # The final weights: measured max difference 3.3e-5 (Adam divides by sqrt(v), which magnifies the
    # rounding differences of near-zero gradients), 10x allowed.
    w1, w2 = one['weights'], two['weights']
    assert w1.keys() == w2.keys()
    worst = max((w1[k].double() - w2[k].double()).abs().max().item() for k in w1)
    assert worst < 3e-4, worst


def test_ddp_keeps_every_sau_alpha_identical_on_all_ranks(seg_runs):
    two = seg_runs[2]
    assert two['wrapper'] == 'MMDistributedDataParallel'
    # find_unused_parameters=False: DDP would have raised at the second step if any parameter (an alpha of
    # a branch that is not used, say) received no gradient; four steps ran
    assert two['find_unused_parameters'] is False
    for record in two['iters']:
        assert record['alpha_rank_diff'] == 0.0 and record['param_rank_diff'] == 0.0  # bitwise equal replicas


SSD_CONFIG = '''
_base_ = [{base!r}]
custom_imports = dict(imports=['sau_core.mm', 'detection.models', 'dist_probe'], allow_failed_imports=False)
train_cfg = dict(max_iters=2, val_interval=1000)  # validation once, at the end
custom_hooks = [dict(type='DistProbeHook', out_file={probe!r})]
'''


def test_detection_trains_on_two_processes_with_identical_replicas(tmp_path):
    """SSD300 (IterBasedTrainLoop, InfiniteSampler, VGG16-BN, random augmentations): no curve to compare
    with one process (each rank draws its own crops and BN normalises per rank), but the replicas must stay
    equal and the distributed validation must gather every rank's images."""
    from tools.data import make_tiny_voc
    make_tiny_voc.make_tiny_voc(str(tmp_path / 'voc'), trainval=8, test=4, seed=0)
    config, probe = tmp_path / 'ssd.py', tmp_path / 'probe.json'
    config.write_text(SSD_CONFIG.format(base=SSD_TINY, probe=str(probe)))
    roots = [f'{k}.dataset.data_root={tmp_path}/voc/VOCdevkit/'
             for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    proc = run([str(config), '--work-dir', str(tmp_path / 'work'), '--seed', '0', '--cfg-options', *roots,
                'train_dataloader.batch_size=2'], nproc=2)
    record = json.loads(probe.read_text())
    assert (record['world_size'], record['wrapper'], record['find_unused_parameters']) == (
        2, 'MMDistributedDataParallel', False)
    assert [r['iter'] for r in record['iters']] == [1, 2]
    for r in record['iters']:
        assert len(r['alphas']) == 23 and r['rank_losses'][0] != r['rank_losses'][1]
        assert r['alpha_rank_diff'] == 0.0 and r['param_rank_diff'] == 0.0
    assert re.search(r'Iter\(val\) \[1/1\].*pascal_voc/mAP', proc.stdout + proc.stderr)  # 4 images, 2 ranks
    assert proc.stdout.count('train done: last validation pascal_voc/mAP') == 1


def test_the_process_group_is_closed_after_training(tmp_path):
    from tools.zoo import dist as zoo_dist

    torch.distributed.init_process_group('gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    assert torch.distributed.is_initialized()
    zoo_dist.close_process_group()
    assert not torch.distributed.is_initialized()
    zoo_dist.close_process_group()  # without a group: nothing to do


def test_launcher_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from tools import train
    from tools.data import make_tiny_cityscapes
    from tools.zoo.errors import run_main
    root = str(tmp_path / 'city')
    make_tiny_cityscapes.make_tiny_cityscapes(root, seed=0, per_city=(1, 1))
    roots = [f'{k}.dataset.data_root={root}' for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    argv = [SEG_TINY, '--work-dir', str(tmp_path / 'w'), '--cfg-options', *roots]
    for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    assert run_main(train.main, [*argv, '--launcher', 'pytorch']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: --launcher pytorch: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set; start the '
                   'processes with torchrun (python -m torch.distributed.run --nproc_per_node=N tools/train.py ...)']
    if torch.cuda.is_available():
        return
    for key, value in dict(RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT='1').items():
        monkeypatch.setenv(key, value)
    # torch's SyncBatchNorm raises "SyncBatchNorm expected input tensor to be on GPU" in the first forward
    assert run_main(train.main, [*argv, 'sync_bn=torch', '--launcher', 'pytorch']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: sync_bn=torch needs CUDA GPUs'), err
    # --launcher slurm runs on CPU nodes too (gloo); outside srun it names the missing variables, for both engines
    for key in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_JOB_NODELIST'):
        monkeypatch.delenv(key, raising=False)
    slurm_error = ('error: --launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_NODELIST not set; start the '
                   'processes with srun')
    assert run_main(train.main, [*argv, '--launcher', 'slurm']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(slurm_error), err
    assert run_main(train.main, [NMT_TINY, '--work-dir', str(tmp_path / 't'), '--launcher', 'slurm']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(slurm_error), err
    assert not torch.distributed.is_initialized()  # nothing was started


# --- fairseq: translation on 2 processes --------------------------------------------------------------
def fairseq_losses(work_dir):
    log = (work_dir / 'fairseq_train.log').read_text()
    return [float(x) for x in re.findall(r'\| train_inner \|.* loss=([0-9.]+), nll_loss', log)]


def test_translation_on_two_processes_matches_one_process_with_update_freq_2(tmp_path_factory):
    pytest.importorskip('fairseq')
    from tools.data import make_tiny_en_de, prepare_wmt14_en_de
    out = tmp_path_factory.mktemp('dist_en_de')
    make_tiny_en_de.make_corpus(out / 'raw', n_train=300, n_valid=20, n_test=10, seed=3)
    prepare_wmt14_en_de.prepare(out, out / 'raw', bpe_tokens=200, workers=1, download=False)
    # fairseq shards the batches (of max_tokens each) over the processes: 2 processes x update_freq 1 take
    # the same 2 batches per update as 1 process x update_freq 2. Dropout 0: each process draws its own
    # dropout masks (measured with the config's dropout 0.1: losses 0.02 and alphas 3e-4 apart after 8
    # updates, statistically the same run).
    options = [f'fairseq.data={out / "bin"}', 'fairseq.train.max_update=8', 'fairseq.train.max_tokens=512',
               'fairseq.train.warmup_updates=4', 'fairseq.train.log_interval=1', 'fairseq.train.dropout=0.0',
               'fairseq.train.disable_validation=True']
    runs = {}
    for nproc, update_freq in ((1, 2), (2, 1)):
        work_dir, probe = out / f'work_{nproc}', out / f'probe_{nproc}.json'
        run([NMT_TINY, '--work-dir', str(work_dir), '--seed', '0', '--cfg-options', *options,
             f'fairseq.train.update_freq={update_freq}'], nproc=nproc, probe=probe)
        checkpoint = torch.load(work_dir / 'checkpoint_last.pt', map_location='cpu', weights_only=False)
        runs[nproc] = fairseq_losses(work_dir), checkpoint, json.loads(probe.read_text())
    command = (out / 'work_2' / 'fairseq_train.sh').read_text()
    assert '--distributed-backend gloo --ddp-backend legacy_ddp' in command  # what tools/train.py adds on CPU
    log = (out / 'work_2' / 'fairseq_train.log').read_text()
    assert 'distributed init (rank 0): env://' in log and 'initialized host' in log
    (losses1, ckpt1, probe1), (losses2, ckpt2, probe2) = runs[1], runs[2]
    assert len(losses1) == len(losses2) == 8 and losses1[-1] < losses1[0] - 1
    # fairseq logs 3 decimals; measured: equal to the last digit
    assert losses2 == pytest.approx(losses1, abs=1.5e-3)
    assert (probe1['world_size'], probe2['world_size']) == (1, 2)
    assert [u['update'] for u in probe1['updates']] == [u['update'] for u in probe2['updates']] == list(range(1, 9))
    for u1, u2 in zip(probe1['updates'], probe2['updates']):
        assert u2['alpha_rank_diff'] == 0.0 and u2['param_rank_diff'] == 0.0  # the ranks' replicas are equal
        assert u2['alphas'] == pytest.approx(u1['alphas'], abs=1e-6)  # measured: bitwise equal, see below
    assert ckpt1['optimizer_history'][-1]['num_updates'] == ckpt2['optimizer_history'][-1]['num_updates'] == 8
    m1, m2 = ckpt1['model'], ckpt2['model']
    alphas = [k for k in m1 if k.endswith('activation_fn.alpha')]
    assert len(alphas) == 4 and all(m1[k].item() != 0.15 for k in alphas)  # 2+2 layers, all trained
    # Measured: bitwise equal (the 2 batches' gradients are summed either way, a + b, then scaled by
    # powers of two); a tolerance of 1e-6 for other CPUs' kernels.
    trained = [k for k in m1 if not k.endswith('_float_tensor')]
    worst = max((m1[k].double() - m2[k].double()).abs().max().item() for k in trained)
    assert worst <= 1e-6, worst


# --- AMP ----------------------------------------------------------------------------------------------
def leaky_stack():
    """``sau_stack`` with LeakyReLU(0.15), the kink SAU smooths over a width of 1/n = 5e-5."""
    torch.manual_seed(0)
    act = dict(type='LeakyReLU', negative_slope=0.15)
    return torch.nn.Sequential(
        ConvModule(3, 8, 3, padding=1, act_cfg=act),
        ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='GN', num_groups=2), act_cfg=act),
        torch.nn.Conv2d(8, 4, 1))


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_sau_under_cpu_autocast_has_finite_gradients_close_to_float32(dtype):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def step(make_model, autocast_dtype):
        model, xi = make_model(), x.clone().requires_grad_()
        with torch.autocast('cpu', dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            y = model(xi)
            loss = y.float().square().mean()
        loss.backward()
        return y.dtype, loss.item(), xi.grad, alpha_grads(model)

    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    ref_dtype, ref_loss, ref_gx, ref_ga = step(sau_stack, None)
    out_dtype, loss, gx, ga = step(sau_stack, dtype)
    assert (ref_dtype, out_dtype) == (torch.float32, dtype)  # the convolutions ran in the autocast dtype
    assert all(torch.isfinite(g).all() for g in (gx, *ga.values()))
    assert all(g.dtype == torch.float32 for g in ga.values())  # alpha stays an fp32 master parameter
    # Measured (bf16 / fp16): loss 1.6e-4 / 2.1e-4 relative; grad alpha 7.2e-3 / 2.5e-3 relative L2; grad x
    # 5.2e-2 / 2.2e-2, which is the network's error, not SAU's: a pre-activation that rounds across 0
    # switches the slope of the kink, and the same network with LeakyReLU(0.15) measures 4.8e-2 / 2.5e-2.
    assert loss == pytest.approx(ref_loss, rel=2e-3)
    for name in ref_ga:
        assert rel(ga[name], ref_ga[name]) < 0.03, name
    _, _, leaky_gx_ref, _ = step(leaky_stack, None)
    _, _, leaky_gx, _ = step(leaky_stack, dtype)
    assert rel(gx, ref_gx) < 1.5 * rel(leaky_gx, leaky_gx_ref) + 0.01


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message given without a GPU')
@pytest.mark.parametrize('config', [SEG_TINY, NMT_TINY])
def test_amp_without_a_gpu_is_one_error_line(config, tmp_path, capsys):
    from tools import train
    from tools.zoo.errors import run_main
    # MMEngine's AmpOptimWrapper asserts a GPU; fairseq's --amp autocasts CUDA only (on CPU it would run
    # in float32 with a loss scaler, silently)
    assert run_main(train.main, [config, '--amp', '--work-dir', str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: --amp needs a CUDA GPU'), err


# --- gradient accumulation ----------------------------------------------------------------------------
def test_accumulating_two_half_batches_gives_the_full_batch_update():
    from mmengine.optim import OptimWrapper
    data = torch.Generator().manual_seed(2)
    x, target = torch.randn(8, 3, 16, 16, generator=data), torch.randn(8, 4, 16, 16, generator=data)

    def train(accumulative_counts, steps=2):
        model = sau_stack()
        wrapper = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-2), accumulative_counts=accumulative_counts)
        wrapper.initialize_count_status(model, 0, steps * accumulative_counts)
        grads = []  # the alpha gradients each optimizer step sees
        wrapper.optimizer.register_step_pre_hook(lambda *_: grads.append(alpha_grads(model)))
        size = len(x) // accumulative_counts
        for _ in range(steps):
            for i in range(accumulative_counts):
                part = slice(i * size, (i + 1) * size)
                wrapper.update_params((model(x[part]) - target[part]).square().mean())
        return grads, dict(model.named_parameters())

    full_grads, full = train(1)
    half_grads, half = train(2)
    assert len(full_grads) == len(half_grads) == 2  # one optimizer step per 2 half batches
    # GroupNorm: no batch statistics, so the mean of the two halves' gradients is the full batch's up to
    # float32 rounding (measured 2.8e-9 on the alpha gradients, 8.8e-8 on the weights after 2 Adam steps;
    # with BN each half would be normalised by its own statistics and MMEngine warns)
    for f, h in zip(full_grads, half_grads):
        for name in f:
            assert h[name] == pytest.approx(f[name], abs=1e-6, rel=1e-5), name
    for name in full:
        torch.testing.assert_close(half[name], full[name], atol=1e-5, rtol=1e-5)
    assert full['0.activate.alpha'].item() != 0.15


# --- torch.compile ------------------------------------------------------------------------------------
def test_torch_compile_of_sau_convmodules_matches_eager():
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def step(model, forward):
        xi = x.clone().requires_grad_()
        y = forward(xi)
        y.square().mean().backward()
        return y.detach(), xi.grad, alpha_grads(model)

    eager = sau_stack()
    y_ref, gx_ref, ga_ref = step(eager, eager)
    model = sau_stack()
    compiled = torch.compile(model, backend='inductor', fullgraph=True)  # SAU is one op: no graph break
    y, gx, ga = step(model, compiled)
    # measured: output 2.4e-7, grad x 4.7e-10, grad alpha 1.1e-8 (inductor's fused kernels round differently)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gx_ref, atol=1e-6, rtol=1e-4)
    assert ga.keys() == ga_ref.keys() == {'0.activate.alpha', '1.activate.alpha'}
    for name in ga:
        assert ga[name].abs().sum() > 0
        torch.testing.assert_close(ga[name], ga_ref[name], atol=1e-6, rtol=1e-4)


TASK_MODELS = {'unet': (SEG_TINY, 'mmseg', (2, 3, 64, 128)), 'ssd300': (SSD_TINY, 'mmdet', (2, 3, 300, 300))}


def task_model_step(name, compile_model=False, autocast_dtype=None):
    """One forward ('tensor' mode) + backward of a tiny task model built from its SAU config; returns the
    outputs and the alpha gradients."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.utils import import_modules_from_strings
    from torch.utils._pytree import tree_leaves
    config, scope, shape = TASK_MODELS[name]
    cfg = Config.fromfile(config)
    import_modules_from_strings(**cfg.custom_imports)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    with DefaultScope.overwrite_default_scope(scope):
        init_default_scope(scope)
        torch.manual_seed(0)
        model = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS.build(cfg.model)
        model.init_weights()
        model.train()
        forward = lambda t: model(t, mode='tensor')  # noqa: E731
        if compile_model:
            forward = torch.compile(forward, backend='aot_eager', fullgraph=True)
        with torch.autocast('cpu', dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            out = tree_leaves(forward(x))
        sum(o.float().square().mean() for o in out).backward()
    return out, {n: p.grad for n, p in model.named_parameters() if n.endswith('activate.alpha') and p.grad is not None}


@pytest.mark.parametrize('name', list(TASK_MODELS))
def test_torch_compile_of_the_task_models_captures_one_graph(name):
    """The tiny task models compile with fullgraph=True (no graph break from SAU or from ConvModule asking it
    to run in place) and train as in eager mode. aot_eager keeps the test fast (inductor takes ~50 s on the
    U-Net); inductor's numerics are checked on SAU ConvModules above."""
    eager_out, eager_grads = task_model_step(name)
    out, grads = task_model_step(name, compile_model=True)
    assert len(grads) >= 15 and grads.keys() == eager_grads.keys()
    for o, e in zip(out, eager_out):  # measured: 4.4e-6 (U-Net), BN decomposed by AOTAutograd
        torch.testing.assert_close(o, e, atol=1e-4, rtol=1e-4)
    for key in grads:
        assert grads[key].abs().sum() > 0
        torch.testing.assert_close(grads[key], eager_grads[key], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize('name', list(TASK_MODELS))
def test_task_models_under_bf16_autocast_have_finite_alpha_gradients(name):
    ref_out, ref_grads = task_model_step(name)
    out, grads = task_model_step(name, autocast_dtype=torch.bfloat16)
    assert out[0].dtype == torch.bfloat16 and grads.keys() == ref_grads.keys()
    ref = torch.cat([g.reshape(-1) for g in ref_grads.values()])
    got = torch.cat([grads[k].reshape(-1) for k in ref_grads])
    assert torch.isfinite(got).all() and got.dtype == torch.float32
    # bf16 keeps 8 bits; through the layers of a freshly initialised network the alpha gradients move by
    # 3.6 % (U-Net) and 13 % (SSD) relative L2 but keep their direction (measured cosine 0.999 and 0.992)
    assert torch.nn.functional.cosine_similarity(got, ref, dim=0).item() > 0.97
