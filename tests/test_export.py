"""ONNX export (tools/export.py, sau_core/onnx.py): onnxruntime computes what PyTorch computes.

Bounds, for every float output: max |onnxruntime - PyTorch| <= RTOL * max |PyTorch| (RTOL = 1e-5, the
``tools/export.py --check`` bound; measured on the released tiny checkpoints: detection 1.1e-6, segmentation
1.3e-6, translation encoder 3.1e-7 and decoder 3.3e-7), and integer outputs (argmax, padding mask) equal. The op
itself is held to an element-wise bound, |error| <= 1e-5 * |y| + 1e-7 * max |y|, on inputs where its Gaussian term
matters (|x| ~ 1/n) and where it does not. With n = 20000 the Gaussian term adds at most (1-a)/(n*sqrt(2*pi)) =
1.7e-5 to an activation, which a whole network's outputs do not show above float32 noise (dropping it moves the
detector's outputs by about as much as rounding does); so the U-Net is also exported with every SAU at n = 1,
where the term shapes every activation, and an ONNX SAU without that term (``broken_sau``) must fail both that
bound (measured: 2.1 instead of 7e-7) and the op's.

Every graph is traced at batch 2 and run at batches 1 and 3 (dynamic batch size).
"""
import contextlib
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

onnxruntime = pytest.importorskip('onnxruntime')
onnxscript = pytest.importorskip('onnxscript')

import sau_core.onnx  # noqa: E402
from onnxscript import FLOAT, opset18 as op  # noqa: E402  (module level: onnxscript reads annotations here)
from sau_core import SAU, sau  # noqa: E402
from tools import export, infer  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_torch_thread')

RTOL = export.CHECK_RTOL
CHECKPOINTS = {
    'detection': ('detection/configs/ssd300-w0.125_sau_tinyvoc.py',
                  'checkpoints/ssd300-w0.125_sau_tinyvoc_20261123-9c46b26d.pth'),
    'segmentation': ('segmentation/configs/unet-w8_sau_tiny-cityscapes.py',
                     'checkpoints/unet-w8_sau_tiny-cityscapes_20261123-089ade5b.pth'),
    'translation': ('translation/configs/transformer_tiny_sau.py',
                    'checkpoints/transformer_tiny_sau_20261123-5a6d6c73.pth'),
}


@contextlib.contextmanager
def broken_sau():
    """sau_core.onnx with the Gaussian term of the standard form dropped (what the tests must catch)."""

    @onnxscript.script(sau_core.onnx._opset, default_opset=op)
    def SAUWithoutGaussian(x: FLOAT, alpha: FLOAT, n: FLOAT) -> FLOAT:
        one = op.CastLike(1.0, x)
        half = op.CastLike(0.5, x)
        return (one + alpha) * half * x + (one - alpha) * half * x * op.Erf(n * x * op.CastLike(0.70710678, x))

    original = sau_core.onnx.SAU
    sau_core.onnx.SAU = SAUWithoutGaussian
    try:
        yield
    finally:
        sau_core.onnx.SAU = original


def ort_run(path, inputs):
    session = export.ort_session(str(path))
    return session.run(None, {arg.name: t.numpy() for arg, t in zip(session.get_inputs(), inputs)})


def worst_errors(graph, path, batches=(1, 3)):
    """(max over batches and float outputs of max|ORT - PyTorch| / max|PyTorch|, largest share of differing
    elements of an integer output: argmax, padding mask)."""
    worst, differ = 0.0, 0.0
    for batch in batches:
        for name, error, scale in export.compare(graph, str(path), batch=batch, seed=batch):
            if scale:
                worst = max(worst, error / scale)
            else:
                differ = max(differ, error)
    return worst, differ


# --- the op ------------------------------------------------------------------------------------
class Net(torch.nn.Module):
    def __init__(self, channels, n, zero_centred, alpha):
        super().__init__()
        self.act = SAU(alpha=alpha, n=n, num_parameters=channels, zero_centred=zero_centred)
        if channels > 1:  # distinct alphas, so that a wrong broadcast shows
            with torch.no_grad():
                self.act.alpha.copy_(torch.linspace(0.02, 0.9, channels))

    def forward(self, x):
        return self.act(x)


def op_inputs(batch, shape, n, seed):
    """Half the elements at |x| ~ 1/n (the Gaussian term matters), half at |x| ~ 1."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *shape, generator=generator)
    small = torch.rand(x.shape, generator=generator) < 0.5
    return torch.where(small, x * (2.0 / n), x * 2.0)


def op_violation(net, path, shape, n, dtype=torch.float32, rtol=1e-5, ulp=1e-7):
    """max over batches 1 and 3 of |ORT - PyTorch| / (rtol * |y| + ulp * max |y|), element-wise, y PyTorch's
    output (<= 1 passes; ``ulp * max|y|``: about one float32 rounding step of the largest output)."""
    worst = 0.0
    for batch in (1, 3):
        x = op_inputs(batch, shape, n, seed=batch).to(dtype)
        with torch.no_grad():
            want = net(x).double().numpy()
        (got,) = ort_run(path, (x,))
        assert got.dtype == x.numpy().dtype and got.shape == want.shape
        bound = rtol * np.abs(want) + ulp * np.abs(want).max()
        worst = max(worst, float((np.abs(got.astype(np.float64) - want) / bound).max()))
    return worst


def export_op(net, shape, path, dtype=torch.float32):
    x = op_inputs(2, shape, 1.0, seed=0).to(dtype)
    program = torch.onnx.export(net.eval(), (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim('batch')},),
                                custom_translation_table=sau_core.onnx.translation_table(), verbose=False)
    program.save(str(path))
    return path


@pytest.mark.parametrize('zero_centred', [False, True], ids=['standard', 'zero_centred'])
@pytest.mark.parametrize('channels,shape', [(1, (7, 3)), (6, (6, 5, 4)), (6, (6,))],
                         ids=['per_layer_3d', 'per_channel_4d', 'per_channel_2d'])
@pytest.mark.parametrize('n', [20000.0, 3.0])
def test_sau_onnx_function_matches_the_op(tmp_path, zero_centred, channels, shape, n):
    import onnx
    net = Net(channels, n, zero_centred, alpha=0.15)
    path = export_op(net, shape, tmp_path / 'sau.onnx')
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {'Exp', 'Erf'} <= ops, f'the graph should hold the SAU math, got {sorted(ops)}'
    assert op_violation(net, path, shape, n) <= 1.0
    with torch.no_grad():  # and the fused op is what the reference formula says
        x = op_inputs(3, shape, n, seed=3).double()
        torch.testing.assert_close(sau(x, net.act.alpha.double(), n, zero_centred),
                                   sau_core.sau_reference(x, net.act.alpha.double(), n, zero_centred))


def test_sau_onnx_fp16_computes_in_fp32(tmp_path):
    net = Net(6, 20000.0, False, alpha=0.15)
    path = export_op(net, (6, 4), tmp_path / 'sau16.onnx', dtype=torch.float16)
    assert op_violation(net, path, (6, 4), 20000.0, dtype=torch.float16, rtol=1e-3, ulp=1e-3) <= 1.0


@pytest.mark.parametrize('n', [20000.0, 3.0])
def test_sau_onnx_without_gaussian_term_fails_the_bound(tmp_path, n):
    net = Net(6, n, False, alpha=0.15)
    with broken_sau():
        path = export_op(net, (6, 5, 4), tmp_path / 'broken.onnx')
    assert op_violation(net, path, (6, 5, 4), n) > 10


def test_onnx_module_needs_no_onnxscript_for_sau_core():
    import subprocess
    code = ('import sys, sau_core, sau_core.mm; import sau_core.op; '
            'assert "onnxscript" not in sys.modules and "sau_core.onnx" not in sys.modules')
    subprocess.run([sys.executable, '-c', code], check=True, cwd=REPO)


# --- the tasks ---------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def loaded():
    """The released tiny checkpoints, loaded once (translation needs the tiny En-De data's dictionaries)."""
    cache = {}

    def get(task):
        if task not in cache:
            config, checkpoint = CHECKPOINTS[task]
            if task == 'translation':
                _ensure_tiny_en_de()
            cache[task] = infer.load_model(osp.join(REPO, config), osp.join(REPO, checkpoint))
        return cache[task]
    old = os.getcwd()
    os.chdir(REPO)  # the configs' data paths are relative to the repository root
    try:
        yield get
    finally:
        os.chdir(old)


def _ensure_tiny_en_de():
    import subprocess
    if not osp.isfile(osp.join(REPO, 'data/tiny_en_de/bin/dict.de.txt')):
        for command in (['tools/data/make_tiny_en_de.py', 'data/tiny_en_de/raw'],
                        ['tools/data/prepare_wmt14_en_de.py', '--out', 'data/tiny_en_de', '--raw-dir',
                         'data/tiny_en_de/raw', '--bpe-tokens', '500']):
            subprocess.run([sys.executable, *command], check=True, cwd=REPO, capture_output=True)


@contextlib.contextmanager
def every_sau_n(model, n):
    """Every SAU of ``model`` (a module or fairseq's hub) at ``n`` for the duration."""
    saus = [m for m in model.modules() if isinstance(m, SAU)]
    assert saus, 'the model has no SAU'
    before = [m.n.clone() for m in saus]
    with torch.no_grad():
        for m in saus:
            m.n.fill_(n)
    try:
        yield model
    finally:
        with torch.no_grad():
            for m, value in zip(saus, before):
                m.n.copy_(value)


def export_all(graphs, folder, tag):
    return [export.export_graph(g, str(folder / f'{tag}{g.suffix}.onnx'), batch=2) for g in graphs]


@pytest.fixture(scope='module')
def exported(loaded, tmp_path_factory):
    """task -> [(graph, ONNX path)] of the released checkpoint, traced at batch 2 (once per module)."""
    cache = {}

    def get(task):
        if task not in cache:
            graphs = export.graphs_for(loaded(task))
            cache[task] = list(zip(graphs, export_all(graphs, tmp_path_factory.mktemp(task), task)))
        return cache[task]
    return get


@pytest.mark.parametrize('task', ['detection', 'segmentation', 'translation'])
def test_released_checkpoint_exports_faithfully(exported, task):
    for graph, path in exported(task):
        error, differ = worst_errors(graph, path)
        print(f'{task}{graph.suffix}: max abs error / max |output| = {error:.2e}')
        assert error <= RTOL, f'{task}{graph.suffix}: {error:.2e} > {RTOL}'
        assert differ == 0


def test_gaussian_term_in_a_task_graph(loaded, tmp_path):
    """With every SAU at n = 1 (the Gaussian term shapes each activation) the exported U-Net still matches
    PyTorch, and without the term it does not."""
    model = loaded('segmentation')
    (graph,) = export.graphs_for(model)
    with every_sau_n(model.model, 1.0):
        (path,) = export_all([graph], tmp_path, 'n1')
        error, differ = worst_errors(graph, path)
        print(f'segmentation, n = 1: {error:.2e}')
        assert error <= RTOL and differ == 0
        with broken_sau():
            (path,) = export_all([graph], tmp_path, 'broken')
        error, _ = worst_errors(graph, path, batches=(3,))
        print(f'segmentation, n = 1, SAU without its Gaussian term: {error:.2e}')
        assert error > 10 * RTOL


def bgr_batch(paths, size=None):
    """Images as the test pipelines load them (mmcv: BGR, HWC uint8; resized with mmcv's bilinear), stacked
    as the ONNX input (N, 3, H, W) float32."""
    import mmcv
    images = [mmcv.imread(str(p)) for p in paths]
    if size:
        images = [mmcv.imresize(im, (size[1], size[0])) for im in images]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def test_detection_onnx_on_an_image_equals_det_inferencer(exported, tmp_path):
    """From a JPEG to detections: the ONNX graph (resize outside, then mmdet's predict_by_feat with the resize
    factors) gives MMDetection's DetInferencer's boxes, scores and labels."""
    import random

    from mmdet.apis import DetInferencer
    from tools.data import make_tiny_voc
    ((graph, path),) = exported('detection')
    files = []
    for seed in (72, 189):
        files.append(tmp_path / f'{seed}.jpg')
        make_tiny_voc.make_image(random.Random(seed))[0].save(files[-1], quality=92)
    inferencer = DetInferencer(model=CHECKPOINTS['detection'][0], weights=CHECKPOINTS['detection'][1],
                               device='cpu', show_progress=False)
    head = inferencer.model.bbox_head
    for file in files:
        width, height = Image.open(file).size
        outputs = [torch.from_numpy(o) for o in ort_run(path, (bgr_batch([file], (300, 300)),))]
        meta = dict(img_shape=(300, 300), ori_shape=(height, width), scale_factor=(300 / width, 300 / height))
        levels = len(outputs) // 2
        with torch.no_grad():
            (mine,) = head.predict_by_feat(outputs[:levels], outputs[levels:], batch_img_metas=[meta], rescale=True)
        theirs = inferencer(str(file))['predictions'][0]
        assert len(mine) == len(theirs['scores']) > 0
        assert mine.labels.tolist() == theirs['labels']
        np.testing.assert_allclose(mine.scores.numpy(), theirs['scores'], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mine.bboxes.numpy(), theirs['bboxes'], atol=0.05)


def test_segmentation_onnx_on_an_image_equals_mmseg_inferencer(exported, tmp_path, capsys):
    """From a PNG to train ids: the ONNX graph's seg_map is the label map of tools/infer.py (MMSegInferencer)."""
    from tools.data import make_tiny_cityscapes
    ((graph, path),) = exported('segmentation')
    files = []
    for seed in (3, 4, 5):
        files.append(tmp_path / f'scene{seed}.png')
        Image.fromarray(make_tiny_cityscapes.make_scene(np.random.default_rng(seed), 64, 128)[0]).save(files[-1])
    assert infer.main([*CHECKPOINTS['segmentation'], *map(str, files), '--out', str(tmp_path / 'out')]) == 0
    _, seg_map = ort_run(path, (bgr_batch(files),))
    for file, mine in zip(files, seg_map):
        theirs = np.asarray(Image.open(tmp_path / 'out' / 'pred' / f'{file.stem}_labelTrainIds.png'))
        assert (mine == theirs).mean() > 0.999


def test_translation_wrappers_equal_fairseqs_forward(loaded, exported):
    """The ONNX encoder + decoder give fairseq's own ``model(src, lengths, prev)`` logits, with padding in
    the batch and without (fairseq's forward skips the masks then)."""
    hub = loaded('translation').model
    model = hub.models[0]
    (_, encoder_path), (_, decoder_path) = exported('translation')
    src_dict = hub.src_dict
    sentences = ['The cow has not read the car .', 'A dog shows the tired doctor the tired bird .',
                 'The famous mouse has visited the newspaper .']
    for batch in (sentences, sentences[:1]):  # padded batch of 3; one sentence: no padding at all
        lines = [hub.binarize(hub.apply_bpe(s)) for s in batch]
        length = max(len(t) for t in lines)
        src = torch.full((len(lines), length), src_dict.pad(), dtype=torch.long)
        for i, t in enumerate(lines):
            src[i, length - len(t):] = t  # left-padded, as fairseq batches sources
        prev = torch.randint(src_dict.nspecial, len(src_dict), (len(lines), 6), generator=torch.Generator().manual_seed(0))
        prev[:, 0] = src_dict.eos()
        enc_out, enc_mask = ort_run(encoder_path, (src,))
        (logits,) = ort_run(decoder_path, (prev, torch.from_numpy(enc_out), torch.from_numpy(enc_mask)))
        with torch.no_grad():
            want, _ = model(src, src.ne(src_dict.pad()).sum(1), prev)
        scale = float(want.abs().max())
        assert float(np.abs(logits - want.numpy()).max()) <= RTOL * scale
        assert (logits.argmax(-1) == want.argmax(-1).numpy()).all()


def test_translation_onnx_greedy_decoding_equals_fairseq_beam_1(loaded, exported):
    """A decoding loop on the two ONNX graphs (the decoder rerun on the growing prefix, from EOS alone) picks
    the tokens fairseq's SequenceGenerator picks with beam 1 (which forbids pad, and EOS at the first step)."""
    hub = loaded('translation').model
    (_, encoder_path), (_, decoder_path) = exported('translation')
    encoder, decoder = export.ort_session(encoder_path), export.ort_session(decoder_path)
    tgt = hub.tgt_dict
    with open(osp.join(REPO, 'data/tiny_en_de/tok/test.en'), encoding='utf-8') as f:
        sentences = f.read().splitlines()[:6]
    for sentence in sentences:
        src = hub.binarize(hub.apply_bpe(sentence))
        enc_out, enc_mask = encoder.run(None, {'src_tokens': src[None].numpy()})
        tokens = [tgt.eos()]
        while len(tokens) <= 200:
            (logits,) = decoder.run(None, {'prev_output_tokens': np.array([tokens]), 'encoder_out': enc_out,
                                           'encoder_padding_mask': enc_mask})
            scores = logits[0, -1]
            scores[tgt.pad()] = -np.inf
            if len(tokens) == 1:
                scores[tgt.eos()] = -np.inf
            tokens.append(int(scores.argmax()))
            if tokens[-1] == tgt.eos():
                break
        expected = hub.generate([src], beam=1)[0][0]['tokens'].tolist()
        assert tokens[1:] == expected, sentence


def test_export_cli_writes_checked_files(tmp_path, capsys):
    config, checkpoint = CHECKPOINTS['segmentation']
    out = tmp_path / 'unet.onnx'
    assert export.main([osp.join(REPO, config), osp.join(REPO, checkpoint), '--out', str(out)]) == 0
    assert torch.is_grad_enabled()  # the tool's no_grad ends with it: later code in this process still trains
    printed = capsys.readouterr().out
    assert f'wrote {out}' in printed and 'check seg_logits: max abs error' in printed
    import onnx
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta['sau_zoo.task'] == 'segmentation' and '"road"' in meta['sau_zoo.classes']
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ['batch', 3, 64, 128]


def test_export_cli_bad_input_is_one_error_line(tmp_path, capsys):
    config, _ = CHECKPOINTS['segmentation']
    _, other = CHECKPOINTS['detection']
    status = infer.run_main(export.main, [osp.join(REPO, config), osp.join(REPO, other), '--out',
                                          str(tmp_path / 'x.onnx'), '--no-check'])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and err[0].startswith('error: ') and 'does not fit' in err[0]
