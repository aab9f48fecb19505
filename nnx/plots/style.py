"""The house style of every figure: pyplot-free ``matplotlib.figure.Figure`` objects rendered
by Agg (no GUI, no global state), laid out by matplotlib's constrained layout and saved
atomically."""

from __future__ import annotations

import os
import threading
from pathlib import Path
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


def matplotlib_dirs() -> None:
    """Keep matplotlib out of ``~/.config``: unless the user has a matplotlib config
    directory (or ``$MPLCONFIGDIR``), its config and font cache go to nnx's user cache
    (``.../nnx/matplotlib``), which is kept, so the font cache is built once. Called before
    matplotlib is imported: it reads the variable then."""
    if "MPLCONFIGDIR" in os.environ:
        return
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    if not (config / "matplotlib").is_dir():
        import platformdirs

        cache = Path(platformdirs.user_cache_dir("nnx", appauthor=False))
        os.environ["MPLCONFIGDIR"] = str(cache / "matplotlib")


def _import_matplotlib() -> None:
    matplotlib_dirs()
    import matplotlib.backends.backend_agg  # noqa: F401  (what savefig renders with)
    import matplotlib.figure  # noqa: F401


def figure(width: float, height: float) -> Any:
    """A new figure in the house style: constrained layout, no pyplot."""
    matplotlib_dirs()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def save_figure(fig: Any, path: PathLike, *, dpi: int = DPI) -> None:
    """Save a figure as PNG atomically (the usual file mode, never half a file).

    The directory must exist.
    """
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
