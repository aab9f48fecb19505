"""``python -m nnx.cli``: the ``nnx`` command."""

from nnx.cli import entry

entry()
