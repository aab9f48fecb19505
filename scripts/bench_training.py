"""Time the book's 10000-iteration training run: nnx vs the book's loop vs fused NumPy.

Usage: python scripts/bench_training.py --data-dir DIR [--repeat 3] [--device cpu ...]
"""

import sys

from nnx.bench.training import main

if __name__ == "__main__":
    sys.exit(main())
