#!/usr/bin/env python
"""WMT14 English-German as fairseq's examples/translation/prepare-wmt14en2de.sh prepares it, in Python.

    python tools/data/prepare_wmt14_en_de.py --out data/wmt14_en_de            # downloads (~1.5 GB)
    python tools/data/prepare_wmt14_en_de.py --out data/wmt14_en_de --raw-dir ~/wmt14   # no download
    python tools/data/prepare_wmt14_en_de.py --out data/tiny_en_de --raw-dir data/tiny_en_de/raw \\
        --bpe-tokens 500                                              # the tiny synthetic corpus

Steps, as in fairseq's script (Moses perl replaced by sacremoses, the same rules):
1. raw text: Europarl v7 + Common Crawl + News Commentary v12 for train, newstest2014 (full) for test;
   ``--raw-dir`` holds either those archives (downloaded here when missing) or ready
   ``train.{en,de}`` and ``test.{en,de}`` (plus optional ``valid.{en,de}``) plain-text files;
2. punctuation normalisation, non-printing characters removed, Moses tokenisation with aggressive
   hyphen splitting (``-a``);
3. valid = every 100th training pair unless ``valid.*`` is given;
4. joint BPE (subword-nmt, 40,000 merges, learnt on train.de + train.en) applied to every split;
5. train and valid cleaned like ``clean-corpus-n.perl -ratio 1.5 ... 1 250``;
6. ``fairseq-preprocess --joined-dictionary`` into ``OUT/bin``.
The detokenised test sets are kept in ``OUT/ref/test.{en,de}`` for sacreBLEU.
"""
import argparse
import multiprocessing
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

SRC, TGT = 'en', 'de'
# name -> (URL, the files it holds without the .de/.en suffix); fairseq's list without --icml17
ARCHIVES = {
    'training-parallel-europarl-v7.tgz': ('http://statmt.org/wmt13/training-parallel-europarl-v7.tgz',
                                          ['training/europarl-v7.de-en']),
    'training-parallel-commoncrawl.tgz': ('http://statmt.org/wmt13/training-parallel-commoncrawl.tgz',
                                          ['commoncrawl.de-en']),
    'training-parallel-nc-v12.tgz': ('http://data.statmt.org/wmt17/translation-task/training-parallel-nc-v12.tgz',
                                     ['training/news-commentary-v12.de-en']),
    'test-full.tgz': ('http://statmt.org/wmt14/test-full.tgz', []),
}
TEST_SGM = {SRC: 'test-full/newstest2014-deen-src.en.sgm', TGT: 'test-full/newstest2014-deen-ref.de.sgm'}


def log(msg):
    print(f'[prepare {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def read_lines(path):
    return Path(path).read_text(encoding='utf-8').splitlines()


def write_lines(path, lines):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(''.join(line + '\n' for line in lines), encoding='utf-8')


# --- 1. raw text -------------------------------------------------------------------------------
def raw_corpus(raw_dir, download=True):
    """{'train'|'valid'|'test': {lang: [lines]}} from plain files or the WMT14 archives."""
    raw_dir = Path(raw_dir)
    if (raw_dir / f'train.{SRC}').exists():
        splits = {}
        for split in ('train', 'valid', 'test'):
            files = {lang: raw_dir / f'{split}.{lang}' for lang in (SRC, TGT)}
            if all(f.exists() for f in files.values()):
                splits[split] = {lang: read_lines(f) for lang, f in files.items()}
            elif split != 'valid':
                raise SystemExit(f'{raw_dir} has train.{SRC} but not {files[SRC].name} and {files[TGT].name}')
        return splits
    for name, (url, _) in ARCHIVES.items():
        archive = raw_dir / name
        if not archive.exists():
            if not download:
                raise SystemExit(f'{archive} is missing (and --no-download): put the WMT14 archives or '
                                 f'train/test.{{{SRC},{TGT}}} text files in {raw_dir}')
            log(f'downloading {url}')
            raw_dir.mkdir(parents=True, exist_ok=True)
            try:
                urllib.request.urlretrieve(url, archive.with_suffix('.part'))
            except OSError as e:
                raise SystemExit(f'cannot download {url} ({e}); download it by hand into {raw_dir} '
                                 f'and pass --raw-dir {raw_dir}') from None
            archive.with_suffix('.part').rename(archive)
        if not (raw_dir / (name + '.extracted')).exists():
            log(f'extracting {name}')
            with tarfile.open(archive) as tar:
                tar.extractall(raw_dir, filter='data')
            (raw_dir / (name + '.extracted')).touch()
    train = {lang: [] for lang in (SRC, TGT)}
    for _, stems in ARCHIVES.values():
        for stem in stems:
            for lang in (SRC, TGT):
                train[lang] += read_lines(raw_dir / f'{stem}.{lang}')
    test = {lang: read_sgm(raw_dir / TEST_SGM[lang]) for lang in (SRC, TGT)}
    return {'train': train, 'test': test}


def read_sgm(path):
    """The segments of an SGML test set, as fairseq's script extracts them (’ becomes ')."""
    seg = re.compile(r'<seg id="?\d+"?>\s*(.*?)\s*</seg>')
    return [m.group(1).replace('\u2019', "'") for m in map(seg.search, read_lines(path)) if m]


# --- 2. Moses normalisation + tokenisation -----------------------------------------------------
def _tokenize_chunk(job):
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    lang, lines = job
    norm = MosesPunctNormalizer(lang=lang, post_remove_control_chars=True)  # + remove-non-printing-char
    tok = MosesTokenizer(lang=lang)
    return [tok.tokenize(norm.normalize(line), aggressive_dash_splits=True, return_str=True, escape=True)
            for line in lines]


def tokenize(lines, lang, workers=1, chunk=10000):
    jobs = [(lang, lines[i:i + chunk]) for i in range(0, len(lines), chunk)]
    if workers > 1 and len(jobs) > 1:
        with multiprocessing.Pool(workers) as pool:
            return [line for part in pool.map(_tokenize_chunk, jobs) for line in part]
    return [line for job in jobs for line in _tokenize_chunk(job)]


# --- 4. joint BPE ------------------------------------------------------------------------------
def learn_bpe(train_files, codes, merges):
    from subword_nmt.learn_bpe import learn_bpe as subword_learn

    joint = [line for f in train_files for line in read_lines(f)]
    with open(codes, 'w', encoding='utf-8') as out:
        subword_learn(joint, out, merges)  # min_frequency 2, as learn_bpe.py's default


def apply_bpe(codes, lines):
    from subword_nmt.apply_bpe import BPE

    with open(codes, encoding='utf-8') as f:
        bpe = BPE(f)
    return [bpe.process_line(line) for line in lines]


# --- 5. cleaning -------------------------------------------------------------------------------
def clean(src, tgt, ratio=1.5, min_len=1, max_len=250):
    """clean-corpus-n.perl: drop pairs with a side outside [min, max] tokens or a length ratio > ratio."""
    kept = ([], [])
    for s, t in zip(src, tgt):
        s, t = ' '.join(s.split()), ' '.join(t.split())
        ns, nt = len(s.split()), len(t.split())
        if min_len <= ns <= max_len and min_len <= nt <= max_len and ns / nt <= ratio and nt / ns <= ratio:
            kept[0].append(s)
            kept[1].append(t)
    return kept


# --- the pipeline ------------------------------------------------------------------------------
def prepare(out, raw_dir, bpe_tokens=40000, workers=1, download=True):
    out = Path(out)
    corpus = raw_corpus(raw_dir, download)
    for split, texts in corpus.items():
        if len(texts[SRC]) != len(texts[TGT]):
            raise SystemExit(f'{split}: {len(texts[SRC])} {SRC} lines but {len(texts[TGT])} {TGT} lines in '
                             f'{raw_dir}: the two sides of a parallel corpus pair up line by line')
        if not any(line.strip() for line in texts[SRC]) or not any(line.strip() for line in texts[TGT]):
            raise SystemExit(f'{split}: no sentences in {raw_dir} ({split}.{SRC}/{split}.{TGT} empty or blank)')
        if split == 'test':
            for lang in (SRC, TGT):
                write_lines(out / 'ref' / f'test.{lang}', texts[lang])
    tok = {}
    for split, texts in corpus.items():
        for lang in (SRC, TGT):
            log(f'tokenising {split}.{lang} ({len(texts[lang])} lines)')
            tok[split, lang] = tokenize(texts[lang], lang, workers)
    if 'valid' not in corpus:  # fairseq's script: every 100th training pair
        for lang in (SRC, TGT):
            train = tok['train', lang]
            tok['valid', lang] = [x for i, x in enumerate(train, 1) if i % 100 == 0]
            tok['train', lang] = [x for i, x in enumerate(train, 1) if i % 100 != 0]
    for (split, lang), lines in tok.items():
        write_lines(out / 'tok' / f'{split}.{lang}', lines)
    codes = out / 'bpe' / 'code'
    codes.parent.mkdir(parents=True, exist_ok=True)
    log(f'learning {bpe_tokens} joint BPE merges')
    learn_bpe([out / 'tok' / f'train.{lang}' for lang in (TGT, SRC)], codes, bpe_tokens)
    for split in ('train', 'valid', 'test'):
        bpe = {lang: apply_bpe(codes, tok[split, lang]) for lang in (SRC, TGT)}
        if split != 'test':
            bpe[SRC], bpe[TGT] = clean(bpe[SRC], bpe[TGT])
            if not bpe[SRC]:  # fairseq-preprocess would write an empty dataset that fails at training time
                raise SystemExit(f'{split}: no sentence pair left after cleaning (1-250 tokens a side, length '
                                 f'ratio at most 1.5); check {raw_dir}')
        for lang in (SRC, TGT):
            write_lines(out / 'bpe' / f'{split}.{lang}', bpe[lang])
        log(f'{split}: {len(bpe[SRC])} pairs after BPE' + (' and cleaning' if split != 'test' else ''))
    prefix = out / 'bpe'
    cmd = [sys.executable, '-m', 'fairseq_cli.preprocess', '--source-lang', SRC, '--target-lang', TGT,
           '--trainpref', prefix / 'train', '--validpref', prefix / 'valid', '--testpref', prefix / 'test',
           '--destdir', out / 'bin', '--thresholdtgt', '0', '--thresholdsrc', '0', '--joined-dictionary',
           '--workers', str(workers)]
    log('fairseq-preprocess --joined-dictionary')
    # bin/ is derived from the BPE files just written: replace it (fairseq-preprocess refuses to overwrite)
    shutil.rmtree(out / 'bin', ignore_errors=True)
    subprocess.run([str(c) for c in cmd], check=True)
    log(f'done: {out / "bin"}')
    return out / 'bin'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/wmt14_en_de', help='output folder (bin/, ref/, tok/, bpe/)')
    parser.add_argument('--raw-dir', default=None, help='downloaded archives or {train,test}.{en,de} text '
                                                        '(default: OUT/orig)')
    parser.add_argument('--bpe-tokens', type=int, default=40000, help='joint BPE merges (fairseq: 40000)')
    parser.add_argument('--workers', type=int, default=multiprocessing.cpu_count())
    parser.add_argument('--no-download', action='store_true', help='fail instead of downloading')
    args = parser.parse_args(argv)
    raw_dir = args.raw_dir or Path(args.out) / 'orig'
    prepare(args.out, raw_dir, args.bpe_tokens, args.workers, download=not args.no_download)


if __name__ == '__main__':
    main()
