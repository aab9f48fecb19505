"""``python -m nnx.bench``: the same program as ``nnx bench``."""

import sys

from nnx.bench.gradients import main

sys.exit(main(prog="python -m nnx.bench"))
