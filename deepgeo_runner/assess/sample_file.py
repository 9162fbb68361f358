"""The sample as files an analyst labels in a GIS, and the labels read back.

``assessment_sample.gpkg`` holds one point per sample unit at its pixel's centre, in the map's
CRS, with its ``stratum``, ``map_class`` and an empty ``ref_class`` to fill; the ``.csv`` twin holds
the same table with ``x``/``y`` columns (for a spreadsheet, or a GIS's delimited-text import).
Either file, labelled, is read back by :func:`read_labels`, which places each point on the map's
grid again from its coordinates, so moving columns around or dropping some does no harm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from affine import Affine

from deepgeo_runner.core.atomic import atomic_path, write_text_atomic
from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.raster_io import Grid

COLUMNS = ("point_id", "stratum", "map_class", "ref_class", "row", "col", "x", "y", "pixel_area_ha")
CSV_SUFFIXES = (".csv", ".txt")


def pixel_centres(transform: Affine, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates of the centres of pixels (rows, cols)."""
    x, y = transform * (cols + 0.5, rows + 0.5)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def sample_table(grid: Grid, rows: np.ndarray, cols: np.ndarray, strata: Sequence[str], map_classes: Sequence[str],
                 pixel_area_ha: np.ndarray, ref_classes: Sequence[str | None] | None = None) -> gpd.GeoDataFrame:
    """One point per sample unit at its pixel centre, in the map's CRS."""
    x, y = pixel_centres(grid.transform, rows, cols)
    table = pd.DataFrame({
        "point_id": np.arange(1, len(rows) + 1),
        "stratum": list(strata),
        "map_class": list(map_classes),
        "ref_class": list(ref_classes) if ref_classes is not None else [None] * len(rows),
        "row": rows.astype(np.int64),
        "col": cols.astype(np.int64),
        "x": x,
        "y": y,
        "pixel_area_ha": pixel_area_ha,
    })
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(x, y), crs=grid.crs)


def write_sample(table: gpd.GeoDataFrame, gpkg_path: str | Path) -> tuple[Path, Path]:
    """``NAME.gpkg`` (layer ``sample``) and ``NAME.csv`` beside it, each written atomically."""
    gpkg_path = Path(gpkg_path)
    with atomic_path(gpkg_path, keep_suffix=True, what="the assessment sample") as tmp:
        table.to_file(tmp, layer="sample", driver="GPKG")
    csv_path = gpkg_path.with_suffix(".csv")
    write_text_atomic(csv_path, pd.DataFrame(table.drop(columns="geometry")).to_csv(index=False))
    return gpkg_path, csv_path


@dataclass
class LabelledSample:
    """The sample units of a labelled file placed on the map's grid."""

    point_id: list[str]
    rows: np.ndarray
    cols: np.ndarray
    ref_class: list[str]
    map_class: list[str] | None  # as the file says, to check it against the map
    stratum: list[str] | None  # as the file says, to check it against the strata


def _text(values: pd.Series) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip() for v in values]


def read_labels(path: str | Path, grid: Grid, key: str = "assess.sample") -> LabelledSample:
    """Read a labelled sample (GeoPackage/any vector of points, or a CSV with x, y in the map's CRS).

    Every row needs a ``ref_class``; rows without one, or off the map's grid, are named in the error.
    """
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{key}='{path}': no such file.")
    if path.suffix.lower() in CSV_SUFFIXES:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in ("x", "y") if c not in table.columns]
        if missing:
            raise InputDataError(f"{key}='{path}' has no column {missing}: a CSV sample needs x and y "
                                 "(pixel centres in the map's CRS), as assessment_sample.csv has.")
        try:
            x, y = table["x"].astype(float).to_numpy(), table["y"].astype(float).to_numpy()
        except ValueError as exc:
            raise InputDataError(f"{key}='{path}': x/y must be numbers ({exc}).") from exc
    else:
        try:
            table = gpd.read_file(path)
        except Exception as exc:  # noqa: BLE001 - GDAL raises several types for unreadable files
            raise InputDataError(f"cannot read {key}='{path}' as a vector file: {exc}") from exc
        if table.crs is None:
            raise InputDataError(f"{key}='{path}' has no CRS: give the points the map's CRS ({grid.crs}).")
        table = table.to_crs(grid.crs)
        if not all(table.geometry.geom_type == "Point"):
            raise InputDataError(f"{key}='{path}': every feature must be a point (one per sample unit).")
        x, y = table.geometry.x.to_numpy(), table.geometry.y.to_numpy()
    if "ref_class" not in table.columns:
        raise InputDataError(f"{key}='{path}' has no column 'ref_class': fill it with the reference class of "
                             f"each point (columns: {[c for c in table.columns if c != 'geometry']}).")
    ids = _text(table["point_id"]) if "point_id" in table.columns else [str(i + 1) for i in range(len(table))]
    cols, rows = ~grid.transform * (x, y)
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    outside = [ids[i] for i in np.flatnonzero((rows < 0) | (rows >= grid.height) | (cols < 0) | (cols >= grid.width))]
    if outside:
        raise InputDataError(f"{key}='{path}': points {_listing(outside)} lie outside the map's grid: "
                             "was the sample drawn from another map?")
    refs = _text(table["ref_class"])
    empty = [ids[i] for i, r in enumerate(refs) if not r]
    if empty:
        raise InputDataError(f"{key}='{path}': {len(empty)} of {len(refs)} points have no ref_class (point_id "
                             f"{_listing(empty)}): label every point, or delete those you cannot label.")
    map_class = _text(table["map_class"]) if "map_class" in table.columns else None
    stratum = _text(table["stratum"]) if "stratum" in table.columns else None
    return LabelledSample(ids, rows, cols, refs, map_class, stratum)


def _listing(ids: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")
