"""Callbacks of the ``callbacks`` config group (``conf/callbacks/``) that Lightning does not have.

The group lists every callback of the Trainer by ``_target_``: the checkpoints
(:class:`~deepgeo_runner.lit.checkpoints.RunCheckpoint`), the per-epoch seeds
(:class:`~deepgeo_runner.lit.guards.EpochSeed`), the history below and early stopping. A new
callback goes in this module (or any importable one) and gets an entry in that YAML.

* :class:`TrainingHistory`: ``logs/history.csv``, the curves the report draws, whatever the logger.
* :func:`early_stopping`: Lightning's ``EarlyStopping``, or nothing while the patience is null.
* :class:`ProgressLines`: periodic progress lines in place of the bar when not on a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping

from deepgeo_runner.core.console import ProgressLines as Lines
from deepgeo_runner.core.console import interactive
from deepgeo_runner.core.history import HISTORY_FILE, Row, read_history, write_history


class TrainingHistory(pl.Callback):
    """One row per epoch — epoch, step and every epoch-level score logged — in a small CSV file.

    The file is rewritten whole (atomically) at the end of every training epoch, by rank 0. A
    resumed run keeps the rows of the epochs its checkpoint completed and drops later ones (an
    epoch cut short by a kill runs again), so its history equals an uninterrupted run's; a new
    run starts a new file. Step-level values (``*_step``) are left out; ``train_loss_epoch`` is
    written as ``train_loss``; the ``val_*`` scores only for epochs that validated
    (``trainer.check_val_every_n_epoch``), as Lightning keeps the last ones in its metrics.

    Args:
        path: the file; None: ``logs/history.csv`` under the Trainer's ``default_root_dir``
            (the run directory).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.rows: list[Row] = []
        self._validated = False

    def file(self, trainer: pl.Trainer) -> Path:
        """Where the history goes for ``trainer``."""
        return self.path if self.path is not None else Path(trainer.default_root_dir) / HISTORY_FILE

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the loops are restored by now (not yet at on_fit_start): the epochs the resumed checkpoint completed
        done = trainer.current_epoch
        self.rows = [row for row in read_history(self.file(trainer)) if row["epoch"] < done] if done else []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._validated = self._validated or not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row: Row = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        metrics = trainer.callback_metrics
        for key in sorted(metrics):
            value = metrics[key]
            if (key.endswith("_step") or (key.startswith("val_") and not self._validated)
                    or not isinstance(value, torch.Tensor | float | int)):
                continue
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:
                    continue
                value = value.item()
            row[key.removesuffix("_epoch")] = float(value)
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if trainer.is_global_zero:
            write_history(self.file(trainer), self.rows)


def early_stopping(monitor: str, mode: str, patience: int | None, **kwargs: Any) -> EarlyStopping | None:
    """Lightning's ``EarlyStopping`` on ``monitor`` in direction ``mode``; None (no callback) when
    ``patience`` is None, so that ``train.early_stopping_patience: null`` means never stop early.
    Other keyword arguments go to ``EarlyStopping`` (``min_delta``, ``strict``, ...)."""
    if patience is None:
        return None
    return EarlyStopping(monitor=monitor, mode=mode, patience=int(patience), **kwargs)


class ProgressLines(pl.Callback):
    """Training progress as plain log lines when nobody watches a terminal (nohup, batch jobs, CI).

    On a terminal Lightning's bar shows progress and this callback stays silent; elsewhere the
    runner turns the bar off (its carriage returns make one unreadable line in a log file) and
    this logs the epoch, the batches done, the loss and the time left every ``every_s`` seconds,
    and one line per finished epoch with its scores.
    """

    def __init__(self, every_s: float = 30.0) -> None:
        self.every_s = every_s
        self._bar = None

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.is_global_zero and not interactive()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer):
            return

        total = trainer.num_training_batches
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        self._bar = Lines(total=int(total) if total != float("inf") else None,
                          desc=f"epoch {trainer.current_epoch + 1}{epochs}", unit="batches", every_s=self.every_s)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._bar is not None:
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if torch.is_tensor(loss) and loss.numel() == 1:
                self._bar.postfix = f"loss {float(loss):.4f}"
            self._bar.update()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """One line per epoch with its scores. Lightning validates at an epoch's end before this hook,
        so the line carries that validation's scores; a mid-epoch validation (``val_check_interval``
        < 1) or an epoch without one (``check_val_every_n_epoch``) gives the latest scores known."""
        if self._bar is None or trainer.sanity_checking:
            return
        import logging

        scores = {k: float(v) for k, v in trainer.callback_metrics.items()
                  if torch.is_tensor(v) and v.numel() == 1 and not k.endswith("_step")}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items()))
        logging.getLogger("deepgeo_runner.progress").info("%s done: %s", self._bar.desc, shown or "no scores")
        self._bar.closed = True
        self._bar = None
