"""The book's hyperparameter search (chapter 6) on Optuna: random search by default.

Writes into --out: study.db (the study, unless --storage), search.json, best.txt, and the
figures best_curves.png, history.png, importance.png. The same command again continues a
stopped search; with --storage URL --study NAME, processes on many machines share a study.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

from backends import usable_cores
from nnx import io, program, stops
from nnx.errors import InputError, positive_int
from nnx.search import SearchConfig

SAMPLERS = ("random", "tpe")


def configure(parser: argparse.ArgumentParser) -> None:
    d = SearchConfig()
    a = parser.add_argument
    a("--trials", type=int, default=d.trials, help="trials in the study (default: 100)")
    a("--epochs", type=int, default=d.epochs, help="epochs of each trial (default: 50)")
    a("--images", type=int, default=d.images,
      help="first training images used (default: 500, 20%% of them for validation)")
    a("--sampler", choices=SAMPLERS, default=d.sampler,
      help="random, as the book (default), or tpe")
    a("--prune", action="store_true", help="stop hopeless trials early (median pruner)")
    a("--jobs", type=int, default=1,
      help="trials at once, in as many processes of one BLAS thread each")
    a("--storage", metavar="URL", help="a database URL (postgresql://...) shared by many "
      "machines (default: a SQLite file in --out)")
    a("--study", default="nnx-search", metavar="NAME", help="the study's name in the storage")
    program.add_seed_argument(parser, "the validation split and the trials' weights")
    program.add_data_arguments(parser)
    program.add_out_argument(parser, "search", "the search", "search")


def run(args: argparse.Namespace) -> int:
    for flag in ("trials", "epochs", "images", "jobs"):
        positive_int(f"--{flag}", getattr(args, flag))
    cores = usable_cores()
    if not args.study.strip() or len(args.study) > 512 or not args.study.isprintable():
        raise InputError(f"--study {args.study!r} is not a study name: give 1 to 512 "
                         "printable characters")
    if args.jobs > cores:  # each job is a process holding MNIST: memory grows with them
        raise InputError(f"--jobs {args.jobs} is more than the {cores} cores this process may "
                         f"use; give at most --jobs {cores}")
    from nnx import search

    search.need_optuna()
    config = SearchConfig(trials=args.trials, epochs=args.epochs, images=args.images,
                          sampler=args.sampler, prune=args.prune, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    db = out / "study.db"
    if args.storage is None and db.is_symlink():  # the study nnx makes, never through a link
        raise InputError(f"{db} is a symbolic link, and nnx follows none in --out; remove it, "
                         "or choose another --out")
    storage = args.storage or f"sqlite:///{db.absolute()}"
    study = search.open_study(config, storage, args.study)  # a bad storage fails first
    print(f"study {args.study!r} in {search.masked(storage)}: {search.counted(study)} of "
          f"{config.trials} trials done; {args.sampler} sampler, {args.jobs} job(s) of "
          f"{search.BLAS_THREADS_PER_JOB} BLAS thread(s)")
    start = time.perf_counter()
    threads = search.BLAS_THREADS_PER_JOB
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_job, args=(config, storage, args, threads))
               for _ in range(args.jobs - 1)]
    with stops.deferred() as noted:
        for w in workers:
            w.start()
        _worker(config, storage, args, threads, noted.requested)
        _join(workers, noted.requested)
        study = search.open_study(config, storage, args.study)
        _save(out, study, config)
        print(f"{search.counted(study)} of {config.trials} trials done in "
              f"{time.perf_counter() - start:.0f} s; results in {out}")
        if noted.requested():  # the block's end reports the stop (exit status 128 + signal)
            print("stopped; run the same command again to continue the search")
    return 0


def _join(workers: list, stop) -> None:
    """Wait for the other jobs; a stop is passed on to each (SIGTERM: it marks its trial
    stopped and ends), also one that comes while waiting."""
    passed = False
    while any(w.is_alive() for w in workers):
        if stop() and not passed:
            for w in workers:
                w.terminate()
            passed = True
        next(w for w in workers if w.is_alive()).join(0.1)
    for w in workers:
        w.join()


def _job(config: SearchConfig, storage: str, args: argparse.Namespace, threads: int) -> None:
    """One of the other ``--jobs`` processes: a stop ends it quietly (its trial marked
    stopped); the first process reports it."""
    try:
        with stops.raising():
            _worker(config, storage, args, threads)
    except KeyboardInterrupt:
        pass


def _worker(config: SearchConfig, storage: str, args: argparse.Namespace, threads: int,
            stop=None) -> None:
    from threadpoolctl import threadpool_limits

    from nnx import search
    from nnx.mnist import load_mnist

    (x, t), _ = load_mnist(data_dir=args.data_dir, download=not args.no_download)
    data = search.split_data(config, x, t)
    study = search.open_study(config, storage, args.study)
    with threadpool_limits(threads):
        if stop is not None:  # the first process: its caller notes the stops
            search.work(config, study, data, stop, print)
            return
        with stops.deferred() as noted:
            search.work(config, study, data, noted.requested, print)


def _save(out: Path, study, config: SearchConfig) -> None:
    from nnx import search
    from nnx import search_plots as plots

    best = search.best_trials(study, 20)
    text = search.table(best)
    print(text)
    io.write_json(out / "search.json", search.to_json(study, config))
    (out / "best.txt").write_text(text + "\n")
    plots.plot_best_curves(best, out / "best_curves.png")
    plots.plot_history([(t.number, t.value) for t in study.get_trials(deepcopy=False)
                        if t.state.name == "COMPLETE"], out / "history.png")
    if len(best) >= 2:
        try:
            import optuna

            plots.plot_importance(optuna.importance.get_param_importances(study),
                                  out / "importance.png")
        except (ImportError, RuntimeError, ValueError) as exc:
            print(f"no importance figure ({exc})")
    if not best and not study.get_trials(deepcopy=False):
        raise InputError("the search ran no trial")
