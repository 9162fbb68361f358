"""One stop for SIGINT and SIGTERM over the whole run, data stages included.

Only the standard library is imported here: the runner installs the handler before any data
stage starts, long before torch or Lightning is loaded.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

from deepgeo_runner.core.errors import RunInterrupted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStop:
    """SIGINT and SIGTERM stop the run cleanly instead of killing it mid-write.

    Outside the Trainer's loops (prepare, rasterize, chips, predict...) the handler raises
    :class:`RunInterrupted` at once: the ``finally`` blocks of the atomic writers remove their
    temporary files, so neither the run directory nor the cache keeps half an output. During
    ``trainer.fit``/``test`` the signal is handed to Lightning's SIGTERM handling, which stops
    every rank together at the next batch boundary; the last checkpoint is the end of the last
    complete epoch. Either way :meth:`interrupted` gives the error to raise (exit code 130 or
    143). A second Ctrl+C stops at once.

    Use as a context manager around the whole run; ``trainer`` is set while one is built.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.trainer: Any = None  # a lightning Trainer (not imported here: see the module docstring)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        trainer = self.trainer
        if trainer is not None and trainer.received_sigterm:
            return  # called by Lightning's SIGTERM handler (it wraps this one): it stops at the next batch
        lightning = signal.getsignal(signal.SIGTERM)
        if first and trainer is not None and lightning != self._on_signal and callable(lightning):
            log.warning("received %s: stopping after the current batch (again to stop at once)",
                        signal.Signals(signum).name)
            lightning(signum, frame)  # Lightning's handler: all ranks stop at the next batch boundary
            return
        raise self.interrupted()

    def interrupted(self) -> RunInterrupted:
        """The error that ends the run, naming the signal and how to go on."""
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        if self.trainer is None:
            return RunInterrupted(
                f"stopped by {name}. Nothing half-written was kept (temporary files removed, cache entries "
                "are renamed into place only when complete) and provenance.json says \"status\": "
                "\"interrupted\"; launch the same command again to go on.", signum)
        return RunInterrupted(
            f"stopped by {name}. The run directory keeps the checkpoint of the last "
            "complete epoch (checkpoints/last.ckpt) and provenance.json says \"status\": \"interrupted\"; "
            "launch the same command again to resume.", signum)
