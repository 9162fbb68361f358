"""The cycle: the order of the stages, from a config (or its typed options) to a run directory.

Each stage lives in its own module and takes typed options and plain inputs; this one only
says what runs when. It is safe to run again in the same run directory: Lightning relaunches
the whole command for DDP ranks > 0, so every rank passes through here. Expensive stages come
from the cache (built by rank 0 before the ranks start), and only rank 0 writes files shared
by the run.

Where a change goes (the house):
- a config key or its default: ``config/schema.py`` (the YAML files only say what differs);
- config → options: ``config/options.py``; cross-key checks: ``config/validate.py``;
- the input rasters and analysis grid: ``pipeline/inputs.py``; the split: ``pipeline/splitting.py``;
- the data check: ``pipeline/data_check.py`` (numbers) and ``pipeline/checking.py`` (gathering);
- prepare/rasterize/chips and their cache keys: ``pipeline/cached_stages.py``;
- fit/test and the Trainer: ``pipeline/learning.py``; prediction: ``pipeline/predicting.py``;
- accuracy and area of the map from a sample: ``pipeline/assess.py`` (numbers: ``assess/``);
- provenance: ``pipeline/record.py``; the numeric core: ``geo/``, ``ml/``, ``metrics.py``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepgeo_runner.artifacts import Artifacts
from deepgeo_runner.classes import ClassTable
from deepgeo_runner.config.options import run_options
from deepgeo_runner.config.schema import DataConfig, RunConfig
from deepgeo_runner.config.stages import BY_NAME, STAGES, Stage, cycle, is_assess_only
from deepgeo_runner.config.validate import uses_datamodule
from deepgeo_runner.console import tidy_third_party_logging
from deepgeo_runner.pipeline import inputs, learning, predicting, splitting
from deepgeo_runner.pipeline.record import stages_to_run, write_run_provenance
from deepgeo_runner.pipeline.run_state import RunState
from deepgeo_runner.ranks import global_rank

log = logging.getLogger(__name__)


def class_table(data: DataConfig) -> ClassTable:
    """The run's classes: ids 1..N (background 0 first when learned), or a datamodule's mask values."""
    return ClassTable.of(data.classes, data.class_colors, data.background == "class",
                         mask_values=uses_datamodule(data))


def run(cfg: RunConfig | Any, run_dir: str | Path) -> Artifacts:
    """Run the configured stages of the cycle; return what they produced.

    ``cfg`` is the typed options, or a composed config (turned into them by :func:`run_options`).
    """
    from deepgeo_runner.preflight import preflight

    run_dir = Path(run_dir)
    tidy_third_party_logging()
    opts = run_options(cfg, run_dir)
    preflight(opts, run_dir)  # writable run/cache folders, leftovers of killed runs removed, inputs opened
    rank = global_rank()
    stages = stages_to_run(opts)
    art = Artifacts()
    cache_dir = Path(opts.paths.cache_dir).expanduser()
    classes = class_table(opts.data)
    if rank == 0:
        write_run_provenance(opts, run_dir, art, classes)

    run = RunState(opts, run_dir, cache_dir, art, classes, stages, rank)
    if uses_datamodule(opts.data):
        log.info("data=%s: running stages %s on %s", opts.data.name, stages, opts.data.datamodule["_target_"])
        run.timed("fit_test", learning.learn_datamodule_stage, opts, run_dir, art, classes, stages)
        art.status = "completed"
        if rank == 0:
            write_run_provenance(opts, run_dir, art, classes)
        return art
    if stages == ["predict"] and opts.predict.image:  # a checkpoint applied to a new scene
        if rank == 0:
            run.timed("predict", predicting.apply_checkpoint_stage, opts, run_dir, art)
            art.status = "completed"
            write_run_provenance(opts, run_dir, art, classes)
        return art
    if is_assess_only(stages):  # an existing class map assessed: no scene, no training
        if rank == 0:
            _run_stages(run, [BY_NAME[s] for s in STAGES if s in stages])
            art.status = "completed"
            write_run_provenance(opts, run_dir, art, classes)
        return art
    run.split_polygons = splitting.read_split_polygons(opts)  # a bad split file fails before any raster work
    run.timed("inputs", inputs.resolve_inputs, opts, cache_dir, art)
    inputs.check_split_scenes(opts, art)
    _run_stages(run, cycle(stages))
    if stages == ["check"]:
        if rank == 0:
            write_run_provenance(opts, run_dir, art, classes)
        return art
    art.status = "completed"
    if rank == 0:
        write_run_provenance(opts, run_dir, art, classes)
    return art


def task_of(stage: Stage) -> Callable[[RunState], None]:
    """The task function a row of the stage table names (``module:function`` under deepgeo_runner.pipeline)."""
    module, name = stage.task.split(":")
    return getattr(importlib.import_module(f"deepgeo_runner.pipeline.{module}"), name)


def _run_stages(run: RunState, rows: list[Stage]) -> None:
    """Each row's task once, in order (stages that share a task, like fit/test/predict, run together)."""
    done = set()
    for stage in rows:
        if stage.task in done or (stage.first_rank and run.rank != 0):
            continue
        done.add(stage.task)
        task_of(stage)(run)
