"""The Trainer's wiring from config: every trainer, logger, callbacks and debug option builds its
Trainer, callbacks and logger; the monitored score's direction reaches the callbacks; a bad
callbacks entry fails with the config. In-process, no fit (under a second each)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.loggers import Logger

from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.lit.callbacks import ProgressLines, TrainingHistory
from deepgeo_runner.lit.checkpoints import RunCheckpoint, SafeCheckpointIO
from deepgeo_runner.lit.guards import EpochSeed
from deepgeo_runner.lit.tracking import LogBestScore
from deepgeo_runner.pipeline.instantiators import instantiate, instantiate_callbacks, instantiate_loggers
from tests.helpers import options

WIRING = ["trainer", "logger", "callbacks", "debug"]


def build(cfg, run_dir: Path):
    """Trainer, callbacks and logger as the runner builds them (no fit)."""
    callbacks = instantiate_callbacks(cfg.get("callbacks"))
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False,
                          default_root_dir=str(run_dir), use_distributed_sampler=False,
                          plugins=[SafeCheckpointIO()])
    return trainer, callbacks, loggers


def _wirings() -> list[tuple]:
    """Every trainer × callbacks × debug option with the csv and none loggers, and each other logger
    once (a logger does not depend on the Trainer's options; the mlflow one opens a database)."""
    grid = [options(g) + ([None] if g == "debug" else []) for g in WIRING]
    grid[1] = [o for o in grid[1] if o in ("csv", "none")]
    others = [("default", o, "default", None) for o in options("logger") if o not in ("csv", "none")]
    return list(itertools.product(*grid)) + others


@pytest.mark.parametrize("trainer,logger,callbacks,debug", _wirings())
def test_every_wiring_option_builds_its_trainer_callbacks_and_logger(trainer, logger, callbacks, debug, tmp_path,
                                                                    compose):
    if trainer == "ddp" and not torch.cuda.is_available():
        pytest.skip("trainer=ddp asks for every visible GPU (accelerator=gpu, devices=-1): no CUDA device here")
    overrides = [f"trainer={trainer}", f"logger={logger}", f"callbacks={callbacks}", f"paths.output_dir={tmp_path}"]
    if logger == "mlflow":  # its store, not mlflow.db in the folder the tests run from
        overrides.append(f"logger.mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db")
    cfg = compose(*overrides + ([f"debug={debug}"] if debug else []))
    validate_config(cfg)
    built, made, logs = build(cfg, tmp_path)
    assert [type(c) for c in made] == [RunCheckpoint, EpochSeed, TrainingHistory, LogBestScore,
                                       ProgressLines]  # no early stop
    assert built.checkpoint_callback is made[0] and made[0].mode == "max" and made[0].monitor == "val_f1_macro"
    assert made[1].seed == cfg.seed
    assert len(logs) == (logger != "none") and all(isinstance(log, Logger) for log in logs)
    assert built.loggers == logs
    if trainer.startswith("ddp"):
        assert built.world_size == 2 if trainer == "ddp_cpu" else built.world_size >= 1
    if debug == "fast":
        assert built.max_epochs == 1 and built.limit_train_batches == 2


@pytest.mark.parametrize("overrides, mode", [([], "max"), (["train.monitor=val_loss"], "min"),
                                             (["train.monitor=train_loss", "train.monitor_mode=min"], "min")])
def test_the_monitor_and_its_direction_reach_checkpoint_and_early_stopping(overrides, mode, tmp_path, compose):
    cfg = compose(f"paths.output_dir={tmp_path}", "train.early_stopping_patience=3", *overrides)
    validate_config(cfg)
    checkpoint, *_, stop = instantiate_callbacks(cfg.callbacks)
    assert isinstance(stop, EarlyStopping) and stop.patience == 3
    assert checkpoint.monitor == stop.monitor == cfg.train.monitor
    assert checkpoint.mode == stop.mode == mode


def test_a_callback_is_dropped_or_added_from_the_command_line(tmp_path, compose):
    cfg = compose(f"paths.output_dir={tmp_path}", "callbacks.epoch_seed=null",
                         "+callbacks.lr={_target_: lightning.pytorch.callbacks.LearningRateMonitor}")
    validate_config(cfg)
    assert [type(c).__name__ for c in instantiate_callbacks(cfg.callbacks)] == [
        "RunCheckpoint", "TrainingHistory", "LogBestScore", "ProgressLines", "LearningRateMonitor"]


@pytest.mark.parametrize("override, message", [
    ("+callbacks.extra=3", r"callbacks\.extra=3 is not valid.*_target_"),
    ("+callbacks.checkpoint.monitr=val_loss", r"callbacks\.checkpoint\.monitr is not a parameter of .*RunCheckpoint"),
    ("callbacks.history._target_=deepgeo_runner.lit.callbacks.History",
     r"callbacks\.history\._target_='deepgeo_runner\.lit\.callbacks\.History' names nothing"),
])
def test_a_bad_callbacks_entry_fails_with_the_config(override, message, tmp_path, compose):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(f"paths.output_dir={tmp_path}", override))


def test_a_callback_that_cannot_be_built_names_its_key(tmp_path, compose):
    cfg = compose(f"paths.output_dir={tmp_path}", "callbacks.checkpoint.mode=sideways")
    with pytest.raises(ConfigError, match=r"callbacks\.checkpoint: cannot build '.*RunCheckpoint'.*sideways"):
        instantiate_callbacks(cfg.callbacks)
