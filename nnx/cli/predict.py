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

from nnx import evaluation, photos, program, stops
from nnx.errors import positive_int
from nnx.functions import softmax
from nnx.io import shown
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
    # Stops are polled at safe points, between images and before the results are printed:
    # a stopped prediction prints no result.
    with stops.deferred("finishing the current image") as noted:
        net, _ = load_run(args.run_dir, args.device)
        rows = []
        for path in args.images:
            noted.check()
            rows.append(photos.read_image(path))
        be = net.backend
        with be.scope():
            probs = be.to_numpy(softmax(net.predict(be.asarray(np.stack(rows), dtype=be.dtype))))
        noted.check()
        names = [shown(path) for path in args.images]  # a name cannot forge a result line
        width = max(len(name) for name in names)
        for name, p in zip(names, probs, strict=True):
            best = np.argsort(-p, kind="stable")[:top]
            likeliest = ", ".join(f"{k}: {p[k]:6.1%}" for k in best)
            print(f"{name:<{width}}  {best[0]}   ({likeliest})")
    return 0
