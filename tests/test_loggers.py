"""The ``logger`` group: each option runs a tiny fit and leaves its files holding the run's options
as hyperparameters (csv: hparams.yaml; tensorboard: the HPARAMS plugin's data in its event file;
mlflow: the run's params in its SQLite store); two at once; a missing package fails at config time
with the pip command."""

from __future__ import annotations

import importlib.util
import tomllib
from enum import StrEnum
from pathlib import Path

import pytest
import yaml

from deepgeo_runner.config.loggers import TRACKING_REQUIREMENTS
from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.lit.tracking import flat_hyperparameters
from tests.helpers import REPO, compose_config

FIT = ["debug=fast", "stages=[prepare,rasterize,chips,fit]", "seed=5"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # the small demo scene is prepared once for every logger


def _fit(loggers: str, tmp_path: Path, cache_dir: Path) -> Path:
    from deepgeo_runner.pipeline.runner import run

    run_dir = tmp_path / "run"
    overrides = [*FIT, f"logger={loggers}", f"paths.output_dir={run_dir}", f"paths.cache_dir={cache_dir}"]
    if "mlflow" in loggers:
        overrides.append(f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    cfg = compose_config(*overrides)
    validate_config(cfg)
    art = run(cfg, run_dir)
    assert art.best_score is not None
    return run_dir


def _csv_hyperparameters(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "logs" / "hparams.yaml").read_text())


def _tensorboard_hyperparameters(run_dir: Path) -> tuple[dict, list[str]]:
    """The options in the HPARAMS plugin's session start, and the metric tags it shows beside them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = EventAccumulator(str(run_dir / "logs" / "tensorboard"))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    params = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
              for k, v in start.session_start_info.hparams.items()}
    scalars = accumulator.Tags()["scalars"]
    return params, [m.name.tag for m in experiment.experiment.metric_infos if m.name.tag in scalars]


def _mlflow_run(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("deepgeo").experiment_id])
    return run


@pytest.mark.slow
def test_csv_logs_the_run_options_in_hparams_yaml(tmp_path, cache_dir):
    run_dir = _fit("csv", tmp_path, cache_dir)
    params = _csv_hyperparameters(run_dir)
    assert params["data.chip_size"] == 32 and params["seed"] == 5 and params["train.monitor"] == "val_f1_macro"
    assert params["model._target_"] and params["data.classes"] == ["forest", "deforestation", "water"]
    assert params["stages"] == ["prepare", "rasterize", "chips", "fit"]
    header = (run_dir / "logs" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "best_val_f1_macro" in header and "val_f1_macro" in header


@pytest.mark.slow
def test_tensorboard_holds_the_run_options_and_the_best_score_in_its_hparams(tmp_path, cache_dir):
    run_dir = _fit("tensorboard", tmp_path, cache_dir)
    params, metrics = _tensorboard_hyperparameters(run_dir)
    assert params["data.chip_size"] == 32 and params["seed"] == 5 and params["train.monitor"] == "val_f1_macro"
    assert metrics == ["hp_metric"]  # the best val_f1_macro, logged at the end of the fit
    assert not (run_dir / "logs" / "metrics.csv").exists()


@pytest.mark.slow
def test_mlflow_stores_the_run_options_as_params_of_a_run_named_after_its_directory(tmp_path, cache_dir):
    run_dir = _fit("mlflow", tmp_path, cache_dir)
    run = _mlflow_run(tmp_path)
    assert run.info.run_name == str(run_dir) and run.info.status == "FINISHED"
    assert run.data.params["data.chip_size"] == "32" and run.data.params["seed"] == "5"
    assert 0 <= run.data.metrics["best_val_f1_macro"] <= 1 and "val_loss" in run.data.metrics


@pytest.mark.slow
def test_two_loggers_at_once_each_leave_their_files(tmp_path, cache_dir):
    run_dir = _fit("[csv,tensorboard]", tmp_path, cache_dir)
    csv_params = _csv_hyperparameters(run_dir)
    tb_params, _ = _tensorboard_hyperparameters(run_dir)
    assert csv_params["seed"] == tb_params["seed"] == 5
    assert csv_params["logger.tensorboard._target_"] == tb_params["logger.tensorboard._target_"] == \
        "lightning.pytorch.loggers.TensorBoardLogger"
    assert set(tb_params) <= set(csv_params)  # the same options, keyed alike (TensorBoard drops empty lists)
    assert {"data.chip_size", "model._target_", "trainer.max_epochs", "optimizer.lr"} <= set(tb_params)
    assert (run_dir / "logs" / "metrics.csv").is_file() and (run_dir / "logs" / "history.csv").is_file()


@pytest.mark.parametrize("logger, missing, command", [
    ("tensorboard", {"tensorboard", "tensorboardX"}, r'pip install "tensorboard>=2\.14"'),
    ("mlflow", {"mlflow"}, r'pip install "mlflow-skinny>=3\.0"'),
    ("mlflow", {"sqlalchemy", "alembic"},
     r'needs sqlalchemy, alembic.*pip install "sqlalchemy>=1\.4,<2" "alembic<1\.14"'),
])
def test_a_logger_whose_package_is_missing_fails_at_config_time_with_the_pip_command(
        logger, missing, command, monkeypatch, tmp_path, compose):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a))
    cfg = compose(f"logger={logger}", f"paths.output_dir={tmp_path}")
    with pytest.raises(ConfigError, match=rf"logger\.{logger}: lightning\.pytorch\.loggers\.\w+Logger .*{command}"):
        validate_config(cfg)


def test_another_lightning_logger_names_its_own_package(tmp_path, compose):
    cfg = compose(f"paths.output_dir={tmp_path}",
                         "+logger.wandb={_target_: lightning.pytorch.loggers.WandbLogger, project: deepgeo}")
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match=r'logger\.wandb: .*WandbLogger needs wandb, not installed here: '
                                          r'pip install "wandb"; or drop it: logger\.wandb=null'):
        validate_config(cfg)


def test_an_mlflow_server_needs_no_database_packages(monkeypatch, tmp_path, compose):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("sqlalchemy", "alembic") else real(name, *a))
    validate_config(compose("logger=mlflow", "logger.mlflow.tracking_uri=http://localhost:5000",
                                   f"paths.output_dir={tmp_path}"))


@pytest.mark.parametrize("override, message", [
    ("+logger._target_=lightning.pytorch.loggers.CSVLogger",  # what Hydra's hint for logger._target_= says
     r"`logger` maps names to loggers, it is not one `_target_` node.*\+logger\.mine="),
    ("+logger.extra=3", r"logger\.extra=3 is not valid: expected a node with a '_target_'.*logger\.extra=null"),
])
def test_a_logger_entry_of_the_wrong_shape_says_the_form_expected(override, message, tmp_path, compose):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(f"paths.output_dir={tmp_path}", override))


def test_a_logger_is_dropped_by_name(tmp_path, compose):
    from deepgeo_runner.pipeline.instantiators import instantiate_loggers

    cfg = compose("logger=[csv,tensorboard]", "logger.csv=null", f"paths.output_dir={tmp_path}")
    validate_config(cfg)
    assert [type(log).__name__ for log in instantiate_loggers(cfg.logger)] == ["TensorBoardLogger"]


def test_the_install_commands_are_the_tracking_extra_of_pyproject():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(extras["tracking"]) == sorted(TRACKING_REQUIREMENTS.values())
    assert any("tracking" in req for req in extras["test"])  # CI installs them: every logger is tested


class Colour(StrEnum):
    red = "red"


def test_flat_hyperparameters_are_plain_values_under_dotted_keys():
    from dataclasses import dataclass, field

    @dataclass
    class Inner:
        colour: Colour = Colour.red
        path: Path = Path("/data/x.tif")

    @dataclass
    class Outer:
        inner: Inner = field(default_factory=Inner)
        model: dict = field(default_factory=lambda: {"_target_": "m.Net", "depth": {"a": 1}, "empty": {}})
        bands: tuple = ("red", "nir")
        images: list = field(default_factory=lambda: [{"date": "2020"}])
        nothing: None = None

    assert flat_hyperparameters(Outer()) == {
        "inner.colour": "red", "inner.path": "/data/x.tif", "model._target_": "m.Net", "model.depth.a": 1,
        "model.empty": {}, "bands": ["red", "nir"], "images": '[{"date": "2020"}]', "nothing": None}


@pytest.mark.slow
def test_a_resumed_run_continues_its_own_mlflow_run(tmp_path, cache_dir, compose):
    """A relaunch into the same run directory resumes the fit: its curves go on in the first MLflow run."""
    from deepgeo_runner.pipeline.runner import run

    run_dir = _fit("mlflow", tmp_path, cache_dir)
    first = _mlflow_run(tmp_path)
    overrides = [*FIT, "logger=mlflow", f"paths.output_dir={run_dir}", f"paths.cache_dir={cache_dir}",
                 f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "trainer.max_epochs=2"]
    cfg = compose(*overrides)
    validate_config(cfg)
    run(cfg, run_dir)
    again = _mlflow_run(tmp_path)  # still exactly one run in the experiment
    assert again.info.run_id == first.info.run_id
