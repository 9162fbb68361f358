"""What keeps a training run honest: per-epoch random state that a resumed run reproduces exactly.

The clean stop on SIGINT/SIGTERM covers the whole run: :class:`~deepgeo_runner.core.signals.SignalStop`
(re-exported here for older imports).
"""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch

from deepgeo_runner.core.signals import STOP_SIGNALS, SignalStop

log = logging.getLogger(__name__)

__all__ = ["STOP_SIGNALS", "EpochSeed", "SignalStop", "epoch_seed"]


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
