"""The per-pixel train/val/test map of the analysis grid: the user's split polygons, or blocks
dealt class by class (:func:`deepgeo_runner.geo.chips.choose_class_split`), and what shaped it
(for the cache keys of the stages that depend on it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.core.cache import vector_fingerprint
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo import split_vector
from deepgeo_runner.geo.chips import CLASS_SPLIT_VERSION, NO_SPLIT, SPLITS, choose_class_split
from deepgeo_runner.geo.folds import FOLD_VERSION, polygon_fold_map
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.split_vector import rasterize_splits, rasterize_units, require_splits
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.inputs import external_splits, local_splits
from deepgeo_runner.pipeline.stage_options import block_size, fold_of, split_buffer

if TYPE_CHECKING:
    import geopandas as gpd


def read_split_polygons(opts: RunConfig) -> gpd.GeoDataFrame | None:
    """The checked polygons of ``data.split_vector``, or None when the scene is split by blocks."""
    if opts.data.split_vector is None:
        return None
    polygons = split_vector.read_split_polygons(opts.data.split_vector, str(opts.data.split_column))
    clash = sorted(set(external_splits(opts)) & set(polygons[str(opts.data.split_column)]))
    if clash:
        raise ConfigError(
            f"data.split_vector '{opts.data.split_vector}' has {clash} polygons, but data.split_scenes."
            f"{clash[0]} also gives that split: drop those polygons or that scene (one source per split)."
        )
    return polygons


def split_map_of(opts: RunConfig, art: Artifacts, classes: ClassTable,
               polygons: gpd.GeoDataFrame | None = None) -> np.ndarray:
    """Per-pixel split of the analysis grid: the user's polygons, else blocks dealt by class."""
    grid = Grid.of(art.image)
    folds, fold = fold_of(opts.data)
    local = local_splits(opts)  # a split from another scene gets no blocks here
    fractions = [float(f) if s in local else 0.0 for s, f in zip(SPLITS, opts.data.split_fractions, strict=True)]
    if polygons is not None and folds is None:
        split_map = rasterize_splits(polygons, grid)
        require_splits(split_map, local, f"data.split_vector '{opts.data.split_vector}'")
        return split_map
    with rasterio.open(art.labels) as src:
        labels = src.read(1)
    if polygons is not None:  # k-fold over the user's polygons: each polygon is one unit, its split column unused

        return polygon_fold_map(rasterize_units(polygons, grid), labels, classes.ids, len(polygons), folds, fold,
                                fractions, int(opts.seed), NO_SPLIT)
    return choose_class_split(labels, classes.ids, block_size(opts.data), fractions, int(opts.seed),
                              split_buffer(opts.data), int(opts.data.chip_size), eval_stride=opts.data.eval_stride,
                              min_labelled_fraction=float(opts.data.min_valid_fraction), folds=folds, fold=fold)


def split_payload(opts: RunConfig, art: Artifacts) -> dict[str, Any]:
    """What shaped the split map, for the cache keys of the stages that depend on it."""
    data = opts.data
    if data.split_vector is not None:
        payload = {"vector": vector_fingerprint(data.split_vector), "column": str(data.split_column)}
    else:
        payload = {"block": block_size(data), "fractions": list(data.split_fractions), "seed": int(opts.seed),
                   "by_class": [CLASS_SPLIT_VERSION, art.cache_keys["rasterize"]], "buffer": split_buffer(data),
                   "chip": int(data.chip_size), "eval_stride": data.eval_stride,
                   "min_labelled": float(data.min_valid_fraction)}
    if external_splits(opts):
        payload["external"] = list(external_splits(opts))
    folds, fold = fold_of(data)
    if folds is not None:  # keys of single-split entries stay as they were

        payload["folds"] = {"k": folds, "fold": fold, "v": FOLD_VERSION, "fractions": list(data.split_fractions),
                            "seed": int(opts.seed), "rasterize": art.cache_keys["rasterize"]}
    return payload
