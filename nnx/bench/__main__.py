"""``python -m nnx.bench``: the same program as ``nnx bench``."""

from nnx.bench.gradients import main
from nnx.cli import stops

stops.exit_after(main, prog="python -m nnx.bench")
