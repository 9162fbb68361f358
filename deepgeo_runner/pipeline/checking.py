"""Stage ``check`` from the run's options: gathers what :mod:`deepgeo_runner.stages.data_check` judges (inputs and
their CRSs, stray label values, reflectance, the image profile) and writes the report."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import rasterio

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.geo.raster_io import Grid, read_sample
from deepgeo_runner.geo.rasterize import RASTER_SUFFIXES, class_value_sets
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.inputs import external_splits
from deepgeo_runner.pipeline.run_state import RunState
from deepgeo_runner.pipeline.stage_options import (
    fold_of,
    label_options,
    map_assessment,
    split_buffer,
    split_method,
    stack_dates,
)
from deepgeo_runner.stages import data_check as dc
from deepgeo_runner.stages.drift import profile_of_sample

log = logging.getLogger(__name__)


def check_stage(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, split_map: np.ndarray,
                rank: int) -> None:
    """Stage ``check``: count what each split gets, write ``data_report.json`` and print the table;
    a class no training chip can reach stops the run here (see :mod:`deepgeo_runner.stages.data_check`)."""
    data = opts.data
    grid = Grid.of(art.image)
    inputs = []
    for date, paths in (art.image_sources or {"": [art.image]}).items():
        for path in paths:
            with rasterio.open(path) as src:
                inputs.append(dc.input_record(path, src.crs, grid.crs, "image" + (f" {date}" if date else "")))
    inputs.append(dc.input_record(art.labels_source, dc.vector_crs(art.labels_source), grid.crs, "labels"))
    warnings = dc.reprojection_warnings(inputs)
    nodata = data.nodata
    if art.labels_source.suffix.lower() in RASTER_SUFFIXES:
        labelling = label_options(data)
        values = labelling["class_values"] or list(range(1, len(data.classes) + 1))
        strays = dc.label_raster_strays(art.labels_source, class_value_sets(
            list(data.classes), values, labelling["class_groups"], as_str=False))
        if strays:
            fate = "background (id 0)" if labelling["others"] == "background" else "ignored"
            shown = ", ".join(f"{v:g}: {n} px" for v, n in sorted(strays.items(), key=lambda kv: -kv[1])[:8])
            warnings.append(f"label raster '{art.labels_source}' holds values ({shown}) that are neither a class "
                            f"value (data.class_values {values}) nor its nodata: they were read as {fate}. List them "
                            "in data.class_values/data.class_groups, or declare them nodata (gdal_edit.py -a_nodata).")

    n_dates = max(len(stack_dates(data)), 1)
    sample = read_sample(art.image, nodata, str(data.nodata_rule), n_dates)  # one read: reflectance and profile
    reflectance = dc.reflectance_warning(sample, list(opts.preprocessing.indices), data.scale, data.offset,
                                         art.band_names, n_dates)
    if reflectance:
        warnings.append(reflectance)
    art.input_profile = profile_of_sample(sample, art.band_names)
    with rasterio.open(art.labels) as src:
        labels = src.read(1)
    with rasterio.open(art.image) as src:  # the image's valid pixels, the labels' coverage's denominator
        valid = np.ones(labels.shape, dtype=bool) if (src.height, src.width) == labels.shape else None
    nodata_found = dc.nodata_summary(art.image, nodata, str(data.nodata_rule), dates=n_dates, valid_out=valid)
    layout = dc.SplitLayout(split_map, split_buffer(data), int(data.chip_size), split_method(data), data.eval_stride,
                            float(data.min_valid_fraction), list(external_splits(opts)))
    report = dc.check_data(dc.LabelGrid(labels, classes.names, classes.ids, valid), layout, nodata=nodata_found,
                           inputs=inputs, warnings=warnings, allow_missing_classes=bool(data.allow_missing_classes),
                           image=art.image, map_assessment=map_assessment(opts))
    report.input = art.input_profile
    art.valid_pixels = report.labels.get("valid_pixels")
    art.valid_mask = valid  # the label layout of augment_plan counts coverage on the same pixels
    art.train_class_pixels = dict(report.splits.get("train", {}).get("class_pixels") or {}) or None
    art.labels_sparse = None if "wall_to_wall" not in report.labels else not report.labels["wall_to_wall"]
    art.label_coverage = report.labels.get("coverage_per_class")
    folds, fold = fold_of(data)
    if folds is not None:
        report.labelled["fold"], report.labelled["folds"] = fold, folds
    if rank == 0:
        report.write(run_dir)
        log.info("data check (%s):\n%s", run_dir / dc.REPORT_NAME, report.table())
    report.raise_if_blocking()


def check_task(run: RunState) -> None:
    """Stage ``check``, before any data stage of every run of a scene."""
    run.timed("check", check_stage, run.opts, run.run_dir, run.art, run.classes, run.split_map, run.rank)
