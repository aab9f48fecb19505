"""A training run's directory: always consistent, never shared, resumable.

``config.json`` is written first, ``checkpoint.npz`` (parameters, optimizer state, the
batch Generator's state, the history: plain arrays and JSON, no pickle) at every
checkpoint, and the results last, ``history.json`` with the status after every other
file, so "completed" means everything is there. Every file is written atomically; a save
that fails removes what it wrote and says why. A lock keeps a second process out.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nnx import io
from nnx.errors import DataError, InputError


@dataclass
class Checkpoint:
    """Everything a run needs to continue exactly where it was: host arrays and JSON values.

    ``rng`` is the batch Generator's state when the block of ``block_start`` was drawn, so
    a resumed run draws that block again and skips the ``iteration - block_start`` rows
    already done.
    """

    iteration: int
    block_start: int
    rng: dict[str, Any]
    params: dict[str, np.ndarray]
    optimizer: dict[str, Any]
    history: dict[str, list]
    elapsed: float
    buffers: dict[str, np.ndarray] = field(default_factory=dict)  # batch norms' running stats
    mask_rng: dict[str, Any] | None = None  # dropout's Generator state, where the net has one


# The run directory's files: every module names them from here.
CONFIG = "config.json"  # the run's flags, its device and machine: written first
CHECKPOINT = "checkpoint.npz"  # where an unfinished run stopped
HISTORY_CSV, EPOCHS_CSV = "history.csv", "epochs.csv"  # per iteration, per evaluation
PARAMS = "params.npz"  # the final parameters (not of a diverged run)
BATCHNORM = "batchnorm.npz"  # with --batch-norm: gamma, beta and the running statistics
ACCURACY_PNG, LOSS_PNG = "accuracy.png", "loss.png"
HISTORY = "history.json"  # everything recorded and the status: written last
RESULTS = (HISTORY_CSV, EPOCHS_CSV, PARAMS, BATCHNORM, ACCURACY_PNG, LOSS_PNG)
RUN_FILES = (CONFIG, CHECKPOINT, *RESULTS, HISTORY)
# What nnx evaluate writes beside them: an overwritten run's evaluation goes with it.
CONFUSION, MISCLASSIFIED, EVALUATION = "confusion.png", "misclassified.png", "evaluation.json"
EVALUATION_FILES = (CONFUSION, MISCLASSIFIED, EVALUATION)
JSON_LIMIT = 1 << 20  # config.json: a few hundred bytes; a history says its own limit


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``path/.lock`` for the block: a second process on the same run is refused."""
    lock = path / ".lock"
    try:  # a link planted in its place is never followed
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as exc:
        if not os.path.islink(lock):
            raise
        raise InputError(f"{lock} is a symbolic link, and nnx follows none in a run "
                         "directory; remove it and run again") from exc
    held = False
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass  # no flock on this platform: no lock
        except OSError:
            raise InputError(f"another process is writing the run in {path}; wait for it "
                             "to end or choose another --out") from None
        # The file may have been removed and made anew by its last holder in the meantime:
        # then the lock held is an orphan's, and the run is another process's.
        if os.fstat(fd).st_ino != os.stat(lock, follow_symlinks=False).st_ino:
            raise InputError(f"another process is writing the run in {path}; wait for it "
                             "to end or choose another --out")
        held = True
        for stale in path.glob(".*.part"):  # left by a killed write
            stale.unlink(missing_ok=True)
        yield
    finally:
        if held:  # never another process's lock
            with contextlib.suppress(OSError):
                lock.unlink()
        os.close(fd)


def prepare(path: Path, mode: str) -> None:
    """Check ``path`` for ``mode``: "new" (refuse a used run directory), "overwrite"
    (remove its run files) or "resume" (it must hold a checkpoint)."""
    present = [name for name in RUN_FILES if (path / name).exists()]
    if mode in ("new", "resume") and present == [CONFIG]:
        raise InputError(f"the run in {path} was stopped before its first checkpoint, so "
                         "there is nothing to resume; start it anew with --overwrite (nnx "
                         f"train --out {path} --overwrite), or choose another --out")
    if mode == "new" and present:
        raise InputError(f"{path} already holds a run ({', '.join(present)}); continue it "
                         f"with --resume {path}, replace it with --overwrite, or choose "
                         "another --out")
    if mode == "overwrite":  # the old run's evaluation too: it spoke of other parameters
        for name in present + [n for n in EVALUATION_FILES if (path / n).exists()]:
            (path / name).unlink()
    if mode == "resume":
        from nnx.runfiles import read_history  # it builds on this module

        status = read_history(path).get("status") if HISTORY in present else None
        if status == "diverged":  # its checkpoint, the last state before, would diverge again
            raise InputError(f"cannot resume the run in {path}: it diverged (its {CHECKPOINT} "
                             "keeps the last state before that); start a new run with a "
                             "smaller --lr")
        if CHECKPOINT not in present:
            why = "it completed" if status == "completed" else f"it holds no {CHECKPOINT}"
            raise InputError(f"cannot resume the run in {path}: {why}")
        for name in RESULTS:  # written at the end: found unwritable only then, the work lost
            target = path / name
            if target.is_symlink() or target.exists() and not target.is_file():
                raise InputError(f"cannot resume the run in {path}: its {name} is not a plain "
                                 "file (a folder, a link or a device), and the run writes it at "
                                 "the end; remove it, and the run writes it anew")


def read_json(path: Path, limit: int = JSON_LIMIT) -> dict[str, Any]:
    """A JSON object from ``path`` (no link followed, at most ``limit`` bytes);
    :class:`DataError` naming the file if it is not one."""
    try:
        with io.open_nofollow(path, limit) as f:
            value = json.loads(f.read(limit + 1).decode("utf-8"))
    except io.BadFile as exc:
        raise DataError(f"{path} {exc}; restore it or start a new run") from None
    except (OSError, UnicodeError, ValueError, RecursionError) as exc:
        why = "it nests too deeply" if isinstance(exc, RecursionError) else io.brief(exc)
        raise DataError(f"cannot read {path} ({why}); restore it or start a new run") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} is not a JSON object; restore it or start a new run")
    return value


def save_checkpoint(path: Path, c: Checkpoint) -> None:
    """``path/checkpoint.npz``: arrays as members, everything else as one JSON member."""
    arrays = {f"param/{k}": v for k, v in c.params.items()}
    arrays.update({f"opt/{k}": v for k, v in c.optimizer.items() if isinstance(v, np.ndarray)})
    arrays.update({f"buf/{k}": v for k, v in c.buffers.items()})
    meta = {"iteration": c.iteration, "block_start": c.block_start, "rng": c.rng,
            "elapsed": c.elapsed, "history": c.history, "mask_rng": c.mask_rng,
            "optimizer": {k: v for k, v in c.optimizer.items() if not isinstance(v, np.ndarray)}}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    io.save_params(path / CHECKPOINT, arrays)


def load_checkpoint(path: Path, config: Any = None, sizes: list[int] | None = None) -> Checkpoint:
    """The checkpoint in ``path`` for ``config`` (default: the run's ``config.json``) and a
    net of layer ``sizes`` (default: MNIST's, 784 to 10), every field checked
    (:func:`nnx.checkpointfile.read_checkpoint`); :class:`DataError` naming the file and field."""
    from nnx import checkpointfile, runfiles  # they build on this module

    config = runfiles.read_config(path) if config is None else config
    sizes = [runfiles.PIXELS, *config.hidden, runfiles.CLASSES] if sizes is None else sizes
    return checkpointfile.read_checkpoint(path, config, sizes)


def saving(path: Path) -> contextlib.AbstractContextManager[list[Path]]:
    """Collect the files a save writes; if it fails, remove them and say what to do."""
    return io.writing(path, "the run", " (the last checkpoint, if any, is kept)")
