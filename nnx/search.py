"""The book's hyperparameter search (chapter 6, ``hyperparameter_optimization.py``) on Optuna.

Each trial trains a 784-100x6-10 ReLU net with SGD and weight decay on 400 of the first 500
training images and scores it by its accuracy on the other 100 (the validation split, drawn
with the seed): tuning never looks at the test set. The study lives in storage (a SQLite file
in the search directory by default), so a stopped search continues where it stopped, and
processes on many machines can share one study (``--storage``). A trial counts when it
completed, was pruned, or failed by diverging; one cut short by a stop is marked "stopped"
and run again; one started beyond the requested number is marked "surplus".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from nnx.errors import InputError
from nnx.network import MultiLayerNet
from nnx.optimizers import make_optimizer

SPACE = {"lr": (1e-6, 1e-2), "weight_decay": (1e-8, 1e-4)}  # sampled log-uniformly


@dataclass
class SearchConfig:
    """What a search does; the defaults are the book's."""

    trials: int = 100
    epochs: int = 50
    images: int = 500
    val_split: float = 0.2
    batch_size: int = 100
    hidden: tuple[int, ...] = (100,) * 6
    sampler: str = "random"
    prune: bool = False
    seed: int = 0

    def space(self) -> dict[str, Any]:
        """What makes two searches one study: the space and the trials' setting."""
        return {"space": SPACE, **{k: v for k, v in asdict(self).items()
                                   if k not in ("trials", "sampler", "prune")}}


def need_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise InputError("nnx search needs Optuna: install it with pip install "
                         "\".[search]\" in nnx's folder") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_study(config: SearchConfig, storage: str, name: str) -> Any:
    """The study ``name`` in ``storage``, made if new; :class:`InputError` naming the storage
    (password masked) if it cannot be reached, or if the study searches another space."""
    optuna = need_optuna()
    sampler = (optuna.samplers.TPESampler(seed=None) if config.sampler == "tpe"
               else optuna.samplers.RandomSampler())
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=5) if config.prune else \
        optuna.pruners.NopPruner()
    try:
        study = optuna.create_study(storage=with_driver(storage), study_name=name,
                                    direction="maximize", sampler=sampler, pruner=pruner,
                                    load_if_exists=True)
    except ImportError:
        raise InputError(f"the study storage {masked(storage)} needs a database driver that "
                         "is not installed (for PostgreSQL: pip install \".[search]\" in "
                         "nnx's folder)") from None
    except Exception as exc:  # SQLAlchemy's and the drivers' errors are many kinds
        raise InputError(f"cannot reach the study storage {masked(storage)} "
                         f"({type(exc).__name__}); check the URL and that the server runs"
                         ) from None
    space = json.loads(json.dumps(config.space()))
    known = study.user_attrs.get("nnx_space")
    if known is None:
        study.set_user_attr("nnx_space", space)
    elif known != space:
        raise InputError(f"the study {name!r} in {masked(storage)} belongs to another search "
                         "space or setting; choose another --study name")
    return study


def with_driver(url: str) -> str:
    """``url`` naming a PostgreSQL driver that is installed where it names none: SQLAlchemy 2.0
    reads a bare ``postgresql://`` as psycopg2 (the search extra's), 2.1 as psycopg 3."""
    scheme, sep, rest = url.partition("://")
    if scheme != "postgresql" or not sep:
        return url
    import importlib.util

    for module in ("psycopg2", "psycopg"):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{module}://{rest}"
    return url  # SQLAlchemy's ImportError says it


def masked(url: str) -> str:
    """``url`` with its password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy reads: say nothing of what follows the scheme
        return url.split("://")[0] + "://..."


def counted(study: Any, below: int | None = None) -> int:
    """Trials that count toward the requested number (of those numbered below ``below``)."""
    n = 0
    for t in study.get_trials(deepcopy=False):
        if below is not None and t.number >= below:
            continue
        if t.user_attrs.get("stopped") or t.user_attrs.get("surplus"):
            continue
        n += 1
    return n


# BLAS threads of each trial, however many run at once (--jobs): the jobs share the cores
# instead of each taking them all. A trial's matrices are small (100 rows), and a second
# thread on them waits more than it works: on two busy cores, products of 100x784 by 784x100
# took twenty times longer with two threads than with one.
BLAS_THREADS_PER_JOB = 1


def threads_in_use() -> int:
    """The most threads any BLAS library loaded in this process may use now."""
    from threadpoolctl import threadpool_info

    return max((p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"),
               default=1)


def split_data(config: SearchConfig, x: np.ndarray, t: np.ndarray) -> tuple:
    """The first ``images`` training images, shuffled with the seed, the last part of it held
    out for validation (the book's ``shuffle_dataset`` and 20%)."""
    order = np.random.default_rng(config.seed).permutation(min(config.images, x.shape[0]))
    n_val = int(round(order.size * config.val_split))
    if n_val < 1 or order.size - n_val < config.batch_size:
        raise InputError(f"{config.images} images with a validation split of "
                         f"{config.val_split:g} leave too few to train on")
    val, train = order[:n_val], order[n_val:]
    return (x[train], t[train]), (x[val], t[val])


def run_trial(config: SearchConfig, trial: Any, data: tuple, stop: Callable[[], bool]) -> float:
    """Train one trial, report each epoch's validation accuracy; its curves go into the
    trial's attributes. Raises :class:`Diverged`, or ``optuna.TrialPruned``."""
    lr = trial.suggest_float("lr", *SPACE["lr"], log=True)
    wd = trial.suggest_float("weight_decay", *SPACE["weight_decay"], log=True)
    trial.set_user_attr("blas_threads", threads_in_use())
    (x, t), (xv, tv) = data
    net = MultiLayerNet(x.shape[1], list(config.hidden), 10, "relu", "he", device="cpu",
                        seed=np.random.SeedSequence([config.seed, trial.number]),
                        weight_decay_lambda=wd)
    opt = make_optimizer("sgd", lr=lr)
    rng = np.random.default_rng([config.seed, trial.number, 1])
    per_epoch = max(x.shape[0] // config.batch_size, 1)
    train_acc, val_acc = [], []
    for epoch in range(config.epochs):
        # A diverging trial is recorded as failed, in its line: no NumPy warnings before it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for _ in range(per_epoch):
                if stop():
                    raise KeyboardInterrupt
                idx = rng.choice(x.shape[0], config.batch_size)
                opt.update(net.params, net.gradient(x[idx], t[idx]))
        loss = float(net.last_layer.loss)
        if not math.isfinite(loss) or loss > 1e3:
            raise Diverged(f"the loss became {loss:.4g} in epoch {epoch + 1}")
        train_acc.append(net.accuracy(x, t))
        val_acc.append(net.accuracy(xv, tv))
        if config.prune:  # a storage write each: only where it is used
            trial.report(val_acc[-1], epoch)
            if trial.should_prune():
                import optuna

                _curves(trial, train_acc, val_acc)
                raise optuna.TrialPruned()
    _curves(trial, train_acc, val_acc)
    return val_acc[-1]


def _curves(trial: Any, train_acc: list[float], val_acc: list[float]) -> None:
    trial.set_user_attr("train_acc", train_acc)
    trial.set_user_attr("val_acc", val_acc)


class Diverged(Exception):
    """A trial's loss became non-finite or huge."""


def work(config: SearchConfig, study: Any, data: tuple, stop: Callable[[], bool],
         log: Callable[[str], None]) -> None:
    """Run trials until the study holds ``config.trials`` that count, or ``stop()``."""
    optuna = need_optuna()
    while not stop() and counted(study) < config.trials:
        trial = study.ask()
        if counted(study, below=trial.number) >= config.trials:  # another process filled it
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        try:
            value = run_trial(config, trial, data, stop)
        except KeyboardInterrupt:
            trial.set_user_attr("stopped", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        except optuna.TrialPruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            log(f"trial {trial.number}: pruned")
            continue
        except (Diverged, FloatingPointError) as exc:
            trial.set_user_attr("diverged", str(exc))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log(f"trial {trial.number}: failed, {exc}")
            continue
        study.tell(trial, value)
        p = trial.params
        log(f"trial {trial.number}: val acc {value:.3f}  lr {p['lr']:.3g}  "
            f"weight decay {p['weight_decay']:.3g}")


def best_trials(study: Any, n: int = 20) -> list[Any]:
    """The ``n`` completed trials of highest validation accuracy, best first."""
    done = [t for t in study.get_trials(deepcopy=False) if t.value is not None
            and t.state.name == "COMPLETE"]
    return sorted(done, key=lambda t: -t.value)[:n]


def table(trials: list[Any]) -> str:
    lines = [f"{'rank':>4}  {'trial':>5}  {'val acc':>7}  {'lr':>9}  {'weight decay':>12}"]
    for r, t in enumerate(trials, start=1):
        lines.append(f"{r:>4}  {t.number:>5}  {t.value:>7.3f}  {t.params['lr']:>9.3g}  "
                     f"{t.params['weight_decay']:>12.3g}")
    return "\n".join(lines)


def to_json(study: Any, config: SearchConfig) -> dict[str, Any]:
    trials = []
    for t in study.get_trials(deepcopy=False):
        trials.append({"number": t.number, "state": t.state.name, "value": t.value,
                       "params": t.params, **{k: t.user_attrs[k] for k in
                                              ("train_acc", "val_acc", "diverged", "stopped",
                                               "surplus", "blas_threads") if k in t.user_attrs}})
    return {"config": {**asdict(config), "hidden": list(config.hidden)},
            "counted": counted(study), "trials": trials}
