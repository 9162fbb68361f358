"""Checks of the ``logger`` group at config time: its shape, and the packages each logger needs.

A logger's package (tensorboard, mlflow) is imported by Lightning only when the Trainer is
built, after the data stages; checked here, a missing one fails within seconds, with the pip
command that installs it. Nothing is imported: :func:`importlib.util.find_spec` only looks.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from omegaconf import DictConfig

from deepgeo_runner.config.schema import range_error
from deepgeo_runner.core.errors import ConfigError

# What pyproject's `tracking` extra installs; tests/test_loggers.py checks that the two agree.
TRACKING_REQUIREMENTS = {
    "tensorboard": "tensorboard>=2.14",
    "mlflow": "mlflow-skinny>=3.0",
    "sqlalchemy": "sqlalchemy>=1.4,<2",  # MLflow's database store; <2 for Optuna 2's storage (the sweep extra)
    "alembic": "alembic<1.14",
}
# Lightning's logger class → the modules it needs (any one of a tuple's), by the requirement's name.
_NEEDS = {
    "TensorBoardLogger": [("tensorboard", ("tensorboard", "tensorboardX"))],
    "MLFlowLogger": [("mlflow", ("mlflow",))],
    "WandbLogger": [("wandb", ("wandb",))],  # Lightning's other loggers: installed by their own names
    "CometLogger": [("comet-ml", ("comet_ml",))],
    "NeptuneLogger": [("neptune", ("neptune",))],
}
_EXTRA_HINT = " (or the packages of every logger of conf/logger/: pip install 'deepgeo-runner[tracking]')"
_DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy store


def check_loggers(loggers: Any) -> None:
    """``logger`` maps names to ``_target_`` nodes (or null, to drop one); each one's packages are installed.

    Raises:
        ConfigError: naming the ``logger.<name>`` key and, for a missing package, the pip command.
    """
    if loggers is None:
        return
    if not isinstance(loggers, DictConfig):
        raise range_error("logger", loggers, "a mapping name → {_target_: ...}: choose options of conf/logger/, "
                          "e.g. logger=csv or 'logger=[csv,tensorboard]'")
    if "_target_" in loggers:
        raise ConfigError(
            f"logger._target_={loggers.get('_target_')!r}: `logger` maps names to loggers, it is not one "
            "`_target_` node: choose options of conf/logger/ (logger=csv, tensorboard, mlflow, none, or several: "
            "'logger=[csv,tensorboard]'), or add your own under a name: "
            "+logger.mine='{_target_: lightning.pytorch.loggers.CSVLogger, save_dir: ${paths.output_dir}}'.")
    for name in loggers:
        node = loggers.get(name)
        if node is None:
            continue
        if not (isinstance(node, DictConfig) and isinstance(node.get("_target_"), str)):
            raise range_error(f"logger.{name}", node, "a node with a '_target_' naming a Lightning logger, "
                              f"or null to drop it (logger.{name}=null)")
        _check_packages(str(name), node)


def missing_packages(node: DictConfig) -> list[str]:
    """The requirement names (keys of :data:`TRACKING_REQUIREMENTS`) that the logger ``node`` lacks."""
    target = str(node.get("_target_"))
    if not target.startswith(("lightning.", "pytorch_lightning.")):
        return []
    needs = list(_NEEDS.get(target.rpartition(".")[2], []))
    if needs and needs[0][0] == "mlflow" and _database_uri(node):
        needs += [("sqlalchemy", ("sqlalchemy",)), ("alembic", ("alembic",))]
    return [req for req, modules in needs if not any(importlib.util.find_spec(m) for m in modules)]


def _check_packages(name: str, node: DictConfig) -> None:
    missing = missing_packages(node)
    if missing:
        command = "pip install " + " ".join(f'"{TRACKING_REQUIREMENTS.get(m, m)}"' for m in missing)
        raise ConfigError(
            f"logger.{name}: {node._target_} needs {', '.join(missing)}, not installed here: {command}"
            f"{_EXTRA_HINT if set(missing) <= set(TRACKING_REQUIREMENTS) else ''}; or drop it: "
            f"logger.{name}=null.")


def _database_uri(node: DictConfig) -> bool:
    """The MLflow logger stores into a database (its SQLite default, or another SQLAlchemy URL)."""
    import os

    uri = node.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or ""
    return str(uri).split(":", 1)[0].split("+", 1)[0].lower() in _DATABASE_SCHEMES
