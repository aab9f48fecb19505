"""Timing on a device: intervals by the host's clock or the device's own events, and the one
loop that times repeated calls (:func:`time_calls`), used by backends, benchmarks and
training alike."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class IntervalTimer:
    """``start()``/``stop()`` around each interval; ``drain()`` returns their seconds."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def drain(self) -> list[float]: ...


class EventTimer(IntervalTimer):
    """Intervals by pairs of device events recorded on a stream: recording never waits for
    the device, ``drain`` waits for the last event and reads them all. Events are made
    once and reused after each drain. A library fills in the four hooks."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Any, Any]] = []
        self._spare: list[Any] = []
        self._start: Any = None

    def _scope(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()  # where the events must be made and recorded

    def _new(self) -> Any:
        raise NotImplementedError

    def _record_event(self, event: Any) -> None:
        raise NotImplementedError

    def _seconds(self, start: Any, end: Any) -> float:
        raise NotImplementedError

    def _record(self) -> Any:
        with self._scope():
            event = self._spare.pop() if self._spare else self._new()
            self._record_event(event)
        return event

    def start(self) -> None:
        self._start = self._record()

    def stop(self) -> None:
        self._pairs.append((self._start, self._record()))

    def drain(self) -> list[float]:
        """Seconds of each interval since the last drain (waits for the last event)."""
        if not self._pairs:
            return []
        with self._scope():
            self._pairs[-1][1].synchronize()
            times = [self._seconds(a, b) for a, b in self._pairs]
        self._spare += [e for pair in self._pairs for e in pair]
        self._pairs = []
        return times


class HostTimer(IntervalTimer):
    """Wall-clock intervals; ``sync`` (if given) waits for the device before each reading."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._t0 = 0.0
        self._times: list[float] = []
        self._sync = sync

    def start(self) -> None:
        if self._sync is not None:
            self._sync()
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self._sync is not None:
            self._sync()
        self._times.append(time.perf_counter() - self._t0)

    def drain(self) -> list[float]:
        times, self._times = self._times, []
        return times


def time_calls(fn: Callable[[], Any], repeat: int, warmup: int = 0,
               timer: IntervalTimer | None = None,
               sync: Callable[[], None] | None = None) -> np.ndarray:
    """Seconds of each of ``repeat`` calls of ``fn``, after ``warmup`` untimed ones: the one
    timing loop of nnx. ``timer`` reads the intervals (a backend's device events); by
    default the wall clock, with ``sync`` waiting for the device at each reading."""
    for _ in range(warmup):
        fn()
    if timer is None:
        if sync is not None:
            sync()
        timer = HostTimer(sync)
    for _ in range(repeat):
        timer.start()
        fn()
        timer.stop()
    return np.asarray(timer.drain(), dtype=float)
