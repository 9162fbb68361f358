"""What keeps a training run honest: a clean stop on SIGINT/SIGTERM, and per-epoch random state
that a resumed run reproduces exactly.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from types import FrameType
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from deepgeo_runner.errors import RunInterrupted

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A seed for one epoch of one rank, the same in a resumed run as in an uninterrupted one."""
    return (int(seed) * 1_000_003 + int(epoch) * 1009 + int(rank)) % (2**63 - 1)


class EpochSeed(pl.Callback):
    """Reseed torch, numpy and random before the first training batch of every epoch, from
    (seed, epoch, rank).

    Lightning restores weights, optimizer and loop counters on resume but not the random
    generators, so the dropout of a resumed epoch would differ from the same epoch of an
    uninterrupted run; seeded per epoch it does not. (At the first batch rather than at the
    epoch start: a resumed run creates the loader's iterator, which draws from the generator,
    before that hook, an uninterrupted one after it.)
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx != 0:
            return
        value = epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank)
        torch.manual_seed(value)
        np.random.seed(value % 2**32)
        random.seed(value)


class SignalStop:
    """SIGINT and SIGTERM stop the run cleanly instead of killing it mid-write.

    During ``trainer.fit``/``test`` the signal is handed to Lightning's SIGTERM handling, which
    stops every rank together at the next batch boundary; the last checkpoint is the end of the
    last complete epoch (an epoch cut short is run again on relaunch, so the result equals an
    uninterrupted run's). Outside the Trainer's loops the run stops at once. Either way
    :meth:`interrupted` gives the :class:`RunInterrupted` to raise (exit code 130 or 143).
    A second Ctrl+C stops at once.

    Use as a context manager around the stages that train; ``trainer`` is set once built.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self.trainer: pl.Trainer | None = None
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
        if first and trainer is not None and lightning is not self._on_signal and callable(lightning):
            log.warning("received %s: stopping after the current batch (again to stop at once)",
                        signal.Signals(signum).name)
            lightning(signum, frame)  # Lightning's handler: all ranks stop at the next batch boundary
            return
        raise self.interrupted()

    def interrupted(self) -> RunInterrupted:
        """The error that ends the run, naming the signal and how to resume."""
        signum = self.signum or signal.SIGTERM
        return RunInterrupted(
            f"stopped by {signal.Signals(signum).name}. The run directory keeps the checkpoint of the last "
            "complete epoch (checkpoints/last.ckpt) and provenance.json says \"status\": \"interrupted\"; "
            "launch the same command again to resume.", signum)
