"""Write a tiny, learnable Pascal-VOC-format dataset of drawn objects (for tests and the demo).

Each image is a real JPEG with 1-3 objects drawn on a noisy background; each class has its own shape
and colour, so a small detector learns it in a couple of CPU minutes. The layout is VOC2007's, so
MMDetection's ``VOCDataset`` and ``VOCMetric`` read it unchanged:

    <out>/VOCdevkit/VOC2007/{JPEGImages/*.jpg, Annotations/*.xml, ImageSets/Main/{trainval,test}.txt}

Usage: python tools/data/make_tiny_voc.py [--out data/tiny_voc] [--trainval 160] [--test 40] [--seed 0]
The same arguments always give the same files.
"""
import argparse
import os
import os.path as osp
import random
import sys
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: VOC class -> (shape, RGB colour, (min, max) aspect ratio w/h) of its drawn objects
CLASSES = {
    'tvmonitor': ('frame', (40, 80, 220), (1.2, 1.6)),
    'bottle': ('rect', (40, 170, 60), (0.3, 0.5)),
    'sheep': ('ellipse', (235, 225, 90), (0.9, 1.3)),
}
DEFAULT_OUT = 'data/tiny_voc'


def _overlaps(box, boxes):
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def _draw_object(draw, shape, colour, box, rng):
    jitter = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
    x0, y0, x1, y1 = box
    if shape == 'rect':
        draw.rectangle(box, fill=jitter)
        cap_w = (x1 - x0) // 3  # a bottle neck on top, inside the box
        draw.rectangle((x0 + cap_w, y0, x1 - cap_w, y0 + (y1 - y0) // 6), fill=(30, 30, 30))
    elif shape == 'ellipse':
        draw.ellipse(box, fill=jitter)
    else:  # frame: a screen with a dark bezel
        draw.rectangle(box, fill=(20, 20, 20))
        border = max(3, (x1 - x0) // 10)
        draw.rectangle((x0 + border, y0 + border, x1 - border, y1 - border), fill=jitter)


def make_image(rng):
    """One (PIL image, [(class, (xmin, ymin, xmax, ymax)) in 0-based pixels]) sample."""
    width, height = rng.randint(240, 340), rng.randint(200, 300)
    background = np.array([rng.randint(60, 200) for _ in range(3)], dtype=np.float32)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, 20, (height, width, 3))
    img = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    objects = []
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(list(CLASSES))
        shape, colour, (ar_lo, ar_hi) = CLASSES[name]
        for _attempt in range(20):
            h = rng.randint(50, min(160, height - 10))
            w = int(h * rng.uniform(ar_lo, ar_hi))
            if w < 20 or w > width - 10:
                continue
            x0, y0 = rng.randint(0, width - w - 1), rng.randint(0, height - h - 1)
            box = (x0, y0, x0 + w, y0 + h)
            if not _overlaps(box, [b for _, b in objects]):
                _draw_object(draw, shape, colour, box, rng)
                objects.append((name, box))
                break
    return img.filter(ImageFilter.GaussianBlur(0.6)), objects


def voc_xml(filename, width, height, objects):
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'VOC2007'
    ET.SubElement(root, 'filename').text = filename
    size = ET.SubElement(root, 'size')
    for key, value in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(root, 'segmented').text = '0'
    for name, (x0, y0, x1, y1) in objects:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = name
        ET.SubElement(obj, 'pose').text = 'Unspecified'
        ET.SubElement(obj, 'truncated').text = '0'
        ET.SubElement(obj, 'difficult').text = '0'
        bndbox = ET.SubElement(obj, 'bndbox')
        # VOC boxes are 1-based and inclusive
        for key, value in (('xmin', x0 + 1), ('ymin', y0 + 1), ('xmax', x1), ('ymax', y1)):
            ET.SubElement(bndbox, key).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding='unicode')


def make_tiny_voc(out=DEFAULT_OUT, trainval=160, test=40, seed=0):
    """Write the dataset under ``<out>/VOCdevkit/VOC2007`` and return that directory."""
    voc = osp.join(out, 'VOCdevkit', 'VOC2007')
    for sub in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(voc, sub), exist_ok=True)
    rng = random.Random(seed)
    splits = {'trainval': [], 'test': []}
    for index in range(trainval + test):
        split = 'trainval' if index < trainval else 'test'
        img_id = f'{index:06d}'
        img, objects = make_image(rng)
        img.save(osp.join(voc, 'JPEGImages', img_id + '.jpg'), quality=92)
        with open(osp.join(voc, 'Annotations', img_id + '.xml'), 'w') as f:
            f.write(voc_xml(img_id + '.jpg', img.width, img.height, objects))
        splits[split].append(img_id)
    for split, ids in splits.items():
        with open(osp.join(voc, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
            f.write(''.join(i + '\n' for i in ids))
    return voc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=DEFAULT_OUT, help=f'output root (default {DEFAULT_OUT})')
    parser.add_argument('--trainval', type=int, default=160, help='trainval images (default 160)')
    parser.add_argument('--test', type=int, default=40, help='test images (default 40)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.trainval < 1 or args.test < 1:
        parser.error('--trainval and --test must be at least 1')
    voc = make_tiny_voc(args.out, args.trainval, args.test, args.seed)
    print(f'wrote {args.trainval} trainval + {args.test} test images of {", ".join(CLASSES)} to {voc}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
