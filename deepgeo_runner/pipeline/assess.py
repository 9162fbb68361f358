"""Stage ``assess``: accuracy and error-adjusted area of a class map from a stratified random sample.

1. The strata (the map classes, or ``assess.strata``) are counted and measured in hectares.
2. Without a labelled sample, a sample is designed (size from ``assess.target_se``, allocation,
   the run's seed) and written to ``assessment_sample.gpkg``/``.csv`` at pixel centres, with an
   empty ``ref_class`` for an analyst to fill in a GIS — or filled here from ``assess.reference``,
   read like the training labels (``data.class_column``, ``data.classes``, ...).
3. With reference classes (from that layer, or ``assess.sample=labelled.gpkg``), the estimators of
   :mod:`deepgeo_runner.assess.estimate` give ``assessment.json``.

:func:`assess_map` is the library entry point; :func:`assess_stage` is the runner's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from deepgeo_runner.assess.design import allocate, sample_size, select_ordinals
from deepgeo_runner.assess.estimate import Assessment, Estimate, StratifiedSample, assess_sample
from deepgeo_runner.assess.sample_file import read_labels, sample_table, write_sample
from deepgeo_runner.assess.scan import Census, MapLayers, row_bands
from deepgeo_runner.config.schema import AUTO_REFERENCE, DEMO_REFERENCE, AssessConfig, DataConfig, RunConfig
from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.rasterize import BACKGROUND, NODATA, LabelSource
from deepgeo_runner.ml.metrics import strict_json
from deepgeo_runner.pipeline.inputs import demo_reference
from deepgeo_runner.pipeline.run_state import RunState

log = logging.getLogger(__name__)

SAMPLE_FILE = "assessment_sample.gpkg"
RESULT_FILE = "assessment.json"
_CLASS_TAG = re.compile(r"^class_(\d+)$")


def assess_stage(opts: RunConfig, run_dir: Path, art: Any, classes: ClassTable) -> Path | None:
    """The runner's call: the map is ``assess.map``, else this run's prediction."""
    map_path = Path(opts.assess.map) if opts.assess.map else (art.prediction or run_dir / "prediction.tif")
    if not Path(map_path).is_file():
        raise InputDataError(f"assess: no class map at '{map_path}': give assess.map=MAP.tif, or run predict first.")
    options = opts.assess
    if options.reference == DEMO_REFERENCE:  # the demo's truth, generated beside the demo scene
        reference = demo_reference(Path(opts.paths.cache_dir).expanduser(), opts.data)
        options = replace(options, reference=str(reference))
    return assess_map(map_path, run_dir, options, opts.data, int(opts.seed), classes)


def value_names(path: Path, fallback: ClassTable | None = None) -> dict[int, str]:
    """Class (or stratum) names by raster value: the ``class_<id>`` tags deepgeo-runner writes into
    its class maps, else ``fallback``'s table (the run's ``data.classes``)."""
    with rasterio.open(path) as src:
        tags, nodata = src.tags(), src.nodata
    names = {int(m.group(1)): v for k, v in tags.items() if (m := _CLASS_TAG.match(k))}
    names = {k: v for k, v in names.items() if nodata is None or k != nodata}
    if not names and fallback is not None:
        names = dict(zip(fallback.ids, fallback.names, strict=True))
    return names


@dataclass
class _Units:
    """Sample units on the grid, with their stratum and map values and their reference names."""

    rows: np.ndarray
    cols: np.ndarray
    strata: np.ndarray  # stratum values
    map_values: np.ndarray
    ref_names: list[str | None]  # None: no reference class (unlabelled)


def assess_map(map_path: str | Path, out_dir: str | Path, options: AssessConfig, data: DataConfig, seed: int,
               classes: ClassTable | None = None) -> Path | None:
    """Design (or read) a sample of ``map_path`` and, with reference classes, write ``assessment.json``.

    Returns the path of ``assessment.json``, or None when only the sample to label was written.
    ``options.reference='auto'`` (the default) is no reference layer here: the run resolves it to the
    demo's truth on the built-in demo (:func:`~deepgeo_runner.config.schema.assess_reference`).
    """
    if options.reference == AUTO_REFERENCE:
        options = replace(options, reference=None)
    map_path, out_dir = Path(map_path), Path(out_dir)
    classes = classes or ClassTable.of(data.classes, data.class_colors, data.background == "class")
    reference = _ReferenceLabels(options.reference, map_path, data) if options.reference else None
    layers = MapLayers(map_path, options.strata, reference.labelled if reference else None)
    census = layers.census()
    if not census.strata:
        raise InputDataError(f"assess.map '{map_path}' has no pixel with data (inside assess.strata).")
    names = value_names(map_path, classes)
    map_names = {v: names.get(v, f"class_{v}") for v in census.map_values}
    stratum_names = ({v: map_names[v] for v in census.strata} if options.strata is None else
                     {v: value_names(Path(options.strata)).get(v, str(v)) for v in census.strata})
    design: dict[str, Any] = {"map": str(map_path), "strata": str(options.strata or "map classes"),
                              **layers.area.describe(), "total_area_ha": census.total_area_ha}
    if options.sample:
        units = _read_sample(options, layers, map_names, stratum_names, classes)
        design.update({"labels": f"labelled sample {options.sample}"})
    else:
        units, planned = _draw_sample(options, layers, census, stratum_names, seed)
        design.update(planned)
        if reference is not None:
            units.ref_names = reference.names_at(units.rows, units.cols)
            design["labels"] = f"reference layer {options.reference}"
            design["population"] = "map pixels where the reference layer has a class"
        table = sample_table(layers.grid, units.rows, units.cols, [stratum_names[v] for v in units.strata],
                             [map_names[v] for v in units.map_values], layers.area.row_ha[units.rows],
                             units.ref_names if reference is not None else None)
        gpkg, csv = write_sample(table, out_dir / SAMPLE_FILE)
        if reference is None:
            log.info("assess: %d sample points in %s (and %s): fill ref_class (QGIS: toggle editing), then run "
                     "stages=[assess] assess.map=%s assess.sample=%s", len(units.rows), gpkg, csv.name, map_path, gpkg)
            return None
    labelled = np.array([r is not None for r in units.ref_names], dtype=bool)
    if not labelled.all():
        log.warning("assess: %d of %d sample points have no reference class and are left out",
                    int((~labelled).sum()), len(labelled))
    design["unlabelled_points"] = int((~labelled).sum())
    class_order = list(dict.fromkeys([map_names[v] for v in census.map_values]
                                     + [r for r in units.ref_names if r is not None]))
    result = _analyse(units, labelled, census, class_order, map_names, stratum_names, layers, design)
    path = write_text_atomic(out_dir / RESULT_FILE, strict_json(result))
    oa = result["overall_accuracy"]
    log.info("assess: overall accuracy %s (95 %%), %d points; %s", plus_minus(oa["estimate"], oa["se"]),
             int(labelled.sum()), path)
    return path


def plus_minus(estimate: float | None, se: float | None) -> str:
    """'0.912 ± 0.021' (the 95 % half-width), '1.000 ± 0' for a zero SE (a stratum sampled
    completely, a perfect sample): a zero must not read as a missing value; 'n/a' where undefined."""
    if estimate is None:
        return "n/a"
    if se is None:
        return f"{estimate:.3f} ± n/a"
    return f"{estimate:.3f} ± {1.96 * se:.3f}" if se > 0 else f"{estimate:.3f} ± 0"


def _conjectured(options: AssessConfig, names: list[str]) -> list[float]:
    """The user's accuracy conjectured for each stratum (one value, or a mapping by name)."""
    ua = options.users_accuracy
    if not hasattr(ua, "get"):
        return [float(ua)] * len(names)
    missing = [n for n in names if n not in ua]
    if missing:
        raise InputDataError(f"assess.users_accuracy={dict(ua)} names no value for the strata {missing}: give one "
                             f"for each of {names}, or a single value.")
    return [float(ua[n]) for n in names]


def _draw_sample(options: AssessConfig, layers: MapLayers, census: Census, stratum_names: dict[int, str],
                 seed: int) -> tuple[_Units, dict[str, Any]]:
    """The stratified random sample of the design, and the design's record."""
    names = [stratum_names[v] for v in census.strata]
    weights = census.stratum_area_ha / census.total_area_ha
    conjectured = _conjectured(options, names)
    planned = sample_size(weights, conjectured, options.target_se)
    total = int(options.sample_size or planned)
    sizes = allocate(total, census.stratum_pixels, options.allocation, options.min_per_stratum)
    rows, cols = layers.pixels_of(census.strata, select_ordinals(census.stratum_pixels, sizes, seed))
    map_values, strata, _ = layers.values_at(rows, cols)
    record = {
        "sample_size": int(sizes.sum()),
        "sample_size_from_target_se": planned,
        "target_se": options.target_se,
        "users_accuracy_conjectured": dict(zip(names, conjectured, strict=True)),
        "allocation": str(options.allocation),
        "min_per_stratum": options.min_per_stratum if options.allocation == "min_per_stratum" else None,
        "seed": seed,
    }
    return _Units(rows, cols, strata, map_values, [None] * len(rows)), record


def _read_sample(options: AssessConfig, layers: MapLayers, map_names: dict[int, str],
                 stratum_names: dict[int, str], classes: ClassTable) -> _Units:
    """The analyst's labelled sample, placed on the map and checked against it."""
    key = "assess.sample"
    labelled = read_labels(options.sample, layers.grid, key)
    map_values, strata, valid = layers.values_at(labelled.rows, labelled.cols)
    off = [labelled.point_id[i] for i in np.flatnonzero(~valid)]
    if off:
        raise InputDataError(f"{key}='{options.sample}': points {off[:12]} lie on pixels without data in the map "
                             "(or the strata): was the sample drawn from another map?")
    if labelled.map_class is not None:
        wrong = [labelled.point_id[i] for i, (v, said) in enumerate(zip(map_values, labelled.map_class, strict=True))
                 if said and said != map_names.get(int(v))]
        if wrong:
            raise InputDataError(f"{key}='{options.sample}': at points {wrong[:12]} the map's class differs from the "
                                 f"file's map_class: the sample was drawn from another map than assess.map.")
    if labelled.stratum is not None:
        wrong = [labelled.point_id[i] for i, (v, said) in enumerate(zip(strata, labelled.stratum, strict=True))
                 if said and said != stratum_names.get(int(v))]
        if wrong:
            raise InputDataError(f"{key}='{options.sample}': at points {wrong[:12]} the stratum differs from the "
                                 f"file's stratum column: analyse the sample with the strata it was drawn from "
                                 f"(assess.strata={options.strata or 'null: the map classes'} now).")
    known = list(dict.fromkeys(list(map_names.values()) + list(classes.names)))
    unknown = [(pid, r) for pid, r in zip(labelled.point_id, labelled.ref_class, strict=True) if r not in known]
    if unknown:
        shown = ", ".join(f"{pid}: {r!r}" for pid, r in unknown[:12])
        raise InputDataError(f"{key}='{options.sample}': {len(unknown)} points have a ref_class that is no class of "
                             f"the map ({shown}); ref_class must be one of {known}.")
    return _Units(labelled.rows, labelled.cols, strata, map_values, list(labelled.ref_class))


class _ReferenceLabels:
    """A reference layer read like the training labels (each pixel's label as rasterize burns it).

    Where it has no class (its nodata, or outside its polygons with ``data.background=ignore``) no
    reference class is known: those pixels are left out of the population, so the estimates refer
    to the area the reference covers rather than to a sample thinned where it is silent.
    """

    def __init__(self, reference: str, map_path: Path, data: DataConfig) -> None:
        self.source = LabelSource(reference, Grid.of(map_path), data.class_column, data.classes, data.class_values,
                                  data.all_touched, data.class_groups, str(data.other_classes))
        self.names: dict[int, str] = dict(enumerate(data.classes, start=1))
        if str(data.background) == "class":
            self.names[BACKGROUND] = "background"
        self.lut = np.zeros(256, dtype=bool)
        self.lut[list(self.names)] = True

    def labelled(self, window: Window) -> np.ndarray:
        """True where the layer gives a class in ``window``."""
        return self.lut[self.source.burn(window)]

    def names_at(self, rows: np.ndarray, cols: np.ndarray) -> list[str | None]:
        """The reference class name at each pixel (None where it has none)."""
        values = np.full(len(rows), NODATA, dtype=np.int64)
        for win, idx, band_cols, band_rows in row_bands(rows, cols, self.source.grid.width, self.source.grid.height):
            values[idx] = self.source.burn(win)[band_rows, band_cols]  # one burn per band of points
        return [self.names.get(int(v)) if v != NODATA else None for v in values]


def _analyse(units: _Units, labelled: np.ndarray, census: Census, class_order: list[str],
             map_names: dict[int, str], stratum_names: dict[int, str], layers: MapLayers,
             design: dict[str, Any]) -> dict[str, Any]:
    """assessment.json's content from the labelled units."""
    unsampled = sorted(set(census.strata) - set(np.unique(units.strata[labelled]).tolist()))
    if unsampled:
        raise InputDataError(f"assess: the strata {[stratum_names[v] for v in unsampled]} hold pixels but no labelled "
                             "sample point, so their area cannot be estimated: label points there, or draw a new "
                             "sample.")
    stratum_index = {v: h for h, v in enumerate(census.strata)}
    class_index = {name: k for k, name in enumerate(class_order)}
    sample = StratifiedSample(
        stratum=np.array([stratum_index[int(v)] for v in units.strata[labelled]], dtype=np.int64),
        map_class=np.array([class_index[map_names[int(v)]] for v in units.map_values[labelled]], dtype=np.int64),
        ref_class=np.array([class_index[r] for r, keep in zip(units.ref_names, labelled, strict=True) if keep],
                           dtype=np.int64),
        unit_area=layers.area.row_ha[units.rows[labelled]],
        stratum_pixels=census.stratum_pixels,
    )
    result: Assessment = assess_sample(sample, len(class_order))
    total = census.total_area_ha
    mapped = dict.fromkeys(class_order, 0.0)
    for v, area in zip(census.map_values, census.map_area_ha, strict=True):
        mapped[map_names[v]] += float(area)
    per_class = {}
    for k, name in enumerate(class_order):
        area = result.area_share[k]
        per_class[name] = {
            "mapped_area_ha": mapped[name],
            "area_ha": _scaled(area.value, total),
            "area_se_ha": _scaled(area.se, total),
            "area_ci95_ha": area.ci95(total),
            **_accuracy("users_accuracy", result.users[k]),
            **_accuracy("producers_accuracy", result.producers[k]),
            "sample_points_mapped": int(result.counts[k].sum()),
            "sample_points_reference": int(result.counts[:, k].sum()),
        }
    sizes = sample.stratum_sizes
    design.setdefault("sample_size", int(sizes.sum()))
    design["strata_sizes"] = {
        stratum_names[v]: {"pixels": int(census.stratum_pixels[h]), "area_ha": float(census.stratum_area_ha[h]),
                           "weight": float(census.stratum_area_ha[h] / total), "sample": int(sizes[h])}
        for h, v in enumerate(census.strata)}
    design["estimator"] = ("stratified ratio estimators of Stehman (2014), = Olofsson et al. (2014) eqs. 2-10 when "
                           "the strata are the map classes; 95 % intervals: estimate ± 1.96 SE")
    return {
        "overall_accuracy": {"estimate": result.overall.value, "se": result.overall.se, "ci95": result.overall.ci95()},
        "per_class": per_class,
        "error_matrix": {"classes": class_order, "rows": "map class", "columns": "reference class",
                         "area_proportions": result.error_matrix, "sample_counts": result.counts},
        "design": design,
    }


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _accuracy(key: str, estimate: Estimate) -> dict[str, Any]:
    return {key: estimate.value, f"{key}_se": estimate.se, f"{key}_ci95": estimate.ci95()}


def assess_task(run: RunState) -> None:
    """Stage ``assess``: the map's accuracy and area from a reference sample."""
    run.timed("assess", assess_stage, run.opts, run.run_dir, run.art, run.classes)
