"""One clean console: progress that suits where the output goes, and no duplicated or promotional lines.

On a terminal, long loops show a tqdm bar. Without one (``nohup``, a batch job, CI, a log file)
a bar's carriage returns pile up into one unreadable line, so the same loops log a plain line
every ``PROGRESS_EVERY_S`` seconds instead, with the share done and the time left.

Lightning adds its own console handler to the ``lightning`` logger, so each of its lines printed
twice under Hydra's logging (once ``INFO: ...``, once through the root handler), and it advertises
its cloud services; :func:`tidy_third_party_logging` keeps one copy and drops the advertisements.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

PROGRESS_EVERY_S = 30.0  # seconds between progress lines when not on a terminal
FORCE_ENV = "DEEPGEO_PROGRESS"  # 'bar' or 'lines' overrides the terminal test (e.g. for a pager)

log = logging.getLogger("deepgeo_runner.progress")


def interactive() -> bool:
    """Whether progress goes to a person watching a terminal (stderr is where tqdm writes)."""
    forced = os.environ.get(FORCE_ENV, "").strip().lower()
    if forced in ("bar", "lines"):
        return forced == "bar"
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressLines:
    """The subset of tqdm's interface our loops use, logging a line at most every ``every_s`` seconds."""

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", every_s: float = PROGRESS_EVERY_S, clock=time.monotonic) -> None:
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = None
        self.total, self.desc, self.unit, self.every_s, self.clock = total, desc, unit, every_s, clock
        self.n = 0
        self.start = self.clock()
        self.last = self.start
        self.closed = False
        self.postfix = ""  # e.g. the last loss, appended to each line

    def line(self) -> str:
        elapsed = self.clock() - self.start
        done = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        text = f"{self.desc}: {done}"
        if self.total:
            text += f" ({100 * self.n / self.total:.0f} %)"
        text += f", {_duration(elapsed)} elapsed"
        if self.total and 0 < self.n < self.total and elapsed > 0:
            text += f", about {_duration(elapsed * (self.total - self.n) / self.n)} left"
        return f"{text}, {self.postfix}" if self.postfix else text

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s", self.line())

    def close(self) -> None:
        # a loop long enough to have logged a line says that it ended
        if not self.closed and self.last > self.start:
            log.info("%s", self.line())
        self.closed = True

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update()
        self.close()

    def __enter__(self) -> ProgressLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Silent(ProgressLines):
    def update(self, n: int = 1) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def progress(iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             disable: bool = False) -> Any:
    """A tqdm bar on a terminal, periodic log lines elsewhere, nothing when ``disable``."""
    if disable:
        return _Silent(iterable, total=total, desc=desc, unit=unit)
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit)
    return ProgressLines(iterable, total=total, desc=desc, unit=unit)


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith("💡")


_ADVERTISERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


def tidy_third_party_logging() -> None:
    """Call after importing Lightning: one copy of each of its lines, no advertisements, no
    per-file chatter from pyogrio, and no deprecation notices that a user cannot act on."""
    root_handled = logging.getLogger().hasHandlers()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        if root_handled:  # Hydra (or the caller) set up logging: let records reach it once
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)
            logger.propagate = True
    for name in _ADVERTISERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropAdvertisements) for f in logger.filters):
            logger.addFilter(_DropAdvertisements())
    logging.getLogger("pyogrio").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
