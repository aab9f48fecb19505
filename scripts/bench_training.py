"""Time the book's 10000-iteration training run: nnx vs the book's loop vs fused NumPy.

Usage: python scripts/bench_training.py --data-dir DIR [--repeat 3] [--device cpu ...]
"""

from nnx.bench.training import main
from nnx.cli import stops

if __name__ == "__main__":
    stops.exit_after(main)
