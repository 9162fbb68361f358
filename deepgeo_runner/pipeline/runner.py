"""The cycle: from a config (or its typed options) to a run directory, in the order of the stage
table (:mod:`deepgeo_runner.config.stages`).

Each stage's task (a row of the table) reads the run's options and calls the config-free stage
functions of ``deepgeo_runner/stages/``; this module only says what runs when. It is safe to run
again in the same run directory: Lightning relaunches the whole command for DDP ranks > 0, so every
rank passes through here. Expensive stages come from the cache (built by rank 0 before the ranks
start), and only rank 0 writes files shared by the run.

Where a change goes (the house; ARCHITECTURE.md has the floors):
- a stage: a module in ``stages/`` and one row in ``config/stages.py`` (its options adapter in
  ``pipeline/stage_options.py``; a task in ``pipeline/`` only for what a plain row cannot do);
- a config key or its default: ``config/schema.py`` (the YAML files only say what differs);
- config → options: ``config/options.py``; → a stage's options and derived defaults:
  ``pipeline/stage_options.py``; cross-key checks: ``config/validate.py``;
- the input rasters and analysis grid: ``pipeline/inputs.py``; the split: ``pipeline/splitting.py``;
- the data check: ``stages/data_check.py`` (numbers) and ``pipeline/checking.py`` (gathering);
- prepare/rasterize/chips and their cache keys: ``pipeline/cached_stages.py``;
- fit/test and the Trainer: ``pipeline/learning.py``; prediction: ``pipeline/predicting.py``;
- accuracy and area of the map from a sample: ``pipeline/assess.py`` (numbers: ``assess/``);
- provenance: ``pipeline/record.py``; the numeric core: ``geo/``, ``ml/`` (scores: ``ml/metrics.py``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepgeo_runner.config.options import run_options
from deepgeo_runner.config.schema import DataConfig, RunConfig
from deepgeo_runner.config.stages import BY_NAME, STAGES, Stage, cycle, is_assess_only
from deepgeo_runner.config.validate import uses_datamodule
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.core.console import tidy_third_party_logging
from deepgeo_runner.core.errors import RunInterrupted
from deepgeo_runner.core.ranks import global_rank
from deepgeo_runner.core.signals import SignalStop
from deepgeo_runner.pipeline import inputs, learning, predicting, splitting, stage_options
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.preflight import preflight
from deepgeo_runner.pipeline.record import stages_to_run, write_run_provenance
from deepgeo_runner.pipeline.run_state import RunState

log = logging.getLogger(__name__)


def class_table(data: DataConfig) -> ClassTable:
    """The run's classes: ids 1..N (background 0 first when learned), or a datamodule's mask values."""
    return ClassTable.of(data.classes, data.class_colors, data.background == "class",
                         mask_values=uses_datamodule(data))


def run(cfg: RunConfig | Any, run_dir: str | Path, checked: bool = False) -> Artifacts:
    """Run the configured stages of the cycle; return what they produced.

    ``cfg`` is the typed options, or a composed config (turned into them by :func:`run_options`).
    ``checked``: the caller already ran :func:`~deepgeo_runner.pipeline.preflight.preflight` on this
    run directory (the ``deepgeo`` command does, before torch loads); otherwise it runs here, once.
    One :class:`~deepgeo_runner.core.signals.SignalStop` covers the whole run, data stages included,
    and every way it ends is recorded in provenance.json: ``completed``, ``interrupted``
    (SIGINT/SIGTERM) or ``failed`` with the error.
    """
    run_dir = Path(run_dir)
    tidy_third_party_logging()
    opts = run_options(cfg, run_dir)
    with SignalStop() as stop:
        if not checked:
            preflight(opts, run_dir)  # writable run/cache folders, leftovers of killed runs removed, inputs opened
        art = Artifacts()
        classes = class_table(opts.data)
        try:
            run_stages(opts, run_dir, art, classes, stop)
        except BaseException as exc:
            record_end(opts, run_dir, art, classes, exc)
            raise
    return art


def record_end(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, exc: BaseException) -> None:
    """Say in provenance.json why the run did not complete, so it never stays "running"."""
    if isinstance(exc, SystemExit) and not exc.code:
        return
    interrupted = isinstance(exc, (RunInterrupted, KeyboardInterrupt))
    art.status = "interrupted" if interrupted else "failed"
    art.error = str(exc) or type(exc).__name__
    if global_rank() != 0:
        return
    try:
        write_run_provenance(opts, run_dir, art, classes)
    except Exception as write_error:  # e.g. the full disk that stopped the run: keep its message
        log.warning("could not record the run's status in provenance.json: %s", write_error)


def run_stages(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, stop: SignalStop) -> None:
    """The stages in their order; ``art.status`` is "completed" when they all ran."""
    rank = global_rank()
    stages = stages_to_run(opts)
    cache_dir = Path(opts.paths.cache_dir).expanduser()
    if rank == 0:
        write_run_provenance(opts, run_dir, art, classes)
    run = RunState(opts, run_dir, cache_dir, art, classes, stages, rank, stop=stop)
    if uses_datamodule(opts.data):
        log.info("data=%s: running stages %s on %s", opts.data.name, stages, opts.data.datamodule["_target_"])
        run.timed("fit_test", learning.learn_datamodule_stage, opts, run_dir, art, classes, stages, stop=stop)
    elif stages == ["predict"] and opts.predict.image:  # a checkpoint applied to a new scene
        if rank == 0:
            run.timed("predict", predicting.apply_checkpoint_stage, opts, run_dir, art)
    elif is_assess_only(stages):  # an existing class map assessed: no scene, no training
        if rank == 0:
            run_tasks(run, [BY_NAME[s] for s in STAGES if s in stages])
    else:
        scene_stages(run)
    art.status = "completed"
    if rank == 0:
        write_run_provenance(opts, run_dir, art, classes)


def scene_stages(run: RunState) -> None:
    """The cycle on a scene: its inputs, then the stage table's rows that the listed stages need, in
    the order they need each other (rasterize and the split, the check, then what ``stages`` asks for)."""
    run.split_polygons = splitting.read_split_polygons(run.opts)  # a bad split file fails before any raster work
    run.timed("inputs", inputs.resolve_inputs, run.opts, run.cache_dir, run.art)
    inputs.check_split_scenes(run.opts, run.art)
    run_tasks(run, cycle(run.stages))


def task_of(stage: Stage) -> Callable[[RunState], None]:
    """What runs a row of the stage table: its task (``module:function`` under deepgeo_runner.pipeline), or,
    for a plain row, its stage function (under deepgeo_runner.stages) fed by its options adapter."""
    if not stage.run:
        module, name = stage.task.split(":")
        return getattr(importlib.import_module(f"deepgeo_runner.pipeline.{module}"), name)
    module, name = stage.run.split(":")
    function = getattr(importlib.import_module(f"deepgeo_runner.stages.{module}"), name)
    adapter = getattr(stage_options, stage.options) if stage.options else None

    def task(run: RunState) -> None:
        """The row's options adapter gives the stage function's keyword arguments; the result, timed under
        the stage's name, goes to the row's artifact (or ``art.stage_outputs``)."""
        result = run.timed(stage.name, function, **(adapter(run) if adapter is not None else {}))
        if stage.artifact:
            setattr(run.art, stage.artifact, result)
        else:
            run.art.stage_outputs[stage.name] = result

    return task


def run_tasks(run: RunState, rows: list[Stage]) -> None:
    """Each row's task once, in order (stages that share a task, like fit/test/predict, run together)."""
    done = set()
    for stage in rows:
        key = stage.task or stage.name
        if key in done or (stage.first_rank and run.rank != 0):
            continue
        done.add(key)
        task_of(stage)(run)
