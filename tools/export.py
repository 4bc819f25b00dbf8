#!/usr/bin/env python
"""Export a zoo checkpoint to ONNX with ``torch.onnx.export(..., dynamo=True)``; SAU becomes ONNX math.

    python tools/export.py CONFIG CHECKPOINT --out model.onnx [--batch N] [--no-check]

SAU (``torch.ops.sau_core.sau``) is translated by ``sau_core.onnx`` (an onnxscript function of Exp and Erf), so
the graph holds the formula and runs on any ONNX runtime. Every file has a dynamic batch size and carries what
a runtime needs to use it in its ``metadata_props`` (``sau_zoo.*``: preprocessing, class names, special
token ids). After writing, the export is checked: onnxruntime on a batch of another size than the one traced
must match PyTorch (the max abs error is printed; ``--no-check`` skips it).

What is exported, per task:

- detection (MMDetection single-stage, SSD300): ``image`` (N, 3, H, W) float32, BGR 0..255 after the test
  pipeline's resize (H, W fixed to the config's test scale, 300x300: SSD's anchors are laid out for it) -> the data
  preprocessor's normalisation, backbone, neck and head -> ``cls_score_<level>`` and ``bbox_pred_<level>`` for
  each feature level (the raw head outputs, as ``model(x, mode='tensor')`` gives them). Anchor decoding and
  NMS are left to the caller (``bbox_head.predict_by_feat`` in mmdet; a test checks that it gives the same
  detections from onnxruntime's outputs as from PyTorch's), because mmdet's NMS is an mmcv op.
- segmentation (MMSegmentation EncoderDecoder, U-Net): ``image`` (N, 3, H, W) float32, BGR 0..255, H and W
  fixed (``--input-size``; default the config's crop, ``data_preprocessor.size``: the U-Net's decoder
  upsamples to sizes that tracing records as constants) -> normalisation, backbone, decode head ->
  ``seg_logits`` (N, classes, H, W) and ``seg_map`` (N, H, W) int64 train ids (argmax), which is what
  ``mode='whole'`` inference gives for an image of that size.
- translation (fairseq Transformer): two files, as encoder-decoder models are commonly exported (Hugging Face
  Optimum's ``encoder_model.onnx`` / ``decoder_model.onnx``): ``<out>_encoder.onnx``: ``src_tokens`` (N, S)
  int64, left-padded as fairseq batches them -> ``encoder_out`` (S, N, C) and ``encoder_padding_mask`` (N, S);
  ``<out>_decoder.onnx``: ``prev_output_tokens`` (N, T) (EOS first, as fairseq feeds the decoder),
  ``encoder_out``, ``encoder_padding_mask`` -> ``logits`` (N, T, vocabulary) for every position. The decoder
  recomputes the whole prefix at each step (no key/value cache): fairseq keeps that cache in a dict of
  module-keyed ``incremental_state`` that it mutates in place, which an exported graph cannot hold; the
  prefix form gives the same logits. Beam search, BPE and Moses stay outside the graph (as in fairseq).
  fairseq's forward branches on ``mask.any()`` (skip the padding mask when there is no padding), which
  ``torch.export`` cannot trace; the export wrappers below call the same fairseq modules with the mask always
  applied, which gives the same values (a test compares them with fairseq's own forward, with and without
  padding).
"""
import argparse
import json
import logging
import os
import os.path as osp
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

from tools import infer  # noqa: E402  (the model loading and checks are shared with tools/infer.py)
from tools.zoo.errors import quieted  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

#: ORT vs PyTorch bounds used by ``--check`` (and the tests): max abs error relative to max |PyTorch output|
CHECK_RTOL = 1e-5


# --- wrappers: what each graph computes ----------------------------------------------------------
class _Normalise(nn.Module):
    """The MMEngine data preprocessor's per-image normalisation (channel flip, mean, std) as graph ops."""

    def __init__(self, preprocessor):
        super().__init__()
        # MMEngine's ImgDataPreprocessor (mmdet) names the flag _channel_conversion, mmseg's SegDataPreProcessor
        # channel_conversion
        self.flip = bool(getattr(preprocessor, '_channel_conversion', getattr(preprocessor, 'channel_conversion',
                                                                             False)))
        enabled = getattr(preprocessor, '_enable_normalize', False)
        self.register_buffer('mean', preprocessor.mean.detach().clone() if enabled else torch.zeros(3, 1, 1))
        self.register_buffer('std', preprocessor.std.detach().clone() if enabled else torch.ones(3, 1, 1))

    def forward(self, image):
        if self.flip:
            image = image.flip(1)
        return (image - self.mean) / self.std

    def describe(self):
        return dict(input='BGR' if self.flip else 'RGB', mean=self.mean.flatten().tolist(),
                    std=self.std.flatten().tolist(), order='the mean and std apply after the channel flip'
                    if self.flip else 'no channel flip')


class DetectorForExport(nn.Module):
    """image -> normalisation -> ``detector._forward`` -> (cls_score per level..., bbox_pred per level...)."""

    def __init__(self, detector):
        super().__init__()
        self.normalise = _Normalise(detector.data_preprocessor)
        self.detector = detector

    def forward(self, image):
        cls_scores, bbox_preds = self.detector._forward(self.normalise(image))
        return tuple(cls_scores) + tuple(bbox_preds)


class SegmentorForExport(nn.Module):
    """image -> normalisation -> ``segmentor._forward`` (backbone + decode head) -> (seg_logits, seg_map)."""

    def __init__(self, segmentor):
        super().__init__()
        self.normalise = _Normalise(segmentor.data_preprocessor)
        self.segmentor = segmentor

    def forward(self, image):
        logits = self.segmentor._forward(self.normalise(image))
        if logits.shape[-2:] != image.shape[-2:]:  # a head at a lower stride: mmseg resizes, bilinear
            logits = nn.functional.interpolate(logits, size=image.shape[-2:], mode='bilinear',
                                               align_corners=self.segmentor.align_corners)
        return logits, logits.argmax(dim=1)


class EncoderForExport(nn.Module):
    """fairseq ``TransformerEncoder.forward_scriptable`` with the padding mask always applied.

    fairseq multiplies the embeddings by ``1 - mask`` and passes the mask to the layers only ``if
    mask.any()``: without padding both are no-ops, so applying them always gives the same values, in a graph
    ``torch.export`` can trace. The layers, embeddings and layer norm are fairseq's own modules.
    """

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, src_tokens):
        encoder = self.encoder
        padding_mask = src_tokens.eq(encoder.padding_idx)
        x, _ = encoder.forward_embedding(src_tokens)
        x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        x = x.transpose(0, 1)  # B x T x C -> T x B x C
        for layer in encoder.layers:
            x = layer(x, encoder_padding_mask=padding_mask)
        if encoder.layer_norm is not None:
            x = encoder.layer_norm(x)
        return x, padding_mask


class DecoderForExport(nn.Module):
    """fairseq ``TransformerDecoder.forward`` without incremental state: all positions' logits at once.

    As ``extract_features_scriptable`` with the self-attention padding mask always passed (fairseq passes it
    only ``if tokens.eq(pad).any()``; an all-False mask changes nothing) and the causal mask built for the
    input's length (fairseq's ``buffered_future_mask``, without the buffer).
    """

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, prev_output_tokens, encoder_out, encoder_padding_mask):
        decoder = self.decoder
        positions = decoder.embed_positions(prev_output_tokens) if decoder.embed_positions is not None else None
        x = decoder.embed_scale * decoder.embed_tokens(prev_output_tokens)
        if decoder.project_in_dim is not None:
            x = decoder.project_in_dim(x)
        if positions is not None:
            x = x + positions
        if decoder.layernorm_embedding is not None:
            x = decoder.layernorm_embedding(x)
        x = x.transpose(0, 1)  # B x T x C -> T x B x C
        self_attn_padding_mask = prev_output_tokens.eq(decoder.padding_idx)
        length = x.size(0)
        future_mask = torch.triu(torch.full((length, length), float('-inf'), dtype=x.dtype, device=x.device), 1)
        for layer in decoder.layers:
            x, _, _ = layer(x, encoder_out, encoder_padding_mask, None, self_attn_mask=future_mask,
                            self_attn_padding_mask=self_attn_padding_mask, need_attn=False, need_head_weights=False)
        if decoder.layer_norm is not None:
            x = decoder.layer_norm(x)
        x = x.transpose(0, 1)
        if decoder.project_out_dim is not None:
            x = decoder.project_out_dim(x)
        return decoder.output_layer(x)


# --- what to export ------------------------------------------------------------------------------
class Graph:
    """One ONNX file to write: the module, example inputs (at ``batch``), names, dynamic axes, metadata."""

    def __init__(self, suffix, module, make_inputs, input_names, output_names, dynamic_shapes, metadata,
                 strict=False):
        self.strict = strict  # trace with torch.export's strict (TorchDynamo) mode instead of non-strict
        self.suffix = suffix  # '' for the single file of a task, '_encoder' / '_decoder' for translation
        self.module = module.eval()
        self.make_inputs = make_inputs  # batch -> tuple of tensors
        self.input_names = input_names
        self.output_names = output_names
        self.dynamic_shapes = dynamic_shapes
        self.metadata = metadata


def _batch_dim():
    return torch.export.Dim('batch', min=1, max=1024)


def detection_graphs(detector, cfg, size=None):
    """The one graph of an MMDetection single-stage detector (see the module docstring)."""
    height, width = size or _test_scale(cfg)
    module = DetectorForExport(detector)
    levels = len(detector.bbox_head.prior_generator.strides)
    names = [f'cls_score_{i}' for i in range(levels)] + [f'bbox_pred_{i}' for i in range(levels)]
    meta = dict(task='detection', input_size=[height, width], preprocessing=module.normalise.describe(),
                classes=list(detector.dataset_meta.get('classes', ())),
                postprocessing='anchor decoding and NMS: mmdet bbox_head.predict_by_feat(cls_scores, bbox_preds, '
                               'batch_img_metas, rescale=...) on these outputs')

    def make_inputs(batch, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return (torch.rand(batch, 3, height, width, generator=generator) * 255,)
    return [Graph('', module, make_inputs, ['image'], names, ({0: _batch_dim()},), meta)]


def segmentation_graphs(segmentor, cfg, size=None):
    """The one graph of an MMSegmentation EncoderDecoder (see the module docstring)."""
    height, width = size or _test_scale(cfg)
    module = SegmentorForExport(segmentor)
    meta = dict(task='segmentation', input_size=[height, width], preprocessing=module.normalise.describe(),
                classes=list(segmentor.dataset_meta.get('classes', ())),
                palette=[list(map(int, c)) for c in segmentor.dataset_meta.get('palette', ())])

    def make_inputs(batch, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return (torch.rand(batch, 3, height, width, generator=generator) * 255,)
    return [Graph('', module, make_inputs, ['image'], ['seg_logits', 'seg_map'], ({0: _batch_dim()},), meta)]


def translation_graphs(hub):
    """The encoder and decoder graphs of a fairseq Transformer loaded in its hub interface."""
    model = hub.models[0]
    src_dict, tgt_dict = hub.src_dict, hub.tgt_dict
    encoder, decoder = EncoderForExport(model.encoder), DecoderForExport(model.decoder)
    special = dict(pad=tgt_dict.pad(), eos=tgt_dict.eos(), bos=tgt_dict.bos(), unk=tgt_dict.unk())
    common = dict(task='translation', source_lang=hub.cfg.task.source_lang, target_lang=hub.cfg.task.target_lang,
                  special_tokens=special, source_vocabulary=len(src_dict), target_vocabulary=len(tgt_dict),
                  max_positions=list(hub.max_positions) if hub.max_positions else None,
                  decoding='fairseq SequenceGenerator (beam search) outside the graph; tokens are fairseq '
                           'dictionary ids of Moses-tokenised, BPE-split text (the data folder\'s dict.*.txt)')
    src_len = torch.export.Dim('src_len', min=2, max=1022)
    tgt_len = torch.export.Dim('tgt_len', min=2, max=1022)
    batch = _batch_dim()
    embed_dim = model.encoder.embed_tokens.embedding_dim

    def encoder_inputs(n, seed=0, length=7):
        return (_random_tokens(n, length, src_dict, seed, left_pad=True),)

    def decoder_inputs(n, seed=0, src=7, tgt=5):
        generator = torch.Generator().manual_seed(seed + 1)
        tokens = _random_tokens(n, src, src_dict, seed, left_pad=True)
        mask = tokens.eq(src_dict.pad())
        enc = torch.randn(src, n, embed_dim, generator=generator) * (~mask).T.unsqueeze(-1)
        prev = _random_tokens(n, tgt, tgt_dict, seed + 2, left_pad=False)
        prev[:, 0] = tgt_dict.eos()  # fairseq starts decoding from EOS
        return prev, enc, mask
    return [
        Graph('_encoder', encoder, encoder_inputs, ['src_tokens'], ['encoder_out', 'encoder_padding_mask'],
              ({0: batch, 1: src_len},), dict(common, graph='encoder'), strict=True),
        Graph('_decoder', decoder, decoder_inputs, ['prev_output_tokens', 'encoder_out', 'encoder_padding_mask'],
              ['logits'], ({0: batch, 1: tgt_len}, {0: src_len, 1: batch}, {0: batch, 1: src_len}),
              dict(common, graph='decoder'), strict=True),
    ]


def _random_tokens(batch, length, dictionary, seed, left_pad):
    """Token ids of ``batch`` sentences of random lengths up to ``length`` (one at full length), padded as
    fairseq pads them (source: left, target: right); no special symbols but the padding."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(dictionary.nspecial, len(dictionary), (batch, length), generator=generator)
    lengths = torch.randint(2, length + 1, (batch,), generator=generator)
    lengths[0] = length
    for i, n in enumerate(lengths.tolist()):
        if left_pad:
            tokens[i, :length - n] = dictionary.pad()
        else:
            tokens[i, n:] = dictionary.pad()
    return tokens


def _test_scale(cfg):
    """(H, W) the test pipeline resizes to (``Resize(scale=(W, H), keep_ratio=False)``); else the data
    preprocessor's ``size`` (mmseg) or 300x300 (SSD)."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.get('type') == 'Resize' and step.get('scale') and not step.get('keep_ratio', False):
            width, height = step['scale']
            return int(height), int(width)
    size = (cfg.model.get('data_preprocessor') or {}).get('size')
    if size:
        return int(size[0]), int(size[1])
    return 300, 300


# --- exporting -----------------------------------------------------------------------------------
def export_graph(graph, path, batch=2):
    """Trace ``graph`` at ``batch`` and write ``path`` (weights inside the file); returns ``path``."""
    import sau_core.onnx

    model, inputs, dynamic_shapes = graph.module, graph.make_inputs(batch), graph.dynamic_shapes
    if graph.strict:
        # fairseq's positional embeddings read the input's shape as a tensor (torch.onnx.operators.shape_as_tensor),
        # which only TorchDynamo traces; torch.onnx.export would try the non-strict mode first and fail
        model = torch.export.export(model, inputs, dynamic_shapes=dynamic_shapes, strict=True)
    program = torch.onnx.export(
        model, inputs, dynamo=True, dynamic_shapes=dynamic_shapes,
        input_names=graph.input_names, output_names=graph.output_names,
        custom_translation_table=sau_core.onnx.translation_table(), verbose=False)
    for key, value in graph.metadata.items():
        program.model.metadata_props[f'sau_zoo.{key}'] = value if isinstance(value, str) else json.dumps(value)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    program.save(path, external_data=False)
    return path


def quiet_exporter():
    """The exporter's passes log every step at INFO (fairseq's import sets the root logger to INFO); for the
    block this returns, the caller's settings come back after."""
    return quieted({'onnx_ir': logging.WARNING,
                    'onnxscript': logging.ERROR},  # 'Skipping constant folding for op Split ...'
                   [dict(message='.*side effects happened in the model.forward'),
                    dict(message='.*will not be used, since it shares the same shape constraints'),
                    dict(message='Support for mismatched key_padding_mask and attn_mask')])


def ort_session(path):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def compare(graph, path, batch=3, seed=1):
    """Run the file in onnxruntime and the module in PyTorch on the same inputs (``batch`` other than the one
    traced); returns ``[(output name, max abs error, max |PyTorch|), ...]``."""
    inputs = graph.make_inputs(batch, seed)
    session = ort_session(path)
    feeds = {arg.name: tensor.numpy() for arg, tensor in zip(session.get_inputs(), inputs)}
    outputs = session.run(None, feeds)
    with torch.no_grad():
        expected = graph.module(*[t.clone() for t in inputs])
    expected = expected if isinstance(expected, (tuple, list)) else (expected,)
    rows = []
    for name, got, want in zip(graph.output_names, outputs, expected):
        want = want.numpy()
        if got.shape != want.shape:
            raise AssertionError(f'{name}: onnxruntime gave shape {got.shape}, PyTorch {want.shape}')
        if want.dtype.kind in 'fc':
            rows.append((name, float(abs(got - want).max()), float(abs(want).max())))
        else:  # integer outputs (argmax, masks): the share of elements that differ
            rows.append((name, float((got != want).mean()), 0.0))
    return rows


def graphs_for(loaded, size=None):
    """The graphs of a model loaded by :func:`tools.infer.load_model` (``size``: (H, W) of the images)."""
    if loaded.task == 'detection':
        return detection_graphs(loaded.model, loaded.cfg, size)
    if loaded.task == 'segmentation':
        return segmentation_graphs(loaded.model, loaded.cfg, size)
    return translation_graphs(loaded.model)


def output_path(out, suffix):
    stem, ext = osp.splitext(out)
    return f'{stem}{suffix}{ext or ".onnx"}'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a zoo checkpoint to ONNX (SAU as ONNX Exp/Erf math)')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file, or a URL (downloaded once, hash-checked)')
    parser.add_argument('--out', required=True,
                        help='ONNX file to write (translation: OUT_encoder.onnx and OUT_decoder.onnx)')
    parser.add_argument('--batch', type=int, default=2, help='batch size of the traced example (the exported '
                        'batch size is dynamic)')
    parser.add_argument('--input-size', type=int, nargs=2, metavar=('H', 'W'),
                        help='detection/segmentation: image size of the graph (default: the test pipeline\'s '
                        'resize scale, else the data preprocessor\'s size)')
    infer.add_trust_argument(parser)
    parser.add_argument('--no-check', action='store_true', help='skip the onnxruntime-vs-PyTorch check')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # tracing and checking need no autograd; a caller in this process keeps its own mode and logging
    with torch.no_grad(), infer.quiet_frameworks(), quiet_exporter():
        return export_models(args)


def export_models(args):
    """Export, and check, every graph of the model ``args`` names; 0 when each is faithful."""
    if args.batch < 2:  # torch.export specialises a dimension traced at size 1 to a constant
        raise infer.InputError(f'--batch must be at least 2 (the traced batch; the exported one is dynamic), '
                               f'got {args.batch}')
    loaded = infer.load_model(args.config, args.checkpoint, device='cpu', trust=args.trust_checkpoint)
    faithful = True
    if args.input_size and (min(args.input_size) < 1 or loaded.task == 'translation'):
        raise infer.InputError('--input-size takes a positive H and W, for detection and segmentation models')
    for graph in graphs_for(loaded, args.input_size):
        path = output_path(args.out, graph.suffix)
        start = time.time()
        export_graph(graph, path, args.batch)
        size = osp.getsize(path) / 2 ** 20
        line = f'wrote {path} ({size:.1f} MiB, {time.time() - start:.0f} s; inputs {", ".join(graph.input_names)}' \
               f' -> outputs {", ".join(graph.output_names)})'
        print(line, flush=True)
        if not args.no_check:
            worst = 0.0
            for name, error, scale in compare(graph, path, batch=args.batch + 1):
                if scale:  # float outputs
                    worst = max(worst, error / scale)
                    print(f'  check {name}: max abs error {error:.2e} (max |output| {scale:.3g})')
                else:
                    print(f'  check {name}: {error:.2%} of elements differ')
            if worst > CHECK_RTOL:
                print(f'error: {path}: onnxruntime differs from PyTorch by {worst:.2e} of the output range (bound '
                      f'{CHECK_RTOL:.0e}): the export is not faithful', file=sys.stderr)
                faithful = False
    return 0 if faithful else 1


if __name__ == '__main__':
    sys.exit(infer.run_main(main))
