"""The house style of every figure: pyplot-free ``matplotlib.figure.Figure`` objects rendered
by Agg (no GUI, no global state), laid out by matplotlib's constrained layout and saved
atomically."""

from __future__ import annotations

import os
import threading
from typing import Any

from nnx.io import atomic_path

PathLike = str | os.PathLike[str]
DPI = 110
MAX_POINTS = 1000  # per line of a long curve


def preload() -> threading.Thread:
    """Import matplotlib's figure machinery in a background thread and return it.

    A program that will plot calls this before work that leaves a core idle (loading and
    converting a data set: NumPy copies without holding the interpreter), so that the half
    second of import is not paid at the end. Importing the same modules later simply waits
    for the thread, and so does the interpreter's exit (a daemon thread still importing
    when the interpreter is torn down can crash it).
    """
    thread = threading.Thread(target=_import_matplotlib, name="nnx-preload")
    thread.start()
    return thread


def _import_matplotlib() -> None:
    import matplotlib.backends.backend_agg  # noqa: F401  (what savefig renders with)
    import matplotlib.figure  # noqa: F401


def figure(width: float, height: float) -> Any:
    """A new figure in the house style: constrained layout, no pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Any, path: PathLike, *, dpi: int = DPI) -> None:
    """Save a figure as PNG atomically (the usual file mode, never half a file).

    The directory must exist.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
