"""Seconds spent in each named step of a pipeline whose steps run in several threads.

Whole-scene prediction reads in one thread, runs the network in another and blends and writes in a third; a
benchmark wants to know where each second went without patching the code it measures. A step's time is
summed over every thread that runs it, so the steps of different threads overlap and their sum may exceed
the wall time. :data:`NO_CLOCK` (the default everywhere) measures nothing and costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


class StepClock:
    """Seconds per step name, summed over threads (thread-safe)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, step: str, seconds: float) -> None:
        with self._lock:
            self.seconds[step] = self.seconds.get(step, 0.0) + seconds

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)


class _NoClock(StepClock):
    """Measures nothing."""

    def add(self, step: str, seconds: float) -> None:
        return None

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        yield


NO_CLOCK: StepClock = _NoClock()
