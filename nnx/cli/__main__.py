"""``python -m nnx.cli``: the ``nnx`` command."""

import sys

from nnx.cli import main

sys.exit(main())
