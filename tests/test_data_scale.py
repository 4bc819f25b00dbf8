"""The data tools at volume: the full-scale generators' counts and formats, the preparation's bounded memory
and its independence of ``--nproc``, the tiny corpus's outputs unchanged, and the benchmark's measurements.

Fast: fractions of the generators, small corpora; the measured figures at scale are in the task READMEs
(``tools/benchmarks/data.py``).
"""
import collections
import copy
import hashlib
import io
import json
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from tools.benchmarks.data import measure
from tools.data import make_full_scale as gen
from tools.data import make_tiny_en_de, prepare_wmt14_en_de as wmt


def test_full_scale_counts_are_the_official_ones():
    assert {k: gen.scaled(v, 1.0) for k, v in gen.VOC_COUNTS.items()} == \
        {('2007', 'trainval'): 5011, ('2007', 'test'): 4952, ('2012', 'trainval'): 11540}
    assert sum(gen.CITY_COUNTS['train'].values()) == 2975 and sum(gen.CITY_COUNTS['val'].values()) == 500
    assert len(gen.CITY_COUNTS['train']) == 18 and set(gen.CITY_COUNTS['val']) == {'frankfurt', 'lindau', 'munster'}
    assert sum(c[2] for c in gen.WMT_CORPORA.values()) == 4590101 and gen.WMT_TEST_SEGMENTS == 3003
    ids = gen._voc_ids(1.0, np.random.default_rng(0))
    assert [len(set(v)) for v in ids.values()] == [5011, 4952, 11540]
    assert not set(ids['2007', 'trainval']) & set(ids['2007', 'test'])
    assert min(ids['2007', 'trainval'] + ids['2007', 'test']) >= '000001' and \
        max(ids['2007', 'trainval'] + ids['2007', 'test']) <= '009963'
    assert gen.scaled(2975, 0.1) == 298 and gen.scaled(59, 0.001) == 1
    with pytest.raises(ValueError, match='--scale 2'):
        gen.parse_scale('2')


def test_cityscapes_frame_is_real_size_and_format(tmp_path):
    job = (str(tmp_path), 'val', 'lindau', 'lindau_000000_000019', [0, 1, 2, 3], None, (1024, 2048))
    for sub in ('leftImg8bit', 'gtFine'):
        (tmp_path / sub / 'val' / 'lindau').mkdir(parents=True)
    gen._city_frame(job)
    img_path = tmp_path / 'leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png'
    gt = tmp_path / 'gtFine/val/lindau/lindau_000000_000019_gtFine_'
    img, ids, inst = (Image.open(p) for p in (img_path, f'{gt}labelIds.png', f'{gt}instanceIds.png'))
    assert img.size == ids.size == inst.size == (2048, 1024) and img.mode == 'RGB' and ids.mode == 'L'
    assert 1.5e6 < img_path.stat().st_size < 4e6  # the real frames are ~2 MB
    inst = np.asarray(inst)
    assert inst.dtype == np.uint16 and (inst >= 26000).any()  # cars: 26 * 1000 + instance
    with open(f'{gt}polygons.json') as f:
        poly = json.load(f)
    assert (poly['imgWidth'], poly['imgHeight']) == (2048, 1024) and {'road', 'sky', 'ego vehicle'} <= \
        {o['label'] for o in poly['objects']}


def test_wmt_generator_layout_lengths_and_mess(tmp_path):
    a = gen.make_wmt(str(tmp_path / 'a'), scale=0.0005, seed=0, nproc=1)
    gen.make_wmt(str(tmp_path / 'b'), scale=0.0005, seed=0, nproc=2)
    for name in ('training-parallel-europarl-v7.tgz', 'training-parallel-commoncrawl.tgz',
                 'training-parallel-nc-v12.tgz', 'test-full.tgz'):  # same bytes whatever --nproc
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes(), name
    with tarfile.open(tmp_path / 'a' / 'training-parallel-commoncrawl.tgz') as tar:
        assert sorted(tar.getnames()) == ['commoncrawl.de-en.de', 'commoncrawl.de-en.en']
        en = tar.extractfile('commoncrawl.de-en.en').read()
    with tarfile.open(tmp_path / 'a' / 'test-full.tgz') as tar:
        assert sorted(tar.getnames()) == ['test-full/newstest2014-deen-ref.de.sgm',
                                          'test-full/newstest2014-deen-src.en.sgm']
        sgm = tar.extractfile('test-full/newstest2014-deen-src.en.sgm').read().decode()
    assert sgm.count('<seg id="') == 2 and sgm.startswith('<srcset setid="newstest2014"')
    lines = en.split(b'\n')[:-1]
    assert len(lines) == a['pairs']['commoncrawl'] == 1200
    words = np.array([len(line.split()) for line in lines])
    assert 12 < np.median(words) < 30 and words.max() > 1000  # a long tail, web-text lines over 1,000 words
    assert a['mess']['crlf'] == sum(line.endswith(b'\r') for line in lines) > 0
    assert a['mess']['entities'] > 0 and b'&amp;' in en and a['mess']['invalid_utf8'] >= 1


def test_stream_keeps_at_most_two_jobs_per_process_in_flight():
    pulled = []

    def jobs():
        for i in range(50):
            pulled.append(i)
            yield [str(i)]
    stream = wmt.Stream(2)
    try:
        ahead = []
        for n, _ in enumerate(stream.map(wmt._count_words, jobs()), 1):
            ahead.append(len(pulled) - n)
    finally:
        stream.close()
    assert n == 50 and max(ahead) <= 4  # Pool.imap would have read all 50 at once


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


#: The tiny test corpus (make_corpus(3000, 100, 100, seed=3), 1000 merges) as the code before the streaming
#: rewrite (commit c840c85) prepared it, --workers 1
REFERENCE = {
    'bpe/code': '7d7882ae6998af0d', 'bpe/train.de': 'c11388a0e2478cd7', 'bpe/train.en': '197390bfcf71d689',
    'bin/dict.en.txt': '92978af9f9fd0d22', 'bin/train.en-de.de.bin': '1d0879a3720dbe9a',
    'bin/train.en-de.en.idx': '37d44dec58f5df66', 'bin/test.en-de.de.bin': '12746544989254dd',
}


def test_tiny_corpus_prepares_to_the_same_bytes_as_before_with_all_processes(tmp_path):
    make_tiny_en_de.make_corpus(tmp_path / 'raw', n_train=3000, n_valid=100, n_test=100, seed=3)
    wmt.prepare(tmp_path / 'out', tmp_path / 'raw', bpe_tokens=1000, workers=2, download=False)
    assert {f: _sha(tmp_path / 'out' / f) for f in REFERENCE} == REFERENCE


def test_the_faster_merge_loop_learns_subword_nmts_own_codes(tmp_path):
    """learn_bpe's patched merge loop against unpatched subword-nmt over the joint text, on a corpus whose late
    merges tie (counts of 2 and 3), and subword-nmt's module restored afterwards."""
    import subword_nmt.learn_bpe as module

    make_tiny_en_de.make_corpus(tmp_path / 'raw', n_train=600, n_valid=10, n_test=10, seed=5)
    files = [tmp_path / 'raw' / f'train.{lang}' for lang in ('de', 'en')]
    wmt.learn_bpe(files, tmp_path / 'code', 2000)
    joint = io.StringIO(''.join(f.read_text(encoding='utf-8') for f in files))
    plain = io.StringIO()
    module.learn_bpe(joint, plain, 2000)
    codes = (tmp_path / 'code').read_text(encoding='utf-8')
    assert codes == plain.getvalue() and codes.count('\n') > 1000
    assert 'max' not in vars(module) and module.copy is copy


def test_next_merge_is_subword_nmts_max_with_ties():
    rng = np.random.default_rng(0)
    for trial in range(200):
        stats = collections.defaultdict(int)
        for _ in range(int(rng.integers(1, 60))):
            stats[str(rng.integers(0, 9)), str(rng.integers(0, 9)) + '</w>'] = int(rng.integers(-3, 4))
        assert wmt._next_merge(stats, key=lambda x: (stats[x], x)) == max(stats, key=lambda x: (stats[x], x))
    assert wmt._next_merge(stats.values()) == max(stats.values())
    copied = wmt._copy_counts(stats)
    assert copied == stats and copied is not stats and copied.default_factory is int


def test_messy_corpus_gives_the_same_files_with_one_or_two_processes(tmp_path):
    gen.make_wmt(str(tmp_path / 'raw'), scale=0.0005, seed=1, nproc=1)
    stages = ['text', 'tok', 'learn_bpe', 'apply_bpe', 'clean']
    for n in (1, 2):
        wmt.prepare(tmp_path / f'n{n}', tmp_path / 'raw', bpe_tokens=300, workers=n, download=False, stages=stages)
    files = sorted(p.relative_to(tmp_path / 'n1') for p in (tmp_path / 'n1').rglob('*') if p.is_file())
    assert len(files) >= 20
    for f in files:
        assert (tmp_path / 'n1' / f).read_bytes() == (tmp_path / 'n2' / f).read_bytes(), f


def _corpus(folder, pairs):
    folder.mkdir(parents=True, exist_ok=True)
    line = {'en': 'The house number %d is big and the garden is green .\n',
            'de': 'Das Haus Nummer %d ist groß und der Garten ist grün .\n'}
    for lang in ('en', 'de'):
        with open(folder / f'train.{lang}', 'w', encoding='utf-8') as f:
            f.writelines(line[lang] % i for i in range(pairs))
        (folder / f'test.{lang}').write_text(line[lang] % 0, encoding='utf-8')


@pytest.mark.parametrize('stage', ['text', 'clean'])
def test_stage_memory_does_not_grow_with_the_corpus(tmp_path, stage):
    """Peak RSS at 20k and 300k pairs (~9 MB a side): the same within a few MiB; the old reader's lists of
    lines held ~80 MiB more at 300k."""
    peaks = []
    for pairs in (20000, 300000):
        raw, out = tmp_path / f'raw{pairs}', tmp_path / f'out{pairs}'
        _corpus(raw, pairs)
        if stage == 'clean':  # clean reads the BPE output: give it these lines as that
            for split in ('train', 'valid'):
                for lang in ('en', 'de'):
                    (out / 'bpe' / 'unclean').mkdir(parents=True, exist_ok=True)
                    (out / 'bpe' / 'unclean' / f'{split}.{lang}').write_bytes((raw / f'train.{lang}').read_bytes())
        r = measure([sys.executable, '-m', 'tools.data.prepare_wmt14_en_de', '--out', out, '--raw-dir', raw,
                     '--nproc', '1', '--no-download', '--stages', stage], stage)
        peaks.append(r['peak_rss_mib'])
        assert (out / 'text' / 'train.de').exists() if stage == 'text' else (out / 'bpe' / 'train.de').exists()
    assert peaks[1] - peaks[0] < 10, peaks


def test_measure_reports_the_peak_of_the_process_tree():
    code = ('import multiprocessing as mp, time\n'
            'def f(_):\n    b = bytearray(150 * 2**20); time.sleep(0.5); return len(b)\n'
            'if __name__ == "__main__":\n    print(mp.Pool(2).map(f, [0, 1]))')
    r = measure([sys.executable, '-c', code], 'probe')
    assert r['rc'] == 0 and r['seconds'] >= 0.5
    assert 150 <= r['peak_rss_mib'] < 400  # the largest single process: one worker's 150 MiB
    assert r['tree_rss_mib'] >= 300  # both workers at once, sampled


def test_fairseq_batch_rate_times_the_epoch_or_the_first_batches(tmp_path, capsys):
    from tools.benchmarks import data

    make_tiny_en_de.make_corpus(tmp_path / 'raw', n_train=400, n_valid=20, n_test=20, seed=2)
    wmt.prepare(tmp_path / 'out', tmp_path / 'raw', bpe_tokens=300, workers=1, download=False)
    rates = []
    for limit in ('0', '2'):
        capsys.readouterr()
        data.main(['loaders', '--wmt-bin', str(tmp_path / 'out' / 'bin'), '--max-tokens', '256',
                   '--wmt-batches', limit])
        rates.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    epoch, first = rates
    assert epoch['batches'] > 2 and first['batches'] == 2
    assert epoch['tokens'] > first['tokens'] > 0 and first['tokens_per_s'] > 0
