"""Check backprop against central differences, as the book's gradient_check.py does.

By default: the first 3 training images and a fresh 784-50-10 ReLU net (weights
N(0, 0.01^2)), every coordinate of W1, b1, W2, b2. Per parameter it prints the mean
|backprop - numerical| (the book's figure) and the relative errors, computed in float64
on the chosen device; coordinates whose step crosses a ReLU kink are counted apart.
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
    a("--batch", type=int, default=3, help="first N training images (default: 3, the book's)")
    program.add_hidden_argument(parser, [50], "hidden layer size(s) (default: 50)")
    a("--samples", type=int, default=32, help="coordinates per parameter in --mode sample "
      "(default: 32)")
    a("--batch-norm", action="store_true", help="batch normalization after each hidden Affine "
      "(the book's batch_norm_gradient_check.py)")
    a("--dropout", type=float, default=0.0, metavar="R",
      help="dropout of ratio R after each hidden activation, under one fixed mask")
    a("--weight-decay", type=float, default=0.0, metavar="L", help="weight decay lambda")
    a("--tol", type=float, default=1e-5, help="relative error tolerance (default: 1e-5)")
    program.add_seed_argument(parser, "the initial weights and the sampled coordinates")
    program.add_data_arguments(parser)


def run(args: argparse.Namespace) -> int:
    batch = positive_int("--batch", args.batch)
    positive_int("--samples", args.samples)
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
                            tol=args.tol)
    print(f"{'-'.join(map(str, net.sizes))} {args.activation} net, the first {batch} training "
          f"images, seed {args.seed}; device {be} ({be.reason})")
    print(report)
    print("mean abs: the book's figure, mean |backprop - numerical| over the checked "
          "coordinates")
    return 0 if report.ok and report.conclusive else 1
