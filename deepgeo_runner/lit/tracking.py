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

from deepgeo_runner.core.atomic import write_text_atomic

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
        logger.log_hyperparams(new_params(logger, params))
        logger.save()


def new_params(logger: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` less those a continued MLflow run already holds: MLflow refuses to change a logged
    param, and a resume may change some (``trainer.max_epochs`` to train longer); those are named."""
    if type(logger).__name__ != "MLFlowLogger" or getattr(logger, "_run_id", None) is None:
        return dict(params)
    logged = logger.experiment.get_run(logger.run_id).data.params
    changed = sorted(k for k, v in params.items() if k in logged and logged[k] != str(v))
    if changed:
        import logging

        logging.getLogger(__name__).warning(
            "MLflow run %s keeps the first attempt's values of %s (MLflow params cannot change); this "
            "attempt's are in the run directory's .hydra/config.yaml", logger.run_id, ", ".join(changed))
    return {k: v for k, v in params.items() if k not in logged}


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


MLFLOW_RUN_FILE = PurePath("logs") / "mlflow_run.json"  # in the run directory: the MLflow run a resume continues


def continue_mlflow_run(loggers: Iterable[Any], run_dir: Any) -> None:
    """On resume, point each MLflow logger at the run its first attempt created, so its curves go on
    in one MLflow run instead of a new one per attempt. Call before a logger first touches MLflow."""
    from pathlib import Path

    path = Path(run_dir) / MLFLOW_RUN_FILE
    try:
        run_id = json.loads(path.read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return  # a first attempt, or one without MLflow: a new MLflow run
    for logger in loggers:
        if type(logger).__name__ == "MLFlowLogger" and run_id and getattr(logger, "_run_id", None) is None:
            logger._run_id = str(run_id)  # MLFlowLogger's own attribute: its experiment reopens that run


def record_mlflow_run(loggers: Iterable[Any], run_dir: Any) -> None:
    """Write the MLflow run id of this run into ``logs/mlflow_run.json`` (rank 0), for a later resume."""
    from pathlib import Path


    for logger in loggers:
        if type(logger).__name__ == "MLFlowLogger" and getattr(logger, "run_id", None):
            write_text_atomic(Path(run_dir) / MLFLOW_RUN_FILE, json.dumps({"run_id": logger.run_id}) + "\n")
            return
