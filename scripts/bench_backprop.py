"""Time one backprop step of nnx against a fused NumPy step, the book's layers and PyTorch,
then the full numerical gradient: vectorised against the book's one-coordinate loop.

The program lives in ``nnx/bench_backprop.py``; ``--help`` lists the flags.
Example: ``python scripts/bench_backprop.py --out benchmarks/cpu``.
"""

import sys

from nnx.bench.backprop import main

if __name__ == "__main__":
    sys.exit(main(prog="bench_backprop.py"))
