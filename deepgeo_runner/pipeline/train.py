"""Stages ``fit`` and ``test``: Lightning objects in, trained weights and test scores out."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch

from deepgeo_runner.lit.module import SegmentationModule

log = logging.getLogger(__name__)


def fit(
    trainer: pl.Trainer,
    module: SegmentationModule,
    datamodule: pl.LightningDataModule,
    resume_from: Path | None = None,
) -> Path | None:
    """Train (continuing ``resume_from`` when given: epoch, step, optimizer state and all);
    return the best checkpoint, or None without checkpointing."""
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    callback = trainer.checkpoint_callback
    best = getattr(callback, "best_model_path", "") if callback is not None else ""
    return Path(best) if best else None


def test(
    trainer: pl.Trainer,
    module: SegmentationModule,
    datamodule: pl.LightningDataModule,
    checkpoint: Path | None,
) -> dict:
    """Score ``module`` (with ``checkpoint``'s weights when given) on the test split.

    Every rank scores its own shard; the confusion matrix is summed across ranks, so the
    scores equal a single-process run's.
    """
    trainer.test(module, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint else None,
                 verbose=False)
    if module.test_scores is None:
        raise RuntimeError("the test loop produced no scores")
    return module.test_scores


def load_weights(module: SegmentationModule, checkpoint: str | Path) -> dict:
    """Load a checkpoint's weights into ``module``; return its stored inference metadata."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    module.load_state_dict(state["state_dict"])
    return state.get("deepgeo", {})
