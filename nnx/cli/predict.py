"""Classify images of digits with a trained run: each file's class and top probabilities.

PNG or JPEG files of any size, colour or polarity are first made into what MNIST images
are: greyscale on a dark background (a light one is inverted), the digit scaled into a
20x20 box preserving its aspect ratio and centred by its centre of mass in 28x28, values
in [0, 1]. Every file is read before any is classified.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nnx import evaluation, photos, program
from nnx.errors import positive_int
from nnx.functions import softmax
from nnx.run import load_run


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run nnx train wrote")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                        help="PNG or JPEG files, one digit each")
    parser.add_argument("--top", type=int, default=3, metavar="K",
                        help="how many of the likeliest classes to show (default: 3)")
    program.add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    top = min(positive_int("--top", args.top), evaluation.CLASSES)
    net, _ = load_run(args.run_dir, args.device)
    x = np.stack([photos.read_image(path) for path in args.images])
    be = net.backend
    with be.scope():
        probs = be.to_numpy(softmax(net.predict(be.asarray(x, dtype=be.dtype))))
    width = max(len(str(p)) for p in args.images)
    for path, p in zip(args.images, probs, strict=True):
        best = np.argsort(-p, kind="stable")[:top]
        likeliest = ", ".join(f"{k}: {p[k]:6.1%}" for k in best)
        print(f"{str(path):<{width}}  {best[0]}   ({likeliest})")
    return 0
