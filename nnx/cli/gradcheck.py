"""Check backprop against central differences, as the book's gradient_check.py does.

By default: the first 3 training images and a fresh 784-50-10 ReLU net (weights
N(0, 0.01^2)), every coordinate of W1, b1, W2, b2. Per parameter it prints the mean
|backprop - numerical| (the book's figure) and the relative errors, computed in float64
on the chosen device; coordinates whose step crosses a ReLU kink are counted apart.
With --batch-norm the defaults are 10 images, h=1e-5 and a tolerance of 1e-4: batch
normalization makes the loss curve sharply (the more so the fewer the images it normalises
over), and the central difference's error, of order h^2 times that curvature, exceeds 1e-5
at the book's h=1e-4 on 3 images although backprop is right.
Exit status 0 when every parameter passes, 1 when one fails the tolerance or could not
be checked, 2 for a bad flag, device or data file.
"""

from __future__ import annotations

import argparse

from backends import get_backend
from nnx import program
from nnx.errors import InputError, positive_int, positive_number
from nnx.gradcheck import MODES, gradient_check
from nnx.layers import ACTIVATIONS
from nnx.mnist import load_mnist
from nnx.network import VECTORIZED_FALLBACK, MultiLayerNet


def configure(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    program.add_device_argument(parser)
    a("--mode", choices=MODES, default="full",
      help="every coordinate (default), a sample per parameter, or one random direction")
    a("--activation", choices=tuple(ACTIVATIONS), default="relu", help="default: relu")
    a("--batch", type=int, default=None,
      help="first N training images (default: 3, the book's; 10 with --batch-norm)")
    program.add_hidden_argument(parser, [50], "hidden layer size(s) (default: 50)")
    a("--samples", type=int, default=32, help="coordinates per parameter in --mode sample "
      "(default: 32)")
    a("--batch-norm", action="store_true", help="batch normalization after each hidden Affine "
      "(the book's batch_norm_gradient_check.py); it curves the loss sharply, so by default "
      "10 images, --step 1e-5, --tol 1e-4")
    a("--dropout", type=float, default=0.0, metavar="R",
      help="dropout of ratio R after each hidden activation, under one fixed mask")
    a("--weight-decay", type=float, default=0.0, metavar="L", help="weight decay lambda")
    a("--step", type=float, default=None, metavar="H",
      help="central-difference step (default: 1e-4, the book's; 1e-5 with --batch-norm)")
    a("--tol", type=float, default=None,
      help="relative error tolerance (default: 1e-5; 1e-4 with --batch-norm)")
    program.add_seed_argument(parser, "the initial weights and the sampled coordinates")
    program.add_data_arguments(parser)


# The defaults: the book's gradient_check.py, and those a batch-norm net needs (see above).
DEFAULTS = {"batch": 3, "step": 1e-4, "tol": 1e-5}
BATCH_NORM_DEFAULTS = {"batch": 10, "step": 1e-5, "tol": 1e-4}


def run(args: argparse.Namespace) -> int:
    for key, value in (BATCH_NORM_DEFAULTS if args.batch_norm else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    batch = positive_int("--batch", args.batch)
    positive_int("--samples", args.samples)
    positive_number("--step", args.step)
    positive_number("--tol", args.tol)
    for h in args.hidden:
        positive_int("--hidden", h)
    be = get_backend(args.device, "float64")  # a bad device fails before the data load
    (x_train, t_train), _ = load_mnist(data_dir=args.data_dir, download=not args.no_download)
    if batch > x_train.shape[0]:
        raise InputError(f"--batch {batch} is larger than the {x_train.shape[0]} training "
                         "images")
    net = MultiLayerNet(x_train.shape[1], args.hidden, 10, args.activation, 0.01, device=be,
                        seed=args.seed, weight_decay_lambda=args.weight_decay,
                        use_dropout=args.dropout > 0, dropout_ratio=args.dropout,
                        use_batchnorm=args.batch_norm)
    if net.extended and args.mode == "full":
        print(f"note: {VECTORIZED_FALLBACK}")
    x, t = be.asarray(x_train[:batch], dtype="float64"), be.asarray(t_train[:batch])
    report = gradient_check(net, x, t, mode=args.mode, n_samples=args.samples, seed=args.seed,
                            h=args.step, tol=args.tol)
    print(f"{'-'.join(map(str, net.sizes))} {args.activation} net, the first {batch} training "
          f"images, seed {args.seed}; device {be} ({be.reason})")
    print(report)
    print("mean abs: the book's figure, mean |backprop - numerical| over the checked "
          "coordinates")
    return 0 if report.ok and report.conclusive else 1
