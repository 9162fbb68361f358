"""The ``deepgeo`` command: compose the config with Hydra, check it, run the cycle.

Only this module knows Hydra's decorator. It imports nothing heavy at module level, so a
bad config is reported within a second or two, before torch or Lightning is loaded.

A :class:`~deepgeo_runner.core.errors.DeepGeoError` (a bad key, an unreadable input, a full disk)
is printed as one message and the command exits with status 2; ``DEEPGEO_DEBUG=1`` shows its
traceback instead. Any other exception is a bug and keeps its traceback (exit status 1).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from deepgeo_runner.compare import summarize_sweep
from deepgeo_runner.config.command_line import check_config_source, check_overrides
from deepgeo_runner.config.location import config_dir
from deepgeo_runner.config.options import run_options
from deepgeo_runner.config.schema import register_configs
from deepgeo_runner.config.validate import monitor_mode
from deepgeo_runner.core.atomic import check_writable
from deepgeo_runner.core.errors import ConfigError, DeepGeoError, RunInterrupted, TrainingDiverged
from deepgeo_runner.launch import check_launch

log = logging.getLogger("deepgeo_runner")


register_configs()

DEBUG_ENV = "DEEPGEO_DEBUG"


def debugging() -> bool:
    """``DEEPGEO_DEBUG=1``: show the traceback of the errors otherwise printed as one message."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _exit_with(exc: DeepGeoError, cleanup: Callable[[], None] | None = None) -> None:
    if debugging():
        if cleanup is not None:
            cleanup()
        raise exc
    if isinstance(exc, RunInterrupted):  # one line where a shell shows it, also when stdout is redirected
        print(f"deepgeo: {exc}", file=sys.stderr, flush=True)
        _log_to_files(logging.ERROR, str(exc))
    else:
        log.error("%s", exc)
    if cleanup is not None:
        cleanup()
    sys.exit(getattr(exc, "exit_code", 2))  # 2, or 128 + the signal that interrupted the run


def _log_to_files(level: int, message: str) -> None:
    """Write ``message`` to the job's log file(s) only (the console already got it on stderr)."""
    record = log.makeRecord(log.name, level, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers + log.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class OutputDirCheck(Callback):
    """Hydra callback: the run (or sweep) directory must take files before Hydra writes ``.hydra/``.

    Hydra creates that directory before the task starts; a read-only one would otherwise fail
    inside Hydra with a traceback. Registered in ``conf/hydra/default.yaml``.
    """

    def _check(self, folder: Any, key: str) -> None:
        try:
            check_writable(str(folder), key)
        except DeepGeoError as exc:
            if debugging():
                raise
            print(f"Error: {exc}", file=sys.stderr)  # Hydra's logging is not set up yet
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")


class SweepSummary(Callback):
    """Hydra callback: every multirun leaves ``summary.csv/.json/.html`` in its sweep directory.

    Rewritten after each job (a long sweep can be watched; a sweep that dies keeps what ran) and
    at the end (with an Optuna search's winner). A job that ends the whole process (a config error
    exits with status 2) still gets its summary, at exit. The summary never fails the sweep: a
    problem writing it is logged. Registered in ``conf/hydra/default.yaml``.
    """

    def __init__(self) -> None:
        self._sweep_dir: Path | None = None
        self._pending = False

    def _write(self) -> None:
        if self._sweep_dir is None:
            return
        try:
            comparison = summarize_sweep(self._sweep_dir)
            log.info("sweep summary of %d runs: %s", len(comparison.runs), self._sweep_dir / "summary.html")
        except Exception as exc:  # noqa: BLE001 - a summary must never fail the runs it describes
            log.warning("could not write the sweep summary in %s: %s", self._sweep_dir, exc)

    def _at_exit(self) -> None:
        if self._pending:
            self._write()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import atexit

        self._sweep_dir = Path(str(config.hydra.sweep.dir))
        self._pending = True
        atexit.register(self._at_exit)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        if str(hydra_cfg.mode).endswith("MULTIRUN"):  # also in a launcher's worker process
            self._sweep_dir = Path(str(hydra_cfg.sweep.dir))
            self._write()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._pending = False
        self._write()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig


    optimizing = "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    log_name = f"{HydraConfig.get().job.name}.log"
    multirun = str(HydraConfig.get().mode).endswith("MULTIRUN")
    fresh = not _outputs_in(run_dir, log_name)  # an earlier attempt's folder (a resumed run) is never removed
    try:
        _check_launch(cfg)  # torchrun/srun/multirun: how this run's processes were started
        opts = run_options(cfg, run_dir)  # validated and typed: the stages read only these
        from deepgeo_runner.pipeline.preflight import preflight  # heavy: rasterio/GDAL, after the config checks

        preflight(opts, run_dir, "hydra.sweep.dir" if multirun else "hydra.run.dir")
        if optimizing and "fit" not in cfg.stages:
            raise ConfigError(f"hparams_search maximizes each trial's best validation score ({cfg.train.monitor}): "
                              f"stages={list(cfg.stages)} must include fit.")
        direction = HydraConfig.get().sweeper.get("direction") if optimizing else None
        if isinstance(direction, str):
            _check_search_direction(cfg, direction.lower())
        from deepgeo_runner.pipeline.runner import run  # heavy imports start here

        artifacts = run(opts, run_dir, checked=True)  # preflight ran above, before the heavy imports
        if optimizing and artifacts.best_score is None:
            raise ConfigError(f"this trial logged no {cfg.train.monitor} (train.monitor): the search has no "
                              "objective; check that the val split has chips.")
    except KeyboardInterrupt:  # Ctrl+C before the run's own handler was installed (composing, preflight)
        _exit_with(RunInterrupted("stopped by SIGINT before the run started; nothing was written.", 2),
                   (lambda: _discard_unstarted_run(run_dir, log_name)) if fresh and not multirun else None)
    except TrainingDiverged as exc:
        if not optimizing:
            _exit_with(exc)
        log.error("%s", exc)  # provenance.json says "failed"
        log.warning("this trial diverged: the sweeper marks it failed and the search goes on")
        raise  # Hydra keeps it in the job's return, the Optuna sweeper tells the study FAIL (max_failure_rate)
    except DeepGeoError as exc:
        refused = not isinstance(exc, RunInterrupted) and fresh and not multirun  # exit 2: nothing to keep
        _exit_with(exc, (lambda: _discard_unstarted_run(run_dir, log_name)) if refused else None)
    _print_headline(run_dir, artifacts)
    # what a sweeper optimizes: the best validation score of the fit, never the test split's
    # (a search tuned on the test split would report a biased test score)
    if artifacts.best_score is not None:
        log.info("best %s %.4f", cfg.train.monitor, artifacts.best_score)
    return artifacts.best_score


def _print_headline(run_dir: Path, artifacts: Any) -> None:
    """The run's last lines: the map's accuracy and areas (assessment.json) when it was assessed, else
    one line saying it is unmeasured and how to measure it; then the test split and what it covers."""
    from deepgeo_runner.report.headline import headline_lines

    metrics = artifacts.metrics or {}
    assessment = read_assessment(run_dir)  # also of an existing map (stages=[assess])
    if not (assessment or metrics or getattr(artifacts, "prediction", None) is not None):
        return  # no map and no scores (stages=[check], a prepare-only run): nothing to judge
    for line in headline_lines(assessment, metrics):
        log.info("%s", line)


def read_assessment(run_dir: Path) -> dict | None:
    """``assessment.json`` of the run, or None when the map was not assessed (or it cannot be read)."""
    import json

    path = run_dir / "assessment.json"
    try:
        result = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "overall_accuracy" in result else None


NOTHING_PRODUCED = {".hydra", "provenance.json"}  # with the job's log: what a refused run leaves


def _outputs_in(run_dir: Path, log_name: str) -> bool:
    """Whether ``run_dir`` holds more than Hydra's own files: outputs of an earlier attempt."""
    try:
        return run_dir.is_dir() and not {p.name for p in run_dir.iterdir()} <= {".hydra", log_name}
    except OSError:
        return True  # unreadable: never take it for an empty stub


def _discard_unstarted_run(run_dir: Path, log_name: str) -> None:
    """Remove the folder of a run refused before it produced anything (a config or input error).

    Hydra creates the run directory before the task runs; left behind with only Hydra's own
    files and the "failed" provenance.json, it would look like a real run in ``runs/``. The caller
    passes only folders that held nothing before this attempt; one holding anything else now
    (a data report, logs, checkpoints) is kept. The error is printed on the console either way.
    """
    import shutil

    try:
        if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= NOTHING_PRODUCED | {log_name}:
            shutil.rmtree(run_dir, ignore_errors=True)
            log.info("the run did not start: its folder %s was removed", run_dir)
    except OSError:
        pass


def _check_launch(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf


    hydra_cfg = HydraConfig.get()
    check_launch(multirun=str(hydra_cfg.mode).endswith("MULTIRUN"),
                 run_dir_template=str(OmegaConf.to_container(hydra_cfg.run, resolve=False).get("dir")),
                 launcher=str(hydra_cfg.launcher.get("_target_", "")),
                 trainer=OmegaConf.to_container(cfg.trainer, resolve=True), stages=list(cfg.stages))


def _check_search_direction(cfg: DictConfig, direction: str) -> None:
    """The sweeper must optimize the monitored score in its own direction (a loss is minimized)."""
    wanted = "minimize" if monitor_mode(cfg.train) == "min" else "maximize"
    if direction != wanted:
        raise ConfigError(f"hydra.sweeper.direction={direction} but train.monitor={cfg.train.monitor} is better when "
                          f"{'lower' if wanted == 'minimize' else 'higher'}: set hydra.sweeper.direction={wanted}.")


def main() -> None:
    """Console-script entry point."""
    try:  # before Hydra: its --config-dir trap would silently run the defaults
        check_config_source(sys.argv[1:])
        check_overrides(sys.argv[1:], config_dir())  # a misspelt key or an unquoted path, with the fix
    except ConfigError as exc:
        if debugging():
            raise
        print(f"Error: {exc}", file=sys.stderr)  # Hydra's logging is not set up yet
        sys.exit(2)
    _main()


if __name__ == "__main__":
    main()
