"""Translation: fairseq with ``--activation-fn sau``, the runner, the data preparation, bad input.

One small corpus (the tiny generator through the full preparation pipeline) and one short training
serve the whole module; on 2 busy CPU cores it runs in about two minutes.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

fairseq = pytest.importorskip('fairseq', reason='fairseq is installed by tools/env/setup.sh (tools/env/build_wheel.py fairseq)')

from sau_core import SAU  # noqa: E402
from tools.data import make_tiny_en_de, prepare_wmt14_en_de  # noqa: E402
from tools.zoo import config  # noqa: E402
from translation import runner  # noqa: E402

CONFIGS = ROOT / 'translation' / 'configs'
TINY = CONFIGS / 'transformer_tiny_sau.py'
LAYERS = 2  # encoder and decoder layers of the tiny config


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A small corpus through the full preparation, plus two pairs that cleaning must drop."""
    out = tmp_path_factory.mktemp('tiny_en_de')
    raw = out / 'raw'
    make_tiny_en_de.make_corpus(raw, n_train=3000, n_valid=100, n_test=100, seed=3)
    with open(raw / 'train.en', 'a') as en, open(raw / 'train.de', 'a') as de:
        en.write('Yes.\n' + 'The dog.\n')
        de.write('Ja ja ja ja ja ja ja ja.\n' + '\n')  # length ratio 8; empty side
    prepare_wmt14_en_de.prepare(out, raw, bpe_tokens=1000, workers=1, download=False)
    return out


def tiny_cfg(data, act=None, **cfg_options):
    """The tiny config as tools/train.py and tools/eval.py hand it to the runner: loaded once, ``--cfg-options``
    (``a__b=v`` for ``a.b=v``) and ``--act`` applied."""
    options = {'fairseq.data': str(data / 'bin'), 'fairseq.ref': str(data / 'ref' / 'test.de')}
    options.update({k.replace('__', '.'): v for k, v in cfg_options.items()})
    cfg = config.load_config(str(TINY))
    config.apply_options(cfg, options, act)
    return cfg


@pytest.fixture(scope='module')
def trained(data, tmp_path_factory):
    """A SAU model trained for 200 updates (4 epochs of the small corpus) and its log."""
    work_dir = tmp_path_factory.mktemp('work_dir')
    cfg = tiny_cfg(data, fairseq__train__max_update=200, fairseq__train__log_interval=20,
                   fairseq__train__warmup_updates=30)
    from fairseq import checkpoint_utils
    checkpoint_utils.save_checkpoint.best = -1.0  # as if left by an earlier run in this process
    assert runner.train(cfg, work_dir, seed=1) == 0
    return work_dir, work_dir / 'fairseq_train.log'


# --- the plugin --------------------------------------------------------------------------------
def test_plugin_adds_sau_and_keeps_fairseq_activations():
    from fairseq import utils
    from fairseq.models.transformer import TransformerConfig

    import sau_core.fairseq as plugin

    plugin.register()  # idempotent: still one wrapper around fairseq's function
    assert utils.get_activation_fn.__wrapped__.__module__ == 'fairseq.utils'
    choices = utils.get_available_activation_fns()
    assert choices[:6] == ['relu', 'gelu', 'gelu_fast', 'gelu_accurate', 'tanh', 'linear']
    assert set(plugin.ACTIVATIONS) <= set(choices) and len(choices) == len(set(choices))
    assert utils.get_activation_fn('relu') is torch.nn.functional.relu  # fairseq's own, untouched
    first, second = utils.get_activation_fn('sau'), utils.get_activation_fn('sau')
    assert isinstance(first, SAU) and first is not second and first.alpha is not second.alpha
    assert isinstance(utils.get_activation_fn('swish'), torch.nn.SiLU)  # fairseq returns the class
    field_type = TransformerConfig.__dataclass_fields__['activation_fn'].type
    assert [m.value for m in field_type] == choices


def test_plugin_updates_hydra_nodes_of_dataclass_models():
    from fairseq.models import MODEL_DATACLASS_REGISTRY
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    node = ConfigStore.instance().repo['model']['transformer_lm.yaml'].node
    node.activation_fn = 'sau'
    structured = OmegaConf.structured(MODEL_DATACLASS_REGISTRY['transformer_lm']())
    structured.activation_fn = 'sau'
    with pytest.raises(ValidationError, match='sau'):  # the message lists the choices, sau included
        structured.activation_fn = 'bogus'


def test_user_dir_imports_under_its_basename():
    from fairseq import utils

    utils.import_user_module(argparse.Namespace(user_dir=runner.USER_DIR))  # already imported: no-op
    assert sys.modules['translation'].__file__ == str(ROOT / 'translation' / '__init__.py')
    import fairseq.tasks.translation as fairseq_translation  # fairseq's own task is not shadowed
    assert fairseq_translation.__name__ == 'fairseq.tasks.translation'


def build_model(data, act, *args):
    """fairseq's transformer_wmt_en_de with ``--activation-fn act``, as fairseq-train builds it."""
    from fairseq import options, tasks
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    ns = options.parse_args_and_arch(parser, [str(data / 'bin'), '--user-dir', runner.USER_DIR, '--arch',
                                              'transformer_wmt_en_de', '--activation-fn', act,
                                              '--share-all-embeddings', *args])
    cfg = convert_namespace_to_omegaconf(ns)
    return tasks.setup_task(cfg.task).build_model(cfg.model)


@pytest.mark.parametrize('act', ['sau', 'relu'])
def test_every_ffn_gets_its_own_activation(data, act):
    model = build_model(data, act, '--encoder-layers', '3')
    layers = list(model.encoder.layers) + list(model.decoder.layers)
    assert len(layers) == 3 + 6
    alphas = {name: p for name, p in model.named_parameters() if name.endswith('activation_fn.alpha')}
    if act == 'relu':
        assert not alphas and all(layer.activation_fn is torch.nn.functional.relu for layer in layers)
        # patch point 4: inference must not take fairseq's torch-1.12 fast path ("Mask Type should be defined")
        model.load_state_dict(model.state_dict())  # as generation does; sets the layers' load_to_BT
        model.eval()
        tokens = torch.tensor([[5, 6, 7, 2], [1, 8, 9, 2]])
        with torch.no_grad():
            out = model.encoder(tokens, src_lengths=torch.tensor([4, 3]))
        assert out['encoder_out'][0].shape == (4, 2, 512)
        return
    assert all(isinstance(layer.activation_fn, SAU) for layer in layers)
    assert len({id(layer.activation_fn.alpha) for layer in layers}) == len(layers) == len(alphas)
    assert 'encoder.layers.0.activation_fn.alpha' in alphas and 'decoder.layers.5.activation_fn.alpha' in alphas
    assert all(layer.activation_fn.inplace for layer in layers)  # see test_ffn_with_sau_keeps_relus_bytes


def saved_bytes_and_grads(model, tokens):
    """One training forward of the encoder: the bytes autograd keeps for backward (unique storages), and the
    parameters' gradients of a fixed loss."""
    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model.encoder(tokens, src_lengths=torch.full((tokens.shape[0],), tokens.shape[1]))
    (out['encoder_out'][0].double() ** 2).mean().backward()
    return sum(saved.values()), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_ffn_with_sau_keeps_relus_bytes(data):
    """fairseq's FFN is ``fc2(activation_fn(fc1(x)))``: ReLU keeps one (T, B, 2048) tensor for backward (its
    output, which fc2 keeps too). The SAU fairseq gets runs in place (sau_core.fairseq.make_activation), so it
    keeps the same bytes (out of place it keeps its input as well), with the out-of-place op's gradients."""
    torch.manual_seed(0)
    tokens = torch.randint(4, 100, (2, 16))
    fixed = ['--dropout', '0', '--attention-dropout', '0', '--encoder-layers', '2']
    relu_bytes, _ = saved_bytes_and_grads(build_model(data, 'relu', *fixed), tokens)
    torch.manual_seed(1)
    model = build_model(data, 'sau', *fixed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    inplace_bytes, inplace_grads = saved_bytes_and_grads(model, tokens)
    model.load_state_dict(state)
    model.zero_grad()
    for layer in model.encoder.layers:
        layer.activation_fn.inplace = False
    outofplace_bytes, outofplace_grads = saved_bytes_and_grads(model, tokens)
    ffn_tensor = 16 * 2 * 2048 * 4  # T x B x ffn_dim fp32, one per layer
    assert 0 <= inplace_bytes - relu_bytes <= 64  # the same tensors, plus each layer's alpha and n
    assert outofplace_bytes - inplace_bytes == 2 * ffn_tensor
    assert inplace_grads.keys() == outofplace_grads.keys()
    for name, grad in inplace_grads.items():
        torch.testing.assert_close(grad, outofplace_grads[name], rtol=1e-4, atol=1e-6, msg=name)


# --- training, checkpoint, generation, BLEU ----------------------------------------------------
def test_training_lowers_the_loss(trained):
    work_dir, log = trained
    losses = [float(x) for x in re.findall(r'train_inner .* loss=([0-9.]+)', log.read_text())]
    assert len(losses) == 10, losses
    assert losses[-1] < losses[0] - 2.0, losses
    assert (work_dir / 'checkpoint_best.pt').exists()  # the stale best loss was not inherited
    assert (work_dir / 'fairseq_train.sh').read_text().startswith('fairseq-train ')
    assert '--activation-fn sau' in (work_dir / 'fairseq_train.sh').read_text()


def test_checkpoint_holds_alphas_and_generation_reloads_them(data, trained):
    from fairseq import checkpoint_utils

    work_dir, _ = trained
    state = torch.load(work_dir / 'checkpoint_last.pt', map_location='cpu', weights_only=False)
    alphas = {k: v for k, v in state['model'].items() if k.endswith('activation_fn.alpha')}
    assert len(alphas) == 2 * LAYERS
    values = torch.cat(list(alphas.values()))
    assert not torch.allclose(values, torch.full_like(values, 0.15))  # trained away from the init
    assert len(set(values.tolist())) == len(values)  # one alpha per layer
    models, _ = checkpoint_utils.load_model_ensemble([str(work_dir / 'checkpoint_last.pt')])
    loaded = dict(models[0].named_parameters())
    for name, value in alphas.items():
        assert torch.equal(loaded[name].detach(), value)


def test_evaluate_reports_sacrebleu_and_tokenized_bleu(data, trained):
    import sacrebleu
    from sacremoses import MosesDetokenizer

    work_dir, _ = trained
    metrics = runner.evaluate(tiny_cfg(data), work_dir / 'checkpoint_last.pt')
    assert metrics['sentences'] == 100 and metrics['sacrebleu_reference'] == 'raw reference file'
    assert metrics['sacrebleu_signature'].startswith('nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp')
    assert 5 < metrics['sacrebleu'] < 100, metrics
    # the same number from sacrebleu directly, on fairseq-generate's output
    hyps, _ = runner.read_generate_output(Path(metrics['generate_output']) / 'generate-test.txt')
    detok = MosesDetokenizer(lang='de')
    refs = (data / 'ref' / 'test.de').read_text().splitlines()
    expected = sacrebleu.corpus_bleu([detok.detokenize(h.split()) for h in hyps], [refs]).score
    assert metrics['sacrebleu'] == pytest.approx(expected, abs=0.01)
    assert 0 < metrics['tok_bleu_compound_split'] < 100


def test_score_conventions():
    metrics = runner.score(['Das ist ein Haus @-@ Boot .'], ['Das ist ein Haus @-@ Boot .'],
                           ['Das ist ein Haus-Boot.'])
    assert metrics['sacrebleu'] == 100 and metrics['tok_bleu_compound_split'] == 100
    assert runner.compound_split('Haus-Boot und See-Ufer-Weg') == \
        'Haus ##AT##-##AT## Boot und See ##AT##-##AT## Ufer ##AT##-##AT## Weg'
    assert runner.compound_split('a-b-c -x') == 'a ##AT##-##AT## b-c -x'  # perl's s{(\S)-(\S)}{...}g
    assert runner.score(['a b c d'], ['w x y z'])['tok_bleu_compound_split'] == 0


# --- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize('sau, relu', [('transformer_wmt14_en_de_sau', 'transformer_wmt14_en_de_relu'),
                                       ('transformer_tiny_sau', 'transformer_tiny_relu')])
def test_relu_and_sau_configs_differ_only_in_activation(sau, relu):
    from mmengine.config import Config

    a = Config.fromfile(CONFIGS / f'{sau}.py').to_dict()
    b = Config.fromfile(CONFIGS / f'{relu}.py').to_dict()
    assert a['fairseq']['train'].pop('activation_fn') == 'sau'
    assert b['fairseq']['train'].pop('activation_fn') == 'relu'
    assert a == b


def test_wmt14_recipe_is_the_papers():
    from mmengine.config import Config

    train = Config.fromfile(CONFIGS / 'transformer_wmt14_en_de_sau.py').fairseq.train
    assert (train.arch, train.dropout, train.adam_betas, train.max_update, train.label_smoothing,
            train.lr_scheduler) == ('transformer_wmt_en_de', 0.1, '(0.9, 0.98)', 100000, 0.1, 'inverse_sqrt')
    assert runner.to_argv({'adam_betas': '(0.9, 0.98)', 'share_all_embeddings': True, 'fp16': False,
                           'seed': None, 'update_freq': [8]}) == \
        ['--adam-betas', '(0.9, 0.98)', '--share-all-embeddings', '--update-freq', '8']


@pytest.mark.parametrize('name', ['transformer_wmt14_en_de_sau', 'transformer_tiny_sau'])
def test_config_options_are_fairseq_options(data, name):
    """Every key of ``train``/``generate`` parses as a fairseq-train/fairseq-generate option."""
    from fairseq import options
    from mmengine.config import Config

    fs = Config.fromfile(CONFIGS / f'{name}.py').fairseq
    train = options.parse_args_and_arch(options.get_training_parser(), [str(data / 'bin')] + runner.to_argv(
        dict(fs.train, user_dir=runner.USER_DIR)))
    for key, value in fs.train.items():
        parsed = getattr(train, key)
        assert parsed == value or parsed == [value] or str(parsed) == str(value), (key, parsed, value)
    generate = options.parse_args_and_arch(options.get_generation_parser(), [str(data / 'bin')] + runner.to_argv(
        dict(fs.generate, path='x.pt', user_dir=runner.USER_DIR)))
    assert (generate.beam, generate.lenpen, generate.post_process) == (4, 0.6, 'subword_nmt')


def test_act_flag_overrides_the_config(data):
    cfg = tiny_cfg(data, act='leaky_relu')
    assert cfg.fairseq.train.activation_fn == 'leaky_relu'


# --- data preparation --------------------------------------------------------------------------
def test_preparation_produces_a_binarized_joint_dataset(data):
    from fairseq.data import Dictionary, data_utils

    bin_dir = data / 'bin'
    assert (bin_dir / 'dict.en.txt').read_text() == (bin_dir / 'dict.de.txt').read_text()  # joined
    dictionary = Dictionary.load(str(bin_dir / 'dict.de.txt'))
    kept = len((data / 'bpe' / 'train.en').read_text().splitlines())
    assert 2900 < kept <= 3000  # the two bad pairs (and any with a BPE length ratio > 1.5) are dropped
    for split, n in (('train', kept), ('valid', 100), ('test', 100)):
        for lang in ('en', 'de'):
            dataset = data_utils.load_indexed_dataset(str(bin_dir / f'{split}.en-de.{lang}'), dictionary)
            assert len(dataset) == n, (split, lang)
    tok = (data / 'tok' / 'train.de').read_text()
    assert ' , ' in tok and not re.search(r'\w,', tok)  # Moses tokenised
    codes = data / 'bpe' / 'code'  # one joint BPE: frequent words of both languages whole, new ones split
    assert prepare_wmt14_en_de.apply_bpe(codes, ['Schlüssel neighbour']) == ['Schlüssel neighbour']
    assert '@@ ' in prepare_wmt14_en_de.apply_bpe(codes, ['Schlüsselneighbourhood'])[0]
    assert 'Ja ja ja' not in (data / 'bpe' / 'train.de').read_text()
    assert (data / 'ref' / 'test.de').read_text() == (data / 'raw' / 'test.de').read_text()


def test_preparation_cleaning_and_sgm():
    src, tgt = prepare_wmt14_en_de.clean(['a b', 'a', '', 'a b c'], ['x y', 'x y z w', 'x', 'x y'])
    assert (src, tgt) == (['a b', 'a b c'], ['x y', 'x y'])
    assert prepare_wmt14_en_de.tokenize(['Das Haus-Boot, "gut".'], 'de') == \
        ['Das Haus @-@ Boot , &quot; gut &quot; .']


def test_tiny_corpus_is_deterministic_and_test_is_unseen(tmp_path):
    make_tiny_en_de.make_corpus(tmp_path / 'a', 300, 20, 50, seed=5)
    make_tiny_en_de.make_corpus(tmp_path / 'b', 300, 20, 50, seed=5)
    assert (tmp_path / 'a' / 'train.de').read_text() == (tmp_path / 'b' / 'train.de').read_text()
    train = set((tmp_path / 'a' / 'train.en').read_text().splitlines())
    test = (tmp_path / 'a' / 'test.en').read_text().splitlines()
    assert len(test) == 50 and not train & set(test)


# --- bad input ---------------------------------------------------------------------------------
def test_unknown_activation_lists_the_choices(data, tmp_path, capsys):
    with pytest.raises(SystemExit):
        runner.train(tiny_cfg(data, act='bogus'), tmp_path, seed=1)
    err = capsys.readouterr().err
    assert "argument --activation-fn: invalid choice: 'bogus'" in err and "'sau'" in err and "'relu'" in err


def test_missing_data_dir(tmp_path):
    cfg = tiny_cfg(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='prepare_wmt14_en_de'):
        runner.train(cfg, tmp_path / 'wd', seed=1)
    with pytest.raises(FileNotFoundError, match='nowhere'):
        runner.evaluate(cfg, tmp_path / 'x.pt')


def test_missing_raw_files_without_download(tmp_path):
    with pytest.raises(SystemExit, match='no-download'):
        prepare_wmt14_en_de.prepare(tmp_path / 'out', tmp_path / 'empty', download=False)


def test_existing_run_needs_resume(data, trained):
    work_dir, _ = trained
    with pytest.raises(FileExistsError, match='--resume'):
        runner.train(tiny_cfg(data), work_dir, seed=1)


def test_sau_checkpoint_without_plugin_says_add_user_dir(data, trained, tmp_path):
    work_dir, _ = trained
    cmd = [sys.executable, '-m', 'fairseq_cli.generate', str(data / 'bin'), '--path',
           str(work_dir / 'checkpoint_last.pt'), '--beam', '1', '--max-sentences', '4']
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert '--activation-fn sau not supported' in proc.stderr
    assert '--user-dir translation' in proc.stderr  # from the checkout's root
    assert '--user-dir <the sau-zoo checkout>/translation' in proc.stderr and 'import translation' in proc.stderr


# --- the fairseq build -------------------------------------------------------------------------
def test_fairseq_patch_applies_exactly_once(tmp_path):
    from tools.env import build_wheel as build  # what tools/env/setup.sh runs

    patch = build.RECIPES['fairseq'].patch('fairseq')
    edits = build.parse_patch(patch.read_text())
    assert sorted(edits) == ['fairseq/binarizer.py', 'fairseq/checkpoint_utils.py', 'fairseq/dataclass/configs.py',
                             'fairseq/dataclass/initialize.py', 'fairseq/models/transformer/transformer_config.py',
                             'fairseq/modules/transformer_layer.py', 'fairseq/utils.py', 'setup.py']
    assert all(old != new for hunks in edits.values() for old, new in hunks)
    sdist = Path.home() / '.cache' / 'sau-zoo' / 'wheels' / 'fairseq-0.12.2.tar.gz'
    if not sdist.exists():
        pytest.skip(f'{sdist} not downloaded (tools/env/build_wheel.py fairseq does)')
    import tarfile
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.split('/', 1)[-1] in edits]
        tar.extractall(tmp_path, members=members, filter='data')
    src = tmp_path / 'fairseq-0.12.2'
    assert build.apply_patch(src, patch) == sum(len(h) for h in edits.values())
    assert 'weights_only=False' in (src / 'fairseq' / 'checkpoint_utils.py').read_text()
    binarizer = (src / 'fairseq' / 'binarizer.py').read_text()  # the pool joined after the main chunk
    assert binarizer.index('final_ds, summ = cls._binarize_file_chunk(') < binarizer.index('pool.join()')
    with pytest.raises(SystemExit, match='matches 0 times'):  # a second application fails loudly
        build.apply_patch(src, patch)


def test_resume_continues_from_the_last_checkpoint(data, trained):  # last: it moves checkpoint_last.pt on
    work_dir, log = trained
    cfg = tiny_cfg(data, fairseq__train__max_update=210, fairseq__train__log_interval=20,
                   fairseq__train__warmup_updates=30)
    assert runner.train(cfg, work_dir, seed=1, resume='auto') == 0
    text = log.read_text()
    assert re.search(r'Loaded checkpoint .*checkpoint_last\.pt \(epoch \d+ @ 200 updates\)', text)
    state = torch.load(work_dir / 'checkpoint_last.pt', map_location='cpu', weights_only=False)
    assert state['optimizer_history'][-1]['num_updates'] == 210
