"""The cached data stages from the run's options: prepare, rasterize, the split scenes, chips.

Each builds (or reuses, verified) a content-addressed cache entry keyed by everything that
shaped it; a stage not listed in ``stages`` only reuses. Where a change goes: a new option
that changes a stage's output must enter its payload here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.core.cache import CACHE_VERSION, cache_entry, file_fingerprint, hash_payload, vector_fingerprint
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.geo.nodata import Nodata
from deepgeo_runner.geo.normalize import NormOptions
from deepgeo_runner.geo.scene import date_groups
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.inputs import external_splits, on_analysis_grid
from deepgeo_runner.pipeline.run_state import RunState
from deepgeo_runner.pipeline.splitting import split_map_of, split_payload
from deepgeo_runner.pipeline.stage_options import chip_plan, label_options, norm_options, prepare_extras, stack_dates
from deepgeo_runner.stages.chips import (
    SplitScene,
    build_chip_store,
    load_chip_store,
    target_lut,
)
from deepgeo_runner.stages.labels import rasterize_labels
from deepgeo_runner.stages.prepare import PrepareOptions, load_prepared, prepare_scene


def prepare_stage(opts: RunConfig, cache_dir: Path, art: Artifacts, split_map: np.ndarray, run_stage: bool) -> None:
    pre = opts.preprocessing
    norm = norm_options(opts)
    extras = prepare_extras(opts)
    dates = stack_dates(opts.data)
    payload = {
        "v": CACHE_VERSION, "image": file_fingerprint(art.image), "bands": art.band_names,
        "indices": list(pre.indices), "normalization": pre.normalization,
        "nodata": opts.data.nodata, "nodata_rule": str(opts.data.nodata_rule),
        "split": split_payload(opts, art),
    }
    if len(dates) > 1:  # keys of single-date entries stay as they were
        payload["dates"] = dates
    cog = bool(pre.cog)
    if cog:
        payload["cog"] = True
    if norm != NormOptions(method=norm.method):  # keys of old entries stay valid for defaults
        payload["norm"] = {"per_band": norm.per_band, "range": list(norm.out_range),
                           "percentiles": list(norm.percentiles), "constant": norm.constant,
                           "samples": norm.samples}
    payload.update({k: v for k, v in extras.items() if v is not None})
    art.prepare_extras = {k: v for k, v in extras.items() if v is not None}

    def build(tmp: Path) -> None:
        prepare_scene(art.image, tmp, PrepareOptions(art.band_names, list(pre.indices), norm,
                      nodata=Nodata(opts.data.nodata, str(opts.data.nodata_rule)), dates=dates,
                      window=int(pre.window), cog=cog, **extras), split_map == 0)

    entry, key, reused = cache_entry(cache_dir, "prepare", payload, build, run_stage)
    art.prepared = load_prepared(entry)
    art.cache_keys["prepare"], art.reused["prepare"] = key, reused


def rasterize_stage(opts: RunConfig, cache_dir: Path, art: Artifacts, classes: ClassTable) -> None:
    """The training labels on the analysis grid (the image's), pixels without image data 255."""
    nodata: dict[str, Any] = {"nodata": opts.data.nodata, "nodata_rule": str(opts.data.nodata_rule)}
    if len(stack_dates(opts.data)) > 1:  # the rule holds date by date (keys of single dates unchanged)
        nodata["dates"] = len(stack_dates(opts.data))
    grid_key = hash_payload({"image": file_fingerprint(art.image), **nodata})
    entry, key, reused = burn_labels(opts, cache_dir, classes, art.labels_source, art.image, grid_key, True,
                                      **nodata)
    art.labels = entry / "labels.tif"
    art.cache_keys["rasterize"], art.reused["rasterize"] = key, reused


def burn_labels(opts: RunConfig, cache_dir: Path, classes: ClassTable, labels: Path, prepared: Path, grid_key: str,
                 run_stage: bool, **nodata: Any) -> tuple[Path, str, bool]:
    """The cached label raster of ``labels`` on the grid of ``prepared`` (cache key ``grid_key``);
    ``nodata``: how ``prepared`` marks pixels without data, when it is a raw image."""
    data = opts.data
    labelling = label_options(data)
    payload = {
        "v": CACHE_VERSION, "labels": vector_fingerprint(labels),
        "grid": grid_key, "column": labelling["class_column"],
        "classes": list(data.classes), "values": labelling["class_values"], "colors": classes.colors,
    }
    if labelling["class_groups"] or labelling["others"] != "background" or labelling["all_touched"]:  # old keys stay
        payload.update({"groups": labelling["class_groups"], "others": labelling["others"],
                        "all_touched": labelling["all_touched"]})

    def build(tmp: Path) -> None:
        colors = classes.colors[1:] if classes.background_is_class else classes.colors
        rasterize_labels(labels, prepared, tmp / "labels.tif", list(data.classes), colors, **labelling, **nodata)

    return cache_entry(cache_dir, "rasterize", payload, build, run_stage)


def prepare_split_scenes(opts: RunConfig, cache_dir: Path, art: Artifacts, classes: ClassTable,
                          run_prepare: bool, run_rasterize: bool) -> None:
    """Other scenes of val/test: on the analysis CRS/resolution, prepared with the TRAINING
    scene's statistics (a held-out scene must not be normalized by its own), labels burnt
    with the same class table; each cached under keys that chain to the training scene's."""
    pre, data = opts.preprocessing, opts.data
    extras = {k: v for k, v in prepare_extras(opts).items() if v is not None}
    for split, files in external_splits(opts).items():
        image = on_analysis_grid(opts, cache_dir, art, date_groups(files.image), crop=False, key=f"scene_{split}")
        payload = {
            "v": CACHE_VERSION, "image": file_fingerprint(image), "bands": art.band_names,
            "indices": list(pre.indices), "nodata": data.nodata, "nodata_rule": str(data.nodata_rule),
            "stats_of": art.cache_keys["prepare"], **extras,
        }

        def build(tmp: Path, image: Path = image) -> None:
            prepare_scene(image, tmp, PrepareOptions(art.band_names, list(pre.indices), norm_options(opts),
                          nodata=Nodata(data.nodata, str(data.nodata_rule)), dates=stack_dates(data),
                          window=int(pre.window), **extras), stats=art.prepared.stats)

        entry, key, reused = cache_entry(cache_dir, "prepare", payload, build, run_prepare)
        art.cache_keys[f"prepare_{split}"], art.reused[f"prepare_{split}"] = key, reused
        prepared = load_prepared(entry).path
        entry, key, reused = burn_labels(opts, cache_dir, classes, Path(files.labels), prepared, key, run_rasterize)
        art.cache_keys[f"rasterize_{split}"], art.reused[f"rasterize_{split}"] = key, reused
        art.split_scenes[split] = SplitScene(prepared, entry / "labels.tif", f"data.split_scenes.{split}")


def plan_payload(plan) -> dict:
    """The chip plan as its cache key sees it: the protocol's ring only when set (a ring changes every mask;
    the keys of stores cut without one stay as they were)."""
    payload = dict(plan.__dict__)
    if not payload.get("ignore_ring"):
        payload.pop("ignore_ring", None)
    return payload


def chips_stage(opts: RunConfig, cache_dir: Path, art: Artifacts, classes: ClassTable, split_map: np.ndarray,
                run_stage: bool) -> None:
    plan = chip_plan(opts, classes)
    points = vector_fingerprint(plan.points_path) if plan.points_path else None
    payload = {
        "v": CACHE_VERSION, "prepare": art.cache_keys["prepare"],
        "rasterize": art.cache_keys["rasterize"], "plan": plan_payload(plan), "points": points,
        "split": split_payload(opts, art), "background": opts.data.background,
        "seed": int(opts.seed),  # random training windows depend on it, whatever made the split map
    }
    if art.prepared.stats.per_chip:
        payload["per_chip"] = True
    if art.split_scenes:  # their prepare/rasterize keys hash the other scenes' files
        payload["split_scenes"] = {s: [art.cache_keys[f"prepare_{s}"], art.cache_keys[f"rasterize_{s}"]]
                                   for s in art.split_scenes}

    def build(tmp: Path) -> None:
        build_chip_store(
            art.prepared.path, art.labels, tmp, split_map, plan,
            target_lut(classes.n_classes, classes.background_is_class), len(classes.names),
            int(opts.seed), per_chip=art.prepared.stats.per_chip, split_scenes=art.split_scenes,
        )

    entry, key, reused = cache_entry(cache_dir, "chips", payload, build, run_stage)
    art.chips = load_chip_store(entry)
    art.cache_keys["chips"], art.reused["chips"] = key, reused


def rasterize_task(run: RunState) -> None:
    """Stage ``rasterize`` (every run of a scene: cheap, and the split needs it), then the split map."""
    run.timed("rasterize", rasterize_stage, run.opts, run.cache_dir, run.art, run.classes)
    run.split_map = run.timed("split", split_map_of, run.opts, run.art, run.classes, run.split_polygons)


def prepare_task(run: RunState) -> None:
    """Stage ``prepare`` (built when asked for, else reused), then the val/test scenes of their own."""
    run.timed("prepare", prepare_stage, run.opts, run.cache_dir, run.art, run.split_map, run.builds("prepare"))
    if external_splits(run.opts) and (run.runs("chips") or run.builds("prepare")):
        run.timed("split_scenes", prepare_split_scenes, run.opts, run.cache_dir, run.art, run.classes,
                  run.builds("prepare"), run.builds("rasterize"))


def chips_task(run: RunState) -> None:
    """Stage ``chips``: built when asked for, else reused."""
    run.timed("chips", chips_stage, run.opts, run.cache_dir, run.art, run.classes, run.split_map, run.builds("chips"))
