"""Write a tiny, deterministic dataset in the Cityscapes layout, for tests, demos and CPU smoke runs.

    python tools/data/make_tiny_cityscapes.py            # -> data/tiny_cityscapes (gitignored)

Each image is a street-like scene (sky, skyline of buildings, trees, sidewalk, road, cars, people) whose
regions carry their class's Cityscapes colour plus noise and a per-image brightness change, so a small
network can learn it in a minute on a CPU. Seven of the 19 train ids occur (road, sidewalk, building,
vegetation, sky, person, car); the others are absent and score ``nan`` in mmseg's metric, which mIoU
leaves out. Masks carry 255 (ignore) for the ego-vehicle rows and a one-pixel void border around every car
and person, as Cityscapes does. Both ``*_gtFine_labelIds.png`` (as downloaded) and
``*_gtFine_labelTrainIds.png`` (as prepared, through the cityscapesscripts table) are written.
"""
import argparse
import os
import os.path as osp

import numpy as np
from PIL import Image

from tools.data.prepare_cityscapes import IDS_SUFFIX, IMG_SUFFIX, TRAIN_IDS_SUFFIX, label_id_to_train_id_lut

#: Cityscapes label ids (not train ids) of what the scenes contain, and their colours
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR, UNLABELED, EGO = 7, 8, 11, 21, 23, 24, 26, 0, 1
COLOURS = {ROAD: (128, 64, 128), SIDEWALK: (244, 35, 232), BUILDING: (70, 70, 70),
           VEGETATION: (107, 142, 35), SKY: (70, 130, 180), PERSON: (220, 20, 60), CAR: (0, 0, 142)}
CITIES = {'train': ('aachen', 'bremen', 'zurich'), 'val': ('frankfurt', 'munster')}


def make_scene(rng, height, width):
    """(RGB uint8 image, label-id uint8 mask) of one random street scene."""
    ids = np.full((height, width), SKY, np.uint8)
    horizon = int(rng.uniform(0.45, 0.6) * height)
    x = 0
    while x < width:  # skyline: blocks of buildings of random width and height
        w = int(rng.integers(width // 10, width // 4))
        top = int(rng.uniform(0.08, 0.35) * height)
        ids[top:horizon, x:x + w] = BUILDING
        x += w
    yy, xx = np.mgrid[:height, :width]
    for _ in range(rng.integers(1, 4)):  # trees in front of the buildings
        cy, cx = rng.uniform(0.3, 0.5) * height, rng.uniform(0, width)
        ry, rx = rng.uniform(0.08, 0.15) * height, rng.uniform(0.05, 0.12) * width
        ids[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = VEGETATION
    kerb = horizon + int(rng.uniform(0.05, 0.12) * height)
    ids[horizon:kerb] = SIDEWALK
    ids[kerb:] = ROAD
    objects = []
    for _ in range(rng.integers(1, 4)):  # cars on the road
        h, w = int(rng.uniform(0.12, 0.2) * height), int(rng.uniform(0.12, 0.25) * width)
        y0, x0 = int(rng.integers(kerb - h // 2, max(kerb - h // 2 + 1, height - h - height // 8))), \
            int(rng.integers(0, width - w))
        objects.append((y0, x0, h, w, CAR))
    for _ in range(rng.integers(0, 3)):  # people on the sidewalk
        h, w = int(rng.uniform(0.2, 0.3) * height), max(2, int(rng.uniform(0.02, 0.04) * width))
        y0, x0 = max(0, kerb - h), int(rng.integers(0, width - w))
        objects.append((y0, x0, h, w, PERSON))
    for y0, x0, h, w, label in objects:  # one-pixel void border, as the Cityscapes polygons leave
        ids[max(0, y0 - 1):y0 + h + 1, max(0, x0 - 1):x0 + w + 1] = UNLABELED
        ids[y0:y0 + h, x0:x0 + w] = label
    ids[height - max(2, height // 16):] = EGO

    img = rng.normal(0, 12, (height, width, 3))  # sensor noise, then class colours and a global gain
    for label, colour in COLOURS.items():
        img[ids == label] += colour
    void = (ids == UNLABELED) | (ids == EGO)
    img[void] += rng.uniform(0, 255, (int(void.sum()), 3))
    img = img * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    return np.clip(img, 0, 255).astype(np.uint8), ids


def make_tiny_cityscapes(out='data/tiny_cityscapes', seed=0, per_city=(6, 4), height=64, width=128):
    """Write the dataset; returns ``{split: number of images}``. Same seed, same bytes."""
    lut = label_id_to_train_id_lut()
    counts = {}
    for s, (split, cities) in enumerate(CITIES.items()):
        n = per_city[s]
        for c, city in enumerate(cities):
            img_dir = osp.join(out, 'leftImg8bit', split, city)
            gt_dir = osp.join(out, 'gtFine', split, city)
            os.makedirs(img_dir, exist_ok=True)
            os.makedirs(gt_dir, exist_ok=True)
            for i in range(n):
                rng = np.random.default_rng([seed, s, c, i])
                img, ids = make_scene(rng, height, width)
                stem = f'{city}_{i:06d}_{19 + i:06d}'
                Image.fromarray(img).save(osp.join(img_dir, stem + IMG_SUFFIX))
                Image.fromarray(ids).save(osp.join(gt_dir, stem + IDS_SUFFIX))
                Image.fromarray(lut[ids].astype(np.uint8)).save(osp.join(gt_dir, stem + TRAIN_IDS_SUFFIX))
        counts[split] = n * len(cities)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='data/tiny_cityscapes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--train-per-city', type=int, default=6)
    parser.add_argument('--val-per-city', type=int, default=4)
    parser.add_argument('--size', type=int, nargs=2, default=(64, 128), metavar=('H', 'W'),
                        help='image size; U-Net needs multiples of 16')
    args = parser.parse_args(argv)
    if args.size[0] % 16 or args.size[1] % 16:
        parser.error(f'--size {args.size[0]} {args.size[1]}: U-Net with 4 downsamplings needs multiples of 16')
    counts = make_tiny_cityscapes(args.out, args.seed, (args.train_per_city, args.val_per_city), *args.size)
    print(f'wrote {counts["train"]} train and {counts["val"]} val images to {args.out}')


if __name__ == '__main__':
    main()
