"""Stages ``fit`` and ``test``: Lightning objects in, trained weights and test scores out."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.lit.module import SegmentationModule
from deepgeo_runner.ml.checkpoint import load_checkpoint
from deepgeo_runner.ml.model_card import checkpoint_meta

log = logging.getLogger(__name__)


def fit(
    trainer: pl.Trainer,
    module: SegmentationModule,
    datamodule: pl.LightningDataModule,
    resume_from: Path | None = None,
) -> Path | None:
    """Train (continuing ``resume_from`` when given: epoch, step, optimizer state and all);
    return the best checkpoint, or None without checkpointing.

    Lightning reads ``resume_from`` with ``weights_only=True`` (through the Trainer's checkpoint
    plugin as well), so a crafted file runs nothing.
    """
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None,
                weights_only=True)
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
                 verbose=False, weights_only=True)
    if module.test_scores is None:
        raise RuntimeError("the test loop produced no scores")
    return module.test_scores


def load_weights(module: SegmentationModule, checkpoint: str | Path) -> dict:
    """Load a checkpoint's weights into ``module``; return its stored inference metadata."""
    state = load_checkpoint(checkpoint)
    load_matching_weights(module, state, checkpoint)
    return checkpoint_meta(state.get("deepgeo"), f"checkpoint '{checkpoint}'") or {}  # read through the model card


def describe_model(model: Any) -> str:
    """A model config as one short line, e.g. ``smp_model(arch=Unet, encoder=resnet18)``."""
    if not isinstance(model, dict) or "_target_" not in model:
        return "an unknown model"
    skip = {"_target_", "in_channels", "classes", "dates", "band_names", "pretrained_bands"}
    args = [f"{k}={v}" for k, v in model.items() if k not in skip and isinstance(v, str | int | float | list)]
    return f"{str(model['_target_']).rsplit('.', 1)[-1]}({', '.join(args)})"


def load_matching_weights(module: SegmentationModule, state: dict, checkpoint: str | Path,
                          hint: str | None = None) -> None:
    """Load ``state``'s weights into ``module``, or say that they belong to another network.

    Raises:
        ConfigError: naming the checkpoint, its model and the configured one, the first
            differing weights, and ``hint`` (what to change), instead of torch's long traceback.
    """
    weights = state.get("state_dict")
    if not isinstance(weights, dict):
        raise ConfigError(f"checkpoint '{checkpoint}' holds no 'state_dict' of weights: give a .ckpt "
                          "written by deepgeo.")
    try:
        module.load_state_dict(weights)
        return
    except RuntimeError:
        pass
    expected = module.state_dict()
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
              if k in weights and isinstance(weights[k], torch.Tensor) and weights[k].shape != v.shape]
    details = "; ".join(part for part in (
        f"shapes differ: {', '.join(shapes[:3])}" if shapes else "",
        f"missing: {', '.join(missing[:3])}" if missing else "",
        f"not in this model: {', '.join(unexpected[:3])}" if unexpected else "") if part)
    try:
        theirs = describe_model((checkpoint_meta(state.get("deepgeo")) or {}).get("model"))
    except InputDataError:
        theirs = "an unknown model"
    ours = describe_model(module.inference_meta.get("model"))
    raise ConfigError(
        f"checkpoint '{checkpoint}' was written by another network, {theirs}, than the configured "
        f"{ours} ({details}). " + (hint or "Set model=... (and data.classes, bands) as when it was trained, or "
                                   "give a checkpoint of this model.")
    )
