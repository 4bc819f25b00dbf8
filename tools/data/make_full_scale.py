"""Synthetic stand-ins for the real datasets at their real volume and in their real on-disk formats.

    python tools/data/make_full_scale.py voc        --scale full --out /work/data_scale/voc
    python tools/data/make_full_scale.py cityscapes --scale 0.05 --out /work/data_scale/cityscapes
    python tools/data/make_full_scale.py wmt        --scale 0.01 --out /work/data_scale/wmt14

``--scale full`` writes the official counts; a fraction (``0.1``) writes that share of every split, city and
corpus (rounded, at least one). The content is random, the formats are the downloads':

- **voc**: ``VOCdevkit/VOC2007`` (5,011 trainval + 4,952 test, ids ``000005``-style drawn from 1..9963) and
  ``VOCdevkit/VOC2012`` (11,540 trainval, ids ``2008_000123``), JPEGs mostly 500x375 / 375x500 (2 % progressive),
  XML as the devkit writes it (``<source>``, ``<size>``, ``<segmented>``, 1-6 objects with ``<pose>``,
  ``<truncated>``, ``<difficult>``; persons in VOC2012 with ``<part>`` head/hand/foot boxes; a few float
  coordinates), ~0.3 % images without objects, ``ImageSets/Main/{train,val,trainval,test}.txt`` and the
  per-class ``<class>_<split>.txt`` lists.
- **cityscapes**: ``leftImg8bit/{train,val}/<city>/`` with the official cities and per-city counts (2,975 + 500
  at full scale) of 2048x1024 RGB PNGs (~2 MB), and ``gtFine/.../*_gtFine_polygons.json`` with
  ``*_gtFine_labelIds.png`` and ``*_gtFine_instanceIds.png`` rasterised from those polygons by cityscapesscripts
  itself (so labelIds and polygons agree pixel for pixel); ``--only labelIds|polygons`` leaves the other out.
- **wmt**: the four archives of fairseq's prepare-wmt14en2de.sh as their tgz layout
  (``training-parallel-europarl-v7.tgz`` -> ``training/europarl-v7.de-en.{de,en}``,
  ``training-parallel-commoncrawl.tgz`` -> ``commoncrawl.de-en.{de,en}``, ``training-parallel-nc-v12.tgz`` ->
  ``training/news-commentary-v12.de-en.{de,en}``, ``test-full.tgz`` -> ``test-full/newstest2014-deen-{src.en,
  ref.de}.sgm``), 1,920,209 + 2,399,123 + 270,769 pairs and 3,003 test segments at full scale; Zipfian words of
  a synthetic vocabulary with umlauts, lognormal lengths (long tails, Common Crawl lines over 1,000 words), and
  web-text mess in Common Crawl: Moses-escaped entities, non-breaking and zero-width spaces, CRLF line ends,
  invalid UTF-8 bytes, U+2028/U+0085 inside lines, empty lines on one side. The counts of each kind are
  written to ``manifest.json``.

Same arguments, same bytes, whatever ``--nproc`` (each image or chunk has its own seed).
"""
import argparse
import contextlib
import gzip
import io
import json
import math
import os
import os.path as osp
import sys
import tarfile
from multiprocessing import Pool

import numpy as np

from tools.zoo.errors import InputError, run_main

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train',
               'tvmonitor')
VOC_COUNTS = {('2007', 'trainval'): 5011, ('2007', 'test'): 4952, ('2012', 'trainval'): 11540}
#: official gtFine images per city
CITY_COUNTS = {
    'train': {'aachen': 174, 'bochum': 96, 'bremen': 316, 'cologne': 154, 'darmstadt': 85, 'dusseldorf': 221,
              'erfurt': 109, 'hamburg': 248, 'hanover': 196, 'jena': 119, 'krefeld': 99, 'monchengladbach': 94,
              'strasbourg': 365, 'stuttgart': 196, 'tubingen': 144, 'ulm': 95, 'weimar': 142, 'zurich': 122},
    'val': {'frankfurt': 267, 'lindau': 59, 'munster': 174},
}
#: corpus -> (archive, path inside it without .de/.en, pairs in the release, mean words, web-text mess)
WMT_CORPORA = {
    'europarl': ('training-parallel-europarl-v7.tgz', 'training/europarl-v7.de-en', 1920209, 25, False),
    'commoncrawl': ('training-parallel-commoncrawl.tgz', 'commoncrawl.de-en', 2399123, 20, True),
    'news-commentary': ('training-parallel-nc-v12.tgz', 'training/news-commentary-v12.de-en', 270769, 24, False),
}
WMT_TEST_SEGMENTS = 3003


def atomic_write(path, data):
    """Write a generated file: to a temporary name, then renamed (no fsync: this is scratch data, and tens of
    thousands of fsyncs would make the generator disk-bound)."""
    tmp = f'{path}.{os.getpid()}.partial'
    with open(tmp, 'wb') as f:
        f.write(data.encode('utf-8') if isinstance(data, str) else data)
    os.replace(tmp, path)


def scaled(n, scale):
    return n if scale == 1 else max(1, int(round(n * scale)))


def parse_scale(text):
    if text == 'full':
        return 1.0
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value <= 1:
        raise InputError(f'--scale {text}: give "full" or a fraction in (0, 1]')
    return value


def _pool_map(fn, jobs, nproc):
    if nproc > 1 and len(jobs) > 1:
        with Pool(nproc) as pool:
            return pool.map(fn, jobs, chunksize=max(1, min(64, len(jobs) // (4 * nproc))))
    return [fn(j) for j in jobs]


# --- Pascal VOC ----------------------------------------------------------------------------------------------
def _voc_ids(scale, rng):
    """{(year, split): [ids]} with VOC's id styles."""
    n07 = {s: scaled(VOC_COUNTS['2007', s], scale) for s in ('trainval', 'test')}
    pool07 = np.sort(rng.choice(np.arange(1, 9964), n07['trainval'] + n07['test'], replace=False))
    is_test = np.zeros(len(pool07), bool)
    is_test[rng.choice(len(pool07), n07['test'], replace=False)] = True
    ids = {('2007', 'trainval'): [f'{i:06d}' for i in pool07[~is_test]],
           ('2007', 'test'): [f'{i:06d}' for i in pool07[is_test]]}
    n12 = scaled(VOC_COUNTS['2012', 'trainval'], scale)
    per_year = np.bincount(rng.integers(0, 5, n12), minlength=5)  # 2007_ ... 2011_ prefixes
    ids12 = []
    for y, n in enumerate(per_year):
        seq = np.sort(rng.choice(np.arange(1, 5000), n, replace=False))
        ids12 += [f'{2007 + y}_{s:06d}' for s in seq]
    ids['2012', 'trainval'] = ids12
    return ids


def _voc_image(job):
    """Write one JPEG + XML; returns (id, [(class, difficult)]) for the per-class lists."""
    voc, year, img_id, seed, stats_only = job
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    w, h = [(500, 375), (375, 500), (500, 333), (333, 500), (500, 281)][
        rng.choice(5, p=[0.55, 0.2, 0.12, 0.08, 0.05])]
    low = rng.uniform(40, 220, (6, 8, 3))  # a smooth background, then noise
    img = Image.fromarray(low.astype(np.uint8)).resize((w, h), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    n_obj = 0 if rng.random() < 0.003 else int(rng.choice(np.arange(1, 7), p=[0.45, 0.25, 0.12, 0.08, 0.06, 0.04]))
    objects = []
    for _ in range(n_obj):
        bw, bh = int(rng.integers(12, w)), int(rng.integers(12, h))
        x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
        name = VOC_CLASSES[int(rng.integers(20))]
        draw.rectangle((x0, y0, x0 + bw - 1, y0 + bh - 1), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        truncated = int(x0 == 0 or y0 == 0 or x0 + bw == w or y0 + bh == h or rng.random() < 0.2)
        difficult = int(rng.random() < 0.08)
        objects.append((name, (x0 + 1, y0 + 1, x0 + bw, y0 + bh), truncated, difficult))
    arr = np.asarray(img, np.float32) + rng.normal(0, 12, (h, w, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    progressive = rng.random() < 0.02
    segmented = int(rng.random() < 0.17)
    if not stats_only:
        buf = io.BytesIO()
        img.save(buf, 'JPEG', quality=int(rng.integers(85, 96)), progressive=progressive, optimize=progressive)
        atomic_write(osp.join(voc, 'JPEGImages', img_id + '.jpg'), buf.getvalue())
        atomic_write(osp.join(voc, 'Annotations', img_id + '.xml'),
                     _voc_xml(year, img_id, w, h, segmented, objects, rng))
    return img_id, [(name, difficult) for name, _, _, difficult in objects], progressive


def _voc_xml(year, img_id, w, h, segmented, objects, rng):
    """The devkit's XML layout (tabs, <source>, <owner> in 2007; <part> for VOC2012 persons)."""
    def box(b, floats=False):
        fmt = (lambda v: f'{v:.1f}') if floats else str
        return ('<bndbox>\n' + ''.join(f'\t\t\t<{k}>{fmt(v)}</{k}>\n'
                                       for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), b)) + '\t\t</bndbox>')
    lines = ['<annotation>', f'\t<folder>VOC{year}</folder>', f'\t<filename>{img_id}.jpg</filename>',
             f'\t<source>\n\t\t<database>The VOC{year} Database</database>\n\t\t<annotation>PASCAL VOC{year}'
             f'</annotation>\n\t\t<image>flickr</image>\n\t</source>']
    if year == '2007':
        lines.append(f'\t<owner>\n\t\t<flickrid>{int(rng.integers(1e8, 1e9))}</flickrid>\n\t\t<name>?</name>\n'
                     '\t</owner>')
    lines += [f'\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>',
              f'\t<segmented>{segmented}</segmented>']
    for name, b, truncated, difficult in objects:
        floats = year == '2012' and rng.random() < 0.05
        obj = [f'\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>{rng.choice(["Unspecified", "Left", "Frontal"])}'
               f'</pose>\n\t\t<truncated>{truncated}</truncated>', f'\t\t<difficult>{difficult}</difficult>',
               f'\t\t{box(b, floats)}']
        if year == '2012' and name == 'person' and rng.random() < 0.5:
            x0, y0, x1, y1 = b
            for part in ('head', 'hand', 'foot')[:int(rng.integers(1, 4))]:
                px0, py0 = int(rng.integers(x0, x1 + 1)), int(rng.integers(y0, y1 + 1))
                pb = (px0, py0, int(rng.integers(px0, x1 + 1)), int(rng.integers(py0, y1 + 1)))
                obj.append(f'\t\t<part>\n\t\t\t<name>{part}</name>\n\t\t\t' + box(pb).replace('\n\t\t', '\n\t\t\t')
                           + '\n\t\t</part>')
        lines += obj + ['\t</object>']
    return '\n'.join(lines + ['</annotation>']) + '\n'


def make_voc(out, scale=1.0, seed=0, nproc=1):
    rng = np.random.default_rng([seed, 7])
    ids = _voc_ids(scale, rng)
    counts, objects, progressive = {}, {}, 0
    for (year, split), split_ids in ids.items():
        voc = osp.join(out, 'VOCdevkit', f'VOC{year}')
        for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
            os.makedirs(osp.join(voc, sub), exist_ok=True)
        jobs = [(voc, year, i, [seed, int(year), hash_id(i)], False) for i in split_ids]
        results = _pool_map(_voc_image, jobs, nproc)
        progressive += sum(r[2] for r in results)
        objects[year, split] = {i: objs for i, objs, _ in results}
        counts[f'VOC{year} {split}'] = len(split_ids)
        main = osp.join(voc, 'ImageSets', 'Main')
        if split == 'trainval':  # the devkit's train/val halves
            half = rng.random(len(split_ids)) < 0.5
            lists = {'trainval': split_ids, 'train': [i for i, t in zip(split_ids, half) if t],
                     'val': [i for i, t in zip(split_ids, half) if not t]}
        else:
            lists = {'test': split_ids}
        for name, listed in lists.items():
            atomic_write(osp.join(main, f'{name}.txt'), ''.join(i + '\n' for i in listed))
            for cls in VOC_CLASSES:  # 1 present, 0 only difficult, -1 absent
                rows = []
                for i in listed:
                    flags = [d for n, d in objects[year, split][i] if n == cls]
                    rows.append(f'{i} {(-1 if not flags else 0 if all(flags) else 1):2d}\n')
                atomic_write(osp.join(main, f'{cls}_{name}.txt'), ''.join(rows))
    n_obj = sum(len(o) for split in objects.values() for o in split.values())
    return dict(images=counts, objects=n_obj, progressive_jpegs=progressive,
                difficult=sum(d for split in objects.values() for o in split.values() for _, d in o),
                without_objects=sum(not o for split in objects.values() for o in split.values()))


def hash_id(text):
    """A stable integer of a string (Python's hash() is salted per process)."""
    return int.from_bytes(text.encode(), 'little') % (2 ** 63)


# --- Cityscapes ----------------------------------------------------------------------------------------------
def _city_polygons(rng, width=2048, height=1024):
    """A street scene as Cityscapes polygons, drawn in order (later ones on top)."""
    def rect(x0, y0, x1, y1):
        return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    k = width / 2048  # pixel sizes below are for the real 2048 x 1024

    def px(v):
        return max(1, int(v * k))
    objs = [('sky', rect(0, 0, width - 1, height // 2))]
    horizon = int(rng.uniform(0.42, 0.55) * height)
    x = 0
    while x < width:
        w = int(rng.integers(width // 12, width // 4))
        top = int(rng.uniform(0.05, 0.3) * height)
        jag = [[x + int(t * w), top + int(rng.integers(-px(20), px(20)))] for t in np.linspace(0, 1, 6)]
        objs.append(('building', jag + [[min(width - 1, x + w), horizon], [x, horizon]]))
        x += w
    for _ in range(int(rng.integers(1, 5))):
        cx, cy, rx, ry = rng.uniform(0, width), rng.uniform(0.3, 0.45) * height, rng.uniform(40, 200) * k, \
            rng.uniform(40, 150) * k
        a = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        objs.append(('vegetation', [[int(cx + rx * np.cos(t)), int(cy + ry * np.sin(t))] for t in a]))
    kerb = horizon + int(rng.uniform(0.05, 0.1) * height)
    objs.append(('sidewalk', rect(0, horizon, width - 1, kerb)))
    objs.append(('road', [[0, kerb], [width - 1, kerb], [width - 1, height - 1], [0, height - 1]]))
    for _ in range(int(rng.integers(0, 6))):
        x0 = int(rng.integers(0, width - px(40)))
        objs.append(('pole', rect(x0, int(rng.uniform(0.15, 0.35) * height), x0 + px(12), kerb)))
    for _ in range(int(rng.integers(1, 8))):
        h, w = int(rng.uniform(0.08, 0.25) * height), int(rng.uniform(0.06, 0.2) * width)
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(kerb - h // 2, height - h - px(60)))
        objs.append((['car', 'car', 'truck', 'bus', 'bicycle'][int(rng.integers(5))], rect(x0, y0, x0 + w, y0 + h)))
    for _ in range(int(rng.integers(0, 10))):
        h, w = int(rng.uniform(0.1, 0.25) * height), int(rng.uniform(0.01, 0.03) * width)
        x0, y0 = int(rng.integers(0, width - w)), max(0, kerb - h + int(rng.integers(-px(20), px(20))))
        objs.append((['person', 'person', 'rider'][int(rng.integers(3))], rect(x0, y0, x0 + w, y0 + h)))
    objs.append(('ego vehicle', [[0, height - 1], [width - 1, height - 1], [width - 1, height - px(60)],
                                 [width // 2, height - px(90)], [0, height - px(60)]]))
    objs.append(('out of roi', rect(0, 0, width - 1, px(3))))
    return dict(imgHeight=height, imgWidth=width,
                objects=[dict(label=label, polygon=poly) for label, poly in objs])


def _city_frame(job):
    root, split, city, stem, seed, only, (height, width) = job
    from cityscapesscripts.helpers.annotation import Annotation
    from cityscapesscripts.helpers.labels import id2label
    from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
    from cityscapesscripts.preparation.json2labelImg import createLabelImage
    from PIL import Image
    rng = np.random.default_rng(seed)
    poly = _city_polygons(rng, width, height)
    text = json.dumps(poly, indent=4)
    ann = Annotation()
    ann.fromJsonText(text)
    ids = np.asarray(createLabelImage(ann, 'ids'))
    lut = np.zeros((256, 3), np.float32)
    for i, label in id2label.items():
        if 0 <= i < 256:
            lut[i] = label.color
    img = lut[ids] * rng.uniform(0.7, 1.1) + rng.integers(0, 6, (*ids.shape, 3))  # ~2 MB as PNG
    img_dir, gt_dir = osp.join(root, 'leftImg8bit', split, city), osp.join(root, 'gtFine', split, city)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, 'PNG')
    atomic_write(osp.join(img_dir, f'{stem}_leftImg8bit.png'), buf.getvalue())
    if only != 'labelIds':
        atomic_write(osp.join(gt_dir, f'{stem}_gtFine_polygons.json'), text)
    if only != 'polygons':
        for suffix, image in (('labelIds', Image.fromarray(ids)),  # instanceIds: 16-bit, id * 1000 + instance
                              ('instanceIds', Image.fromarray(np.asarray(createInstanceImage(ann, 'ids'))
                                                              .astype(np.uint16)))):
            buf = io.BytesIO()
            image.save(buf, 'PNG')
            atomic_write(osp.join(gt_dir, f'{stem}_gtFine_{suffix}.png'), buf.getvalue())
    return len(buf.getvalue())


def make_cityscapes(out, scale=1.0, seed=0, nproc=1, splits=('train', 'val'), only=None, size=(1024, 2048)):
    jobs, counts = [], {}
    for s, split in enumerate(splits):
        counts[split] = 0
        for c, (city, n) in enumerate(CITY_COUNTS[split].items()):
            os.makedirs(osp.join(out, 'leftImg8bit', split, city), exist_ok=True)
            os.makedirs(osp.join(out, 'gtFine', split, city), exist_ok=True)
            for i in range(scaled(n, scale)):
                jobs.append((out, split, city, f'{city}_{i // 30:06d}_{19 + 30 * (i % 30):06d}',
                             [seed, s, c, i], only, tuple(size)))
            counts[split] += scaled(n, scale)
    _pool_map(_city_frame, jobs, nproc)
    return dict(images=counts, frames=len(jobs))


# --- WMT14 En-De ---------------------------------------------------------------------------------------------
_SYL_EN = ['th', 'an', 're', 'st', 'ing', 'or', 'es', 'al', 'pro', 'com', 'tion', 'ver', 'ment', 'ab', 'le',
           'ca', 'di', 'po', 'mi', 'un', 'ex', 'ly', 'ed', 'ter', 'sh', 'wa', 'bo', 'ne', 'gi', 'fu']
_SYL_DE = ['sch', 'ei', 'ung', 'ver', 'ge', 'ie', 'en', 'st', 'ä', 'ö', 'ü', 'ß', 'au', 'keit', 'lich', 'tz',
           'ber', 'hei', 'an', 'zu', 'ck', 'er', 'wa', 'mo', 'ri', 'la', 'nd', 'ra', 'ni', 'ho']
VOCAB_SIZE = 200000  # word types per language; Zipf over them (exponent 1.1), plus numbers and names


def _vocabulary(seed):
    rng = np.random.default_rng([seed, 99])
    vocab = {}
    for lang, syl in (('en', _SYL_EN), ('de', _SYL_DE)):
        n_syl = np.minimum(1 + rng.poisson(1.6, VOCAB_SIZE), 7)
        picks = rng.integers(0, len(syl), n_syl.sum())
        words, k = [], 0
        for n in n_syl:
            words.append(''.join(syl[j] for j in picks[k:k + n]))
            k += n
        vocab[lang] = np.array(words, dtype=object)
    for i in range(500, VOCAB_SIZE, 37):  # names and capitalised words, shared
        vocab['de'][i] = vocab['en'][i] = vocab['en'][i].capitalize()
    weights = 1.0 / np.arange(1, VOCAB_SIZE + 1) ** 1.1
    return vocab, np.cumsum(weights) / weights.sum()


_PUNCT_EN = [',', '.', '"', "'s", '-', '(', ')', ':', '?', '%']
_PUNCT_DE = [',', '.', '„', '“', '-', '(', ')', ':', '?', '%']
#: per Common Crawl line, the probability of each kind of mess
MESS = {'entities': 0.01, 'nbsp': 0.01, 'zero_width': 0.005, 'crlf': 0.02, 'invalid_utf8': 0.00002,
        'line_separator': 0.000005, 'empty_side': 0.001, 'very_long': 0.0005}


def _wmt_chunk(job):
    """(en bytes, de bytes, mess counts) of pairs ``start..start+n`` of one corpus."""
    corpus, start, n, seed, mean_words, messy, vocab_seed = job
    vocab, cdf = _vocabulary_cached(vocab_seed)
    rng = np.random.default_rng([seed, hash_id(corpus), start])
    sigma = 0.6
    lengths = np.maximum(1, rng.lognormal(math.log(mean_words) - sigma ** 2 / 2, sigma, n)).astype(int)
    counts = dict.fromkeys(MESS, 0)
    out = {'en': [], 'de': []}
    for k in range(n):
        L = int(lengths[k])
        if messy and rng.random() < MESS['very_long']:
            L = int(rng.integers(1000, 3000))
            counts['very_long'] += 1
        ids = np.searchsorted(cdf, rng.random(L))
        ratio = rng.lognormal(0, 0.12) if not (messy and rng.random() < 0.05) else rng.uniform(0.2, 4)
        de_ids = np.searchsorted(cdf, rng.random(max(1, int(round(L * ratio)))))
        pair = {}
        for lang, word_ids, punct in (('en', ids, _PUNCT_EN), ('de', de_ids, _PUNCT_DE)):
            words = list(vocab[lang][word_ids])
            for p in rng.integers(0, len(words), max(1, len(words) // 8)):
                words[p] += punct[int(rng.integers(len(punct)))]
            if rng.random() < 0.1:
                words.insert(int(rng.integers(len(words) + 1)), str(int(rng.integers(1, 2030))))
            words[0] = words[0].capitalize()
            pair[lang] = ' '.join(words) + ('.' if rng.random() < 0.8 else '')
        eol = b'\n'
        if messy:
            r = rng.random(len(MESS))
            if start == 0 and k in (7, 11):  # at least one of each rare kind, whatever the scale
                r[4 if k == 7 else 5] = 0
            if r[0] < MESS['entities']:
                pair['en'] = pair['en'].replace(' ', ' &amp; ', 1) + ' &quot;x&quot; &#39;s &lt;b&gt;'
                counts['entities'] += 1
            if r[1] < MESS['nbsp']:
                pair['de'] = pair['de'].replace(' ', '\u00a0', 2)
                counts['nbsp'] += 1
            if r[2] < MESS['zero_width']:
                pair['en'] = pair['en'].replace(' ', ' \u200b', 1)
                counts['zero_width'] += 1
            if r[3] < MESS['crlf']:
                eol = b'\r\n'
                counts['crlf'] += 1
            if r[5] < MESS['line_separator']:
                pair['de'] = pair['de'].replace(' ', '\u2028', 1) + '\x85'
                counts['line_separator'] += 1
            if r[6] < MESS['empty_side']:
                pair['en' if r[7] < 0.5 else 'de'] = ''
                counts['empty_side'] += 1
        en, de = pair['en'].encode(), pair['de'].encode()
        if messy and r[4] < MESS['invalid_utf8']:
            de = de[:len(de) // 2] + b'\xff\xc3' + de[len(de) // 2:]  # a stray byte, a cut-off sequence
            counts['invalid_utf8'] += 1
        out['en'].append(en + eol)
        out['de'].append(de + eol)
    return b''.join(out['en']), b''.join(out['de']), counts


_VOCAB_CACHE = {}


def _vocabulary_cached(seed):
    if seed not in _VOCAB_CACHE:
        _VOCAB_CACHE[seed] = _vocabulary(seed)
    return _VOCAB_CACHE[seed]


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 1404172800, 0o644  # 2014-07-01: same bytes every run
    tar.addfile(info, io.BytesIO(data))


@contextlib.contextmanager
def _tgz(path, level=9):
    """A tar.gz writer whose gzip header carries no time stamp (same arguments, same bytes)."""
    with open(path, 'wb') as raw, gzip.GzipFile(filename='', mode='wb', compresslevel=level, fileobj=raw,
                                                mtime=0) as gz, tarfile.open(fileobj=gz, mode='w') as tar:
        yield tar


def _sgm(kind, lang, segments):
    head = ('<srcset setid="newstest2014" srclang="any">' if kind == 'src'
            else f'<refset setid="newstest2014" srclang="any" trglang="{lang}">')
    lines, seg = [head], 0
    for d in range(0, len(segments), 20):
        lines.append(f'<doc sysid="ref" docid="{1000 + d // 20}-news" genre="news" origlang="en">')
        lines.append('<p>')
        for text in segments[d:d + 20]:
            seg += 1
            lines.append(f'<seg id="{seg}">{text}</seg>')
        lines += ['</p>', '</doc>']
    lines.append(head.split()[0].replace('<', '</') + '>')
    return ('\r\n'.join(lines) + '\r\n').encode()  # the WMT14 sgm files end their lines in CRLF


def make_wmt(out, scale=1.0, seed=0, nproc=1, chunk=20000):
    os.makedirs(out, exist_ok=True)
    manifest = {'pairs': {}, 'mess': dict.fromkeys(MESS, 0)}
    for corpus, (archive, stem, total, mean_words, messy) in WMT_CORPORA.items():
        n = scaled(total, scale)
        jobs = [(corpus, s, min(chunk, n - s), seed, mean_words, messy, seed) for s in range(0, n, chunk)]
        path = osp.join(out, archive)
        tmp = path + '.partial'
        plain = {lang: osp.join(out, f'.{corpus}.{lang}.partial') for lang in ('en', 'de')}
        with open(plain['en'], 'wb') as f_en, open(plain['de'], 'wb') as f_de:
            for i in range(0, len(jobs), 4 * max(1, nproc)):  # bounded memory: a window of chunks at a time
                for en, de, counts in _pool_map(_wmt_chunk, jobs[i:i + 4 * max(1, nproc)], nproc):
                    f_en.write(en)
                    f_de.write(de)
                    for k, v in counts.items():
                        manifest['mess'][k] += v
        with _tgz(tmp, 1) as tar:  # level 1: the format, not the ratio, matters
            for lang in ('de', 'en'):
                info = tar.gettarinfo(plain[lang], f'{stem}.{lang}')
                info.mtime, info.uid, info.gid, info.uname, info.gname = 1404172800, 0, 0, '', ''
                with open(plain[lang], 'rb') as f:
                    tar.addfile(info, f)
                os.remove(plain[lang])
        os.replace(tmp, path)
        manifest['pairs'][corpus] = n
    n_test = scaled(WMT_TEST_SEGMENTS, scale)
    en, de, _ = _wmt_chunk(('newstest', 0, n_test, seed, 22, False, seed))
    en_segs = [line.replace('&', '&amp;') if i % 50 else line + ' AT&amp;T &quot;quoted&quot;'
               for i, line in enumerate(en.decode().splitlines())]
    de_segs = [line + ' ’s' if i % 40 == 0 else line for i, line in enumerate(de.decode().splitlines())]
    with _tgz(osp.join(out, 'test-full.tgz') + '.partial') as tar:
        _add_bytes(tar, 'test-full/newstest2014-deen-src.en.sgm', _sgm('src', 'en', en_segs))
        _add_bytes(tar, 'test-full/newstest2014-deen-ref.de.sgm', _sgm('ref', 'de', de_segs))
    os.replace(osp.join(out, 'test-full.tgz') + '.partial', osp.join(out, 'test-full.tgz'))
    manifest['test_segments'] = n_test
    atomic_write(osp.join(out, 'manifest.json'), json.dumps(manifest, indent=2) + '\n')
    return manifest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('dataset', choices=['voc', 'cityscapes', 'wmt'])
    parser.add_argument('--scale', default='full', help='"full" (the official counts) or a fraction, e.g. 0.1')
    parser.add_argument('--out', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--nproc', type=int, default=os.cpu_count(), help='processes (default: all cores)')
    parser.add_argument('--splits', nargs='+', default=['train', 'val'], choices=['train', 'val'],
                        help='cityscapes: the splits to write')
    parser.add_argument('--size', type=int, nargs=2, default=(1024, 2048), metavar=('H', 'W'),
                        help='cityscapes: frame size (default the real 1024 x 2048; smaller for tests)')
    parser.add_argument('--only', choices=['labelIds', 'polygons'],
                        help='cityscapes: write only this annotation (default both, and instanceIds)')
    args = parser.parse_args(argv)
    scale = parse_scale(args.scale)
    if args.dataset == 'voc':
        result = make_voc(args.out, scale, args.seed, args.nproc)
    elif args.dataset == 'cityscapes':
        result = make_cityscapes(args.out, scale, args.seed, args.nproc, args.splits, args.only, args.size)
    else:
        result = make_wmt(args.out, scale, args.seed, args.nproc)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(run_main(main))
