"""Evaluate a trained run on MNIST: per-class accuracy, precision and recall, and figures.

Loads RUN_DIR's params.npz and config.json (a run trained on any device loads on any
other, in the run's dtype), classifies the test (or training) set, prints the table and
writes confusion.png (rows true, columns predicted), misclassified.png (the most
confidently wrong images) and evaluation.json into RUN_DIR, or --out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from nnx import evaluation, io, program, rundir, runfiles, stops
from nnx.mnist import load_mnist
from nnx.plots import evaluation as figures
from nnx.run import load_run
from nnx.rundir import CONFUSION, EVALUATION, MISCLASSIFIED


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run nnx train wrote")
    parser.add_argument("--set", choices=("test", "train"), default="test",
                        help="the MNIST set to classify (default: test)")
    program.add_device_argument(parser)
    program.add_data_arguments(parser)
    program.add_out_argument(parser, None, "evaluation files", "RUN_DIR")


def run(args: argparse.Namespace) -> int:
    # Stops are polled at safe points: between loading, classifying and writing, and never
    # inside the writes, so a stopped evaluation leaves the outputs all old or all new.
    with stops.deferred("finishing the current step") as noted:
        net, _ = load_run(args.run_dir, args.device)  # a bad run fails before any work
        be = net.backend
        noted.check()
        train_set, test_set = load_mnist(data_dir=args.data_dir, download=not args.no_download)
        x, t = test_set if args.set == "test" else train_set
        noted.check()
        history = args.run_dir / rundir.HISTORY  # a FIFO, folder or link there: refused
        final = runfiles.read_history(args.run_dir).get("final_test_acc") \
            if os.path.lexists(history) else None
        with io.output_dir(args.out or args.run_dir) as out, _lock(out):
            ev = evaluation.evaluate(net, be.asarray(x, dtype=be.dtype), be.asarray(t))
            noted.check()
            print(f"{net.describe()} of {args.run_dir}, the {args.set} set, on {be} ({be.reason})")
            print(ev.table())
            if args.set == "test" and final is not None:
                print(f"the run's final test accuracy (history.json): {final:.4f}")
            title = f"{net.describe()}, {args.set} set: accuracy {ev.accuracy:.4f}"
            with io.writing(out, "the evaluation") as written:  # all three, or none
                written += [out / name for name in rundir.EVALUATION_FILES]
                figures.plot_confusion(ev.confusion, out / CONFUSION, title)
                figures.plot_misclassified(x, ev, out / MISCLASSIFIED,
                                           f"Most confidently wrong, {args.set} set")
                io.write_json(out / EVALUATION, {
                    "run": str(args.run_dir), "set": args.set, "device": be.device,
                    "final_test_acc": final, **ev.to_json()})
            print(f"wrote {CONFUSION}, {MISCLASSIFIED} and {EVALUATION} to {out}")
    return 0


def _lock(out: Path) -> contextlib.AbstractContextManager[None]:
    """The run's lock, when the files go into a run directory: never beside a process that
    trains or resumes the run there."""
    return rundir.locked(out) if (out / rundir.CONFIG).is_file() else contextlib.nullcontext()
