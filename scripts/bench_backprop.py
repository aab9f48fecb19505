"""Time one backprop step of nnx beside a fused NumPy step, the book's layers and PyTorch,
and the numerical gradients: ``nnx bench`` on the CPU (``--device cpu`` unless given).

Example: ``python scripts/bench_backprop.py --full-loop --out benchmarks/cpu``.
"""

import sys

from nnx.bench.gradients import main
from nnx.cli import stops

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv = ["--device", "cpu", *argv]
    stops.exit_after(main, argv, prog="bench_backprop.py")
