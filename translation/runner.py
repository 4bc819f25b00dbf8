"""Run a translation config through fairseq's own training and generation (no loop of our own).

``tools/train.py`` and ``tools/eval.py`` load a config with a top-level ``fairseq = dict(data=..., ref=...,
train=dict(...), generate=dict(...))`` (``--cfg-options`` and ``--act`` applied) and call :func:`train` and
:func:`evaluate` with it. ``train`` and ``generate`` hold fairseq's own command-line options by their ``dest``
names: ``adam_betas='(0.9, 0.98)'`` becomes ``--adam-betas '(0.9, 0.98)'``, ``True`` a bare flag,
``None``/``False`` nothing. The full command is written to the work dir, so every run can be repeated with
plain ``fairseq-train``/``fairseq-generate``.
"""
import contextlib
import json
import os
import re
import shlex
import shutil
from pathlib import Path

from tools.zoo.errors import InputError, check_version
from tools.zoo.io import atomic_open, check_trust, checkpoint_loading, read_checkpoint

#: the fairseq release whose private code this module patches (a local suffix, +sauzoo..., is allowed)
FAIRSEQ_VERSION = '0.12.2'

USER_DIR = str(Path(__file__).resolve().parent)  # this folder is the fairseq --user-dir
SRC, TGT = 'en', 'de'


# --- options and checks -------------------------------------------------------------------------
def to_argv(options):
    """fairseq options dict -> command-line arguments, in the dict's order."""
    argv = []
    for key, value in options.items():
        flag = '--' + key.replace('_', '-')
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv


def check_checkpoint(path, what='checkpoint', trust=False):
    """``path`` if torch can load it as a fairseq checkpoint, else ``InputError`` naming it (missing, a truncated
    ``checkpoint_last.pt`` after a crash, a file that is not a checkpoint, one that needs a full unpickle and is
    not trusted); fairseq itself fails on such a file with a deep traceback (or runs its code), or, for
    ``--restore-file``, starts afresh silently when it is missing."""
    state = read_checkpoint(path, what, trust=trust)
    if not isinstance(state, dict) or 'model' not in state:
        raise InputError(f'cannot read checkpoint {path}: not a fairseq checkpoint (no model entry)')
    return path


def check_data(data):
    """The binarized data folder, or a FileNotFoundError that says how to make it."""
    path = Path(data)
    missing = [f for f in (f'dict.{SRC}.txt', f'dict.{TGT}.txt') if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(
            f'fairseq data directory {path} not found or not binarized (no {", ".join(missing)}); '
            f'make it with tools/data/prepare_wmt14_en_de.py (tools/data/make_tiny_en_de.py for the tiny '
            f'corpus) or point fairseq.data at it with --cfg-options fairseq.data=DIR')
    return str(path)


@contextlib.contextmanager
def _torch_threads(fs):
    """``fairseq.torch_threads`` for the duration of a run (the caller's setting is restored)."""
    import torch

    before = torch.get_num_threads()
    if fs.get('torch_threads'):
        torch.set_num_threads(int(fs.torch_threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _log_to(path):
    """Copy every log record (fairseq's train_inner/valid lines included) to ``path`` during a run."""
    import logging

    handler = logging.FileHandler(path, encoding='utf-8')
    handler.setFormatter(logging.Formatter('%(asctime)s | %(levelname)s | %(name)s | %(message)s'))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


@contextlib.contextmanager
def _atomic_checkpoint_copies():
    """Make fairseq's local checkpoint copies atomic for the duration of a run.

    ``checkpoint_utils.torch_persistent_save`` writes the first checkpoint name through ``<name>.tmp`` and
    a rename, but ``save_checkpoint`` then copies that file to ``checkpoint_best.pt``/``checkpoint_last.pt``
    with ``PathManager.copy`` (``shutil.copyfile``, in place): a kill during the copy leaves a truncated
    ``checkpoint_last.pt``, the file ``--resume`` reads. Local copies here go to a temporary file in the
    same folder, are fsynced and renamed over the destination.
    """
    import fairseq
    from fairseq.file_io import PathManager

    check_fairseq_version(fairseq.__version__)
    original = PathManager.__dict__['copy']

    def copy(src_path, dst_path, overwrite=False):
        if PathManager.path_requires_pathmanager(src_path) or PathManager.path_requires_pathmanager(dst_path):
            return original.__func__(src_path, dst_path, overwrite)
        if not overwrite and os.path.exists(dst_path):
            return False
        tmp = f'{dst_path}.{os.getpid()}.partial'
        try:
            shutil.copyfile(src_path, tmp)
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
            os.replace(tmp, dst_path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        return True

    PathManager.copy = staticmethod(copy)
    try:
        yield
    finally:
        PathManager.copy = original


def check_fairseq_version(version):
    """``RuntimeError`` unless ``version`` is :data:`FAIRSEQ_VERSION`: the patches here copy fairseq's private
    behaviour."""
    check_version('fairseq', version, FAIRSEQ_VERSION,
                  'translation/runner.py (_atomic_checkpoint_copies replaces PathManager.copy; train() resets '
                  'checkpoint_utils.save_checkpoint.best)',
                  'fairseq/file_io.py PathManager.copy (a staticmethod taking src_path, dst_path, overwrite), '
                  'checkpoint_utils.save_checkpoint (copies its first file with PathManager.copy, keeps the best '
                  'loss on save_checkpoint.best) and that checkpoint_utils loads through torch.load')


@contextlib.contextmanager
def _stop_on_signal(fairseq_train):
    """USR2 (Slurm: the time limit or a preemption is near; ``tools/zoo/slurm.py``) -> fairseq stops at the next
    update and saves, through its own stopping rule: ``validate_and_save`` stops when the cumulative training
    time passes ``optimization.stop_time_hours``, and then validates and writes ``checkpoint_last.pt``
    (``fairseq_cli/train.py``). The wrapper sets that limit to almost zero once the signal has come; the ranks
    of a distributed run agree on the update first (one all-reduce of a flag per update). ``train`` then exits
    with status 3 (``tools.zoo.slurm.EXIT_CHECKPOINTED``): the Slurm job requeues itself and resumes."""
    from tools.zoo.slurm import CheckpointSignal
    stop = CheckpointSignal()
    original = fairseq_train.validate_and_save

    def validate_and_save(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch):
        if trainer.data_parallel_world_size > 1:
            from fairseq.distributed import utils as distributed_utils
            requested = stop.requested(lambda t: distributed_utils.all_reduce(
                t, group=trainer.data_parallel_process_group))
        else:
            requested = stop.requested()
        if requested:
            cfg.optimization.stop_time_hours = 1e-9  # any time trained is past it: stop and save now
        return original(cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch)

    import threading
    if threading.current_thread() is threading.main_thread():
        stop.install()
    fairseq_train.validate_and_save = validate_and_save
    try:
        yield stop
    finally:
        fairseq_train.validate_and_save = original
        stop.uninstall()


# --- training ----------------------------------------------------------------------------------
def train(cfg, work_dir, seed=None, amp=False, resume=None, trust=False):
    """Train the config's ``fairseq`` section with ``fairseq_cli.train`` into ``work_dir``; returns 0.

    ``seed`` overrides ``fairseq.train.seed``; ``amp`` adds ``--amp``. ``resume``: None starts a new run (and
    refuses a work dir that holds one), ``'auto'`` continues the run in ``work_dir`` if there is one, a path
    restores that checkpoint. The work dir gets the checkpoints, the command (``fairseq_train.sh``) and the log
    (``fairseq_train.log``, appended to on resume). ``trust``: the checkpoint resumed from may need a full
    unpickle (``--trust-checkpoint``; never a URL).
    """
    fs = cfg.fairseq
    work_dir = Path(work_dir)
    options = dict(fs.train, save_dir=str(work_dir), user_dir=USER_DIR)
    if seed is not None:
        options['seed'] = seed
    if amp:
        options['amp'] = True
    last = work_dir / 'checkpoint_last.pt'
    if trust:  # fairseq's loads cannot be told apart: none of the checkpoints it may read is a URL
        check_trust(trust, resume if resume != 'auto' else None, options.get('restore_file'),
                    options.get('finetune_from_model'))
    if resume not in (None, 'auto'):
        options['restore_file'] = check_checkpoint(resume, '--resume: checkpoint', trust)  # --resume PATH
    elif resume is None and last.exists():
        raise FileExistsError(f'{last} exists: pass --resume to continue that run, or another --work-dir')
    elif resume == 'auto' and last.exists():
        check_checkpoint(last, trust=trust)  # what fairseq restores; none: it starts afresh, as MMEngine does
    argv = [check_data(fs.data)] + to_argv(options)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / 'fairseq_train.sh').write_text(shlex.join(['fairseq-train', *argv]) + '\n')

    from fairseq import checkpoint_utils, options as fairseq_options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    from fairseq.distributed import utils as distributed_utils
    from fairseq_cli import train as fairseq_train

    # fairseq keeps the best validation loss on the function (restored from the checkpoint on resume);
    # a second run in this process must not inherit the first one's
    if hasattr(checkpoint_utils.save_checkpoint, 'best'):
        del checkpoint_utils.save_checkpoint.best
    # fairseq_cli.train.cli_main, with our arguments instead of sys.argv
    parser = fairseq_options.get_training_parser()
    namespace = fairseq_options.parse_args_and_arch(parser, input_args=argv)
    with _torch_threads(fs), _log_to(work_dir / 'fairseq_train.log'), _atomic_checkpoint_copies(), \
            checkpoint_loading(trust), _stop_on_signal(fairseq_train) as stop:
        distributed_utils.call_main(convert_namespace_to_omegaconf(namespace), fairseq_train.main)
    if stop.received:
        from tools.zoo.slurm import EXIT_CHECKPOINTED
        print(f'translation train stopped on {stop.received}: checkpoint_last.pt saved in {work_dir}; exiting with '
              f'status {EXIT_CHECKPOINTED} to be requeued', flush=True)
        raise SystemExit(EXIT_CHECKPOINTED)
    best = getattr(checkpoint_utils.save_checkpoint, 'best', None)
    print(f'translation train done: activation {options["activation_fn"]}, best valid loss '
          f'{best if best is None else round(best, 3)}, checkpoints in {work_dir}', flush=True)
    return 0


# --- evaluation --------------------------------------------------------------------------------
def evaluate(cfg, checkpoint, work_dir=None, trust=False):
    """Beam-search the test set with ``fairseq_cli.generate``; return sacreBLEU and tokenized BLEU.

    The generation output goes to ``<work_dir or the checkpoint's folder>/<checkpoint stem>_generate/``.
    ``trust``: the checkpoint may need a full unpickle (``--trust-checkpoint``).
    """
    fs = cfg.fairseq
    data = check_data(fs.data)
    checkpoint = Path(check_checkpoint(checkpoint, trust=trust))
    generate = dict(fs.generate)
    subset = generate.get('gen_subset', 'test')
    results = (Path(work_dir) if work_dir else checkpoint.parent) / f'{checkpoint.stem}_generate'
    options = dict(generate, path=str(checkpoint), user_dir=USER_DIR, results_path=str(results))
    argv = [data] + to_argv(options)
    results.mkdir(parents=True, exist_ok=True)
    (results / 'fairseq_generate.sh').write_text(shlex.join(['fairseq-generate', *argv]) + '\n')

    from fairseq import options as fairseq_options
    from fairseq_cli import generate as fairseq_generate

    parser = fairseq_options.get_generation_parser()
    namespace = fairseq_options.parse_args_and_arch(parser, input_args=argv)
    with _torch_threads(fs), checkpoint_loading(trust):
        fairseq_generate.main(namespace)

    hyps, refs = read_generate_output(results / f'generate-{subset}.txt')
    ref_file = fs.get('ref') if subset == 'test' else None
    raw_refs = Path(ref_file).read_text(encoding='utf-8').splitlines() if ref_file and Path(ref_file).exists() else None
    metrics = score(hyps, refs, raw_refs)
    metrics.update(checkpoint=str(checkpoint), subset=subset, generate_output=str(results))
    (results / 'metrics.json').write_text(json.dumps(metrics, indent=2) + '\n')
    print_table(metrics)
    print(f'translation eval: sacreBLEU {metrics["sacrebleu"]:.2f} (detok), '
          f'tokenized compound-split BLEU {metrics["tok_bleu_compound_split"]:.2f}', flush=True)
    return metrics


def read_generate_output(path):
    """Tokenized hypotheses (H) and references (T), by sentence id, from fairseq-generate's output."""
    hyps, refs = {}, {}
    for line in Path(path).read_text(encoding='utf-8').splitlines():
        kind, _, rest = line.partition('-')
        if kind in ('H', 'T') and '\t' in rest:
            fields = rest.split('\t')
            if kind == 'H':
                hyps.setdefault(int(fields[0]), fields[2] if len(fields) > 2 else '')  # best of n-best
            else:
                refs[int(fields[0])] = fields[1]
    ids = sorted(hyps)
    return [hyps[i] for i in ids], [refs.get(i, '') for i in ids]


def compound_split(line):
    """fairseq's scripts/compound_split_bleu.sh: ``a-b`` -> ``a ##AT##-##AT## b``."""
    return re.sub(r'(\S)-(\S)', r'\1 ##AT##-##AT## \2', line)


def score(hyps, refs, raw_refs=None):
    """Both BLEU conventions for tokenized ``hyps``/``refs`` (one per test sentence, in order).

    ``sacrebleu``: the hypotheses Moses-detokenized (as fairseq's ``--tokenizer moses`` does) against
    the untouched reference text ``raw_refs`` (else the detokenized ``refs``), sacreBLEU defaults.
    ``tok_bleu_compound_split``: tokenized hypotheses against tokenized references with compound
    splitting, no further tokenization (what fairseq's examples report for WMT14 En-De).
    """
    from sacremoses import MosesDetokenizer
    from sacrebleu.metrics import BLEU

    detok = MosesDetokenizer(lang=TGT)
    detok_hyps = [detok.detokenize(h.split()) for h in hyps]
    if raw_refs is None:
        raw_refs, ref_source = [detok.detokenize(r.split()) for r in refs], 'detokenized fairseq targets'
    else:
        ref_source = 'raw reference file'
    if len(raw_refs) != len(detok_hyps):
        raise ValueError(f'{len(detok_hyps)} hypotheses but {len(raw_refs)} reference lines')
    bleu = BLEU()
    sacre = bleu.corpus_score(detok_hyps, [raw_refs])
    tok = BLEU(tokenize='none', force=True).corpus_score([compound_split(h) for h in hyps],
                                                        [[compound_split(r) for r in refs]])
    return {'sacrebleu': round(sacre.score, 2), 'sacrebleu_signature': str(bleu.get_signature()),
            'sacrebleu_reference': ref_source, 'tok_bleu_compound_split': round(tok.score, 2),
            'sentences': len(hyps)}


def print_table(metrics):
    rows = [('metric', 'value'), ('sacreBLEU (detok)', f'{metrics["sacrebleu"]:.2f}'),
            ('tokenized BLEU, compound split', f'{metrics["tok_bleu_compound_split"]:.2f}'),
            ('sentences', str(metrics['sentences'])), ('sacreBLEU signature', metrics['sacrebleu_signature'])]
    width = max(len(r[0]) for r in rows)
    for i, (k, v) in enumerate(rows):
        print(f'{k:<{width}}  {v}')
        if i == 0:
            print('-' * width + '  ' + '-' * len(rows[-1][1]))
