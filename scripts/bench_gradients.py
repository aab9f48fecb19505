"""Time backprop, the vectorised numerical gradient and the book's loop on every device.

The same program as ``nnx bench`` (``nnx/bench/gradients.py``); ``--help`` lists the flags.
Example: ``python scripts/bench_gradients.py --device cpu --sweep --out runs/bench``.
"""


from nnx.bench.gradients import main
from nnx.cli import stops

if __name__ == "__main__":
    stops.exit_after(main, prog="bench_gradients.py")
