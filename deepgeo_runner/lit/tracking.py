"""What the loggers of the ``logger`` group receive besides the curves: the run's options as
hyperparameters, and the fit's best score.

Lightning would log the LightningModule's own hyperparameters, which here are none (the
network, loss and optimizer are injected objects), leaving ``hparams.yaml`` as ``{}``. The
runner turns that off (``enable_autolog_hparams=False``) and logs instead every option of the
run, flattened to ``group.key`` names, so that a TensorBoard HPARAMS table or an MLflow
comparison shows what differs between runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

import lightning.pytorch as pl

Scalar = str | int | float | bool | None


def flat_hyperparameters(options: Any, prefix: str = "") -> dict[str, Any]:
    """``options`` (the run's dataclasses and dicts) as ``{"data.chip_size": 32, ...}``.

    Values are plain: enums by their value, paths as strings, lists of scalars as lists, and
    anything deeper (a list of mappings) as its JSON text, which every logger can store.
    """
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        items: Iterable[tuple[str, Any]] = ((f.name, getattr(options, f.name)) for f in dataclasses.fields(options))
    elif isinstance(options, Mapping):
        items = ((str(k), v) for k, v in options.items())
    else:
        return {prefix.rstrip("."): _plain(options)}
    flat: dict[str, Any] = {}
    for key, value in items:
        if (dataclasses.is_dataclass(value) and not isinstance(value, type)) or (
                isinstance(value, Mapping) and value):
            flat.update(flat_hyperparameters(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {} if not value else json.dumps(value, default=str, sort_keys=True)
    if isinstance(value, list | tuple):
        if any(isinstance(v, Mapping | list | tuple) for v in value):
            return json.dumps(value, default=str)
        return [_plain(v) for v in value]
    return value if isinstance(value, Scalar) else str(value)


def log_hyperparameters(loggers: Iterable[Any], params: Mapping[str, Any]) -> None:
    """Give ``params`` to each logger (rank 0 only: Lightning's loggers guard themselves) and write
    them out now, so that an interrupted run keeps them too."""
    for logger in loggers:
        logger.log_hyperparams(dict(params))
        logger.save()


class LogBestScore(pl.Callback):
    """At the end of the fit, ``best_<monitor>`` (the checkpoint callback's best score) to every
    logger, and to TensorBoard as ``hp_metric``, the score its HPARAMS table shows beside the
    options (Lightning's convention; it would otherwise hold a placeholder -1)."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checkpoint = trainer.checkpoint_callback
        score = getattr(checkpoint, "best_model_score", None)
        if score is None or not bool(score.isfinite()) or not trainer.loggers:
            return
        from lightning.pytorch.loggers import TensorBoardLogger

        value = float(score)
        for logger in trainer.loggers:
            metrics = {f"best_{checkpoint.monitor}": value}
            if isinstance(logger, TensorBoardLogger):
                metrics["hp_metric"] = value
            logger.log_metrics(metrics, step=trainer.global_step)
