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

import logging
import time
from pathlib import Path
from typing import Any

from deepgeo_runner.artifacts import Artifacts
from deepgeo_runner.classes import ClassTable
from deepgeo_runner.config.options import run_options
from deepgeo_runner.config.schema import DataConfig, RunConfig
from deepgeo_runner.config.validate import is_assess_only, uses_datamodule
from deepgeo_runner.console import tidy_third_party_logging
from deepgeo_runner.errors import RunInterrupted
from deepgeo_runner.pipeline import assess, cached_stages, checking, inputs, learning, predicting, splitting
from deepgeo_runner.pipeline.record import stages_to_run, write_run_provenance
from deepgeo_runner.ranks import global_rank
from deepgeo_runner.signals import SignalStop

log = logging.getLogger(__name__)


def class_table(data: DataConfig) -> ClassTable:
    """The run's classes: ids 1..N (background 0 first when learned), or a datamodule's mask values."""
    return ClassTable.of(data.classes, data.class_colors, data.background == "class",
                         mask_values=uses_datamodule(data))


def run(cfg: RunConfig | Any, run_dir: str | Path) -> Artifacts:
    """Run the configured stages of the cycle; return what they produced.

    ``cfg`` is the typed options, or a composed config (turned into them by :func:`run_options`).
    One :class:`~deepgeo_runner.signals.SignalStop` covers the whole run, data stages included,
    and every way it ends is recorded in provenance.json: ``completed``, ``interrupted``
    (SIGINT/SIGTERM) or ``failed`` with the error.
    """
    from deepgeo_runner.preflight import preflight

    run_dir = Path(run_dir)
    tidy_third_party_logging()
    opts = run_options(cfg, run_dir)
    with SignalStop() as stop:
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

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        art.timings[name] = round(time.perf_counter() - start, 2)
        return result

    if uses_datamodule(opts.data):
        log.info("data=%s: running stages %s on %s", opts.data.name, stages, opts.data.datamodule["_target_"])
        timed("fit_test", learning.learn_datamodule_stage, opts, run_dir, art, classes, stages, stop=stop)
    elif stages == ["predict"] and opts.predict.image:  # a checkpoint applied to a new scene
        if rank == 0:
            timed("predict", predicting.apply_checkpoint_stage, opts, run_dir, art)
    elif is_assess_only(stages):  # an existing class map assessed: no scene, no training
        if rank == 0:
            timed("assess", assess.assess_stage, opts, run_dir, art, classes)
            if "report" in stages:
                from deepgeo_runner.pipeline.report import write_report

                timed("report", write_report, run_dir, art, classes, opts.data.band_names)
    else:
        scene_stages(opts, run_dir, art, classes, stages, cache_dir, timed, stop)
    art.status = "completed"
    if rank == 0:
        write_run_provenance(opts, run_dir, art, classes)


def scene_stages(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str],
                 cache_dir: Path, timed, stop: SignalStop) -> None:
    """The cycle on a scene: inputs, rasterize, split, check, then what ``stages`` asks for."""
    rank = global_rank()
    split_polygons = splitting.read_split_polygons(opts)  # a bad split file fails before any raster work
    timed("inputs", inputs.resolve_inputs, opts, cache_dir, art)
    inputs.check_split_scenes(opts, art)
    timed("rasterize", cached_stages.rasterize_stage, opts, cache_dir, art, classes)  # cheap; the split needs it
    split_map = timed("split", splitting.split_map_of, opts, art, classes, split_polygons)
    timed("check", checking.check_stage, opts, run_dir, art, classes, split_map, rank)
    if stages == ["check"]:
        return
    if set(stages) - {"check", "rasterize"}:
        timed("prepare", cached_stages.prepare_stage, opts, cache_dir, art, split_map, "prepare" in stages)
    needs_chips = bool({"chips", "fit", "test"} & set(stages))
    if inputs.external_splits(opts) and (needs_chips or "prepare" in stages):
        timed("split_scenes", cached_stages.prepare_split_scenes, opts, cache_dir, art, classes,
              "prepare" in stages, "rasterize" in stages)
    if needs_chips:
        timed("chips", cached_stages.chips_stage, opts, cache_dir, art, classes, split_map, "chips" in stages)
    if {"fit", "test", "predict"} & set(stages):
        timed("fit_test_predict", learning.learn_stage, opts, run_dir, art, classes, stages, rank, stop=stop)
    if rank == 0 and "assess" in stages:
        timed("assess", assess.assess_stage, opts, run_dir, art, classes)
    if rank == 0 and "report" in stages:
        from deepgeo_runner.pipeline.report import write_report

        timed("report", write_report, run_dir, art, classes, opts.data.band_names)
