"""Train/val/test splits drawn by the user as polygons (``data.split_vector``).

Blocks are a good default, but an analyst often knows where a fair test area is (another
municipality, a watershed, a later PRODES tile) and draws it. Each polygon names its split in
one column; the polygons are burnt onto the analysis grid into the same per-pixel split map
that :func:`deepgeo_runner.geo.chips.split_blocks` makes (0 train, 1 val, 2 test), and pixels
in no polygon belong to no split (-1), so no chip of any split is cut there. Everything
downstream (training-area statistics, the buffer, the leakage check) is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio.features

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.chips import NO_SPLIT, SPLITS
from deepgeo_runner.geo.raster_io import Grid


def read_split_polygons(path: str | Path, column: str) -> gpd.GeoDataFrame:
    """Read the split polygons and check them before any raster work starts.

    Returns the non-empty polygons with a ``split_id`` column (0 train, 1 val, 2 test).

    Raises:
        InputDataError: unreadable file, no CRS, no such column, or a value other than
            train/val/test (empty values included: every polygon must say its split).
    """
    path = Path(path)
    try:
        layer = gpd.read_file(path)
    except Exception as exc:
        raise InputDataError(f"cannot read data.split_vector '{path}' as a vector file: {exc}") from exc
    if column not in layer.columns:
        columns = [c for c in layer.columns if c != "geometry"]
        raise InputDataError(
            f"data.split_vector '{path}' has no column '{column}' (data.split_column); its columns are "
            f"{columns}. Name the column whose values are {list(SPLITS)}."
        )
    if layer.crs is None:
        raise InputDataError(f"data.split_vector '{path}' has no CRS: set one (e.g. ogr2ogr -a_srs EPSG:XXXX).")
    layer = layer[layer.geometry.notna() & ~layer.geometry.is_empty].copy()
    if layer.empty:
        raise InputDataError(f"data.split_vector '{path}' holds no geometry.")
    values = layer[column]
    unknown = sorted({"(empty)" if v is None or v != v else str(v) for v in values[~values.isin(SPLITS)]})
    if unknown:
        raise InputDataError(
            f"data.split_vector '{path}': column '{column}' holds {unknown}; every polygon must be one of "
            f"{list(SPLITS)} (lower case)."
        )
    layer["split_id"] = values.map({name: i for i, name in enumerate(SPLITS)}).astype(np.int8)
    return layer


def rasterize_splits(polygons: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """The per-pixel split map (H, W) int8 of the polygons on ``grid``; -1 outside them all.

    Polygons are reprojected to the grid's CRS and repaired (``make_valid``: self-intersecting
    rings drawn by hand are common). A pixel belongs to a polygon when its centre does. Where
    polygons of different splits overlap, test wins over val and val over train: a doubtful
    pixel is never given to training.
    """
    layer = polygons.to_crs(grid.crs)
    geoms = layer.geometry.make_valid().to_numpy()
    ids = layer["split_id"].to_numpy()
    order = np.argsort(ids, kind="stable")  # burnt train, val, test: the last burnt wins
    burnt = np.zeros(grid.shape, dtype=np.uint8)
    shapes = [(geoms[i], int(ids[i]) + 1) for i in order if not geoms[i].is_empty]
    if shapes:
        rasterio.features.rasterize(shapes, out=burnt, transform=grid.transform, dtype=np.uint8)
    return burnt.astype(np.int8) + np.int8(NO_SPLIT)


def require_splits(split_map: np.ndarray, needed: Sequence[str], source: str) -> None:
    """Fail early, naming the split and the file, when a needed split has no pixel in the image."""
    present = np.bincount((split_map[split_map >= 0]).ravel(), minlength=len(SPLITS))
    missing = [name for name in needed if present[SPLITS.index(name)] == 0]
    if missing:
        raise InputDataError(
            f"{source}: no polygon of split {missing} covers a pixel centre of the image; each of "
            f"{list(needed)} needs at least one polygon overlapping the scene (check the file's CRS and "
            "extent against the image, e.g. in QGIS)."
        )


def rasterize_units(polygons: gpd.GeoDataFrame, grid: Grid) -> np.ndarray:
    """Each polygon's number (1..n, file order) on ``grid``, 0 outside them all: the units that
    k-fold cross-validation deals (their split column is not used). A pixel belongs to a polygon
    when its centre does; where polygons overlap, the later one in the file wins."""
    layer = polygons.to_crs(grid.crs)
    geoms = layer.geometry.make_valid().to_numpy()
    units = np.zeros(grid.shape, dtype=np.int32)
    shapes = [(g, i + 1) for i, g in enumerate(geoms) if not g.is_empty]
    if shapes:
        rasterio.features.rasterize(shapes, out=units, transform=grid.transform, dtype=np.int32)
    return units
