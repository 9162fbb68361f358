"""Checkpoints a run can be resumed from exactly, whatever happened to the machine or the folder.

* :class:`SafeCheckpointIO`: every checkpoint Lightning writes goes to a temporary name and is
  renamed when complete (a full disk never truncates ``last.ckpt``), and every checkpoint it
  reads (``ckpt_path`` resume, test) is loaded with ``weights_only=True``.
* :class:`RunCheckpoint`: ``best.ckpt`` by the monitored score in its direction, ``last.ckpt``
  at the end of every epoch (Lightning's own rewrites it only when ``best`` improves), and a
  best-checkpoint record that follows the run directory when it is moved.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from deepgeo_runner.ml.checkpoint import load_checkpoint, save_checkpoint_atomic

log = logging.getLogger(__name__)


class SafeCheckpointIO(TorchCheckpointIO):
    """Atomic writes and ``weights_only`` reads of local checkpoint files."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        save_checkpoint_atomic(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        # weights_only whatever the caller asks: this package never needs to unpickle code
        return load_checkpoint(path, map_location=map_location if map_location is not None else "cpu")


class RunCheckpoint(ModelCheckpoint):
    """``best.ckpt`` (by ``monitor`` in ``mode``) and ``last.ckpt`` at every epoch end, fixed names.

    Resuming after the run directory was moved, the recorded best checkpoint is found under the
    new directory (Lightning forgets the best score then, and would let a worse epoch replace it).

    Args:
        dirpath: the folder; None: ``checkpoints/`` under the Trainer's ``default_root_dir`` (the
            run directory, where a relaunch looks for ``last.ckpt``), whatever the logger.
        monitor: the logged score that picks ``best.ckpt``.
        mode: ``max`` (higher is better) or ``min``.
    """

    _PATH_KEYS = ("best_model_path", "kth_best_model_path", "last_model_path")

    def __init__(self, dirpath: str | Path | None, monitor: str, mode: str) -> None:
        super().__init__(dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_last=True,
                         enable_version_counter=False)
        self._last_written_step = -1
        self._in_run_dir = dirpath is None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._in_run_dir:  # Lightning would put them under the logger's folder
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        super().setup(trainer, pl_module, stage)

    @property
    def state_key(self) -> str:
        # the key Lightning's own ModelCheckpoint used: earlier run directories keep their best record
        return super().state_key.replace(type(self).__qualname__, "ModelCheckpoint", 1)

    def _save_last_checkpoint(self, trainer: pl.Trainer, monitor_candidates: dict[str, Any]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def _write_last_if_missing(self, trainer: pl.Trainer) -> None:
        """``last.ckpt`` for this step, unless Lightning already wrote it (it does only on improvement)."""
        from lightning.pytorch.trainer.states import TrainerFn

        if (trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or trainer.fast_dev_run
                or self._last_written_step == trainer.global_step or trainer.global_step == 0):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._write_last_if_missing(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._write_last_if_missing(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.abspath(old) != os.path.abspath(self.dirpath):
            log.info("the run directory moved (checkpoints were in %s): the best checkpoint is tracked in %s",
                     old, self.dirpath)
            state_dict = {
                **state_dict, "dirpath": self.dirpath,
                **{k: self._moved(state_dict[k], old) for k in self._PATH_KEYS if state_dict.get(k)},
                "best_k_models": {self._moved(p, old): v for p, v in (state_dict.get("best_k_models") or {}).items()},
            }
        super().load_state_dict(state_dict)

    def _moved(self, path: str, old_dir: str) -> str:
        """``path`` under ``old_dir`` → the same file under this callback's directory."""
        rel = os.path.relpath(os.path.abspath(path), os.path.abspath(old_dir))
        return path if rel.startswith("..") else os.path.join(str(self.dirpath), rel)
