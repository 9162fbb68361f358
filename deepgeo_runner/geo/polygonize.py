"""Polygons of chosen classes from a class map: the PRODES-style product.

The class map is read in strips of rows and traced with ``rasterio.features.shapes`` in
*pixel* coordinates, where every vertex is an integer, so the pieces of one region cut by a
strip border share their edge exactly and dissolve without slivers. Pieces that touch no
strip border are already whole; only those touching one are unioned per class. Memory is
bounded by a strip of the map plus the polygons themselves (which the GeoPackage holds anyway).

Areas are in hectares, computed in the map's CRS when it is projected, or in a Lambert
azimuthal equal-area projection centred on the scene when the CRS is geographic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window
from shapely.geometry import shape

from deepgeo_runner.core.atomic import atomic_path, write_text_atomic
from deepgeo_runner.core.errors import InputDataError

STRIP_ROWS = 1024


def _class_lookup(tags: dict) -> dict[str, int]:
    """Class name → id from the ``class_<id>`` tags the class map carries."""
    return {name: int(key[len("class_"):]) for key, name in tags.items() if key.startswith("class_")}


def _equal_area_crs(crs: CRS, bounds: tuple[float, float, float, float]) -> CRS:
    """The CRS to measure areas in: ``crs`` itself when projected, else a local LAEA."""
    if crs.is_projected:
        return crs
    lon, lat = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    return CRS.from_proj4(f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m +no_defs")


def _trace(classes_path: Path, ids: Sequence[int], strip_rows: int) -> dict[int, list]:
    """Polygons (pixel coordinates) of each class id, dissolved across strip borders."""
    whole: dict[int, list] = {i: [] for i in ids}
    border: dict[int, list] = {i: [] for i in ids}
    with rasterio.open(classes_path) as src:
        height = src.height
        for r0 in range(0, height, strip_rows):
            r1 = min(r0 + strip_rows, height)
            strip = src.read(1, window=Window(0, r0, src.width, r1 - r0))
            shift = Affine.translation(0, r0)
            for class_id in ids:
                mask = strip == class_id
                if not mask.any():
                    continue
                for geom, _ in rasterio.features.shapes(strip, mask=mask, transform=shift):
                    poly = shape(geom)
                    y0, y1 = poly.bounds[1], poly.bounds[3]
                    touches = (y0 == r0 and r0 > 0) or (y1 == r1 and r1 < height)
                    (border if touches else whole)[class_id].append(poly)
    for class_id, pieces in border.items():
        if pieces:
            merged = shapely.union_all(pieces)
            whole[class_id].extend(shapely.get_parts(merged).tolist())
    return whole


def polygonize_classes(
    classes_path: str | Path,
    out_path: str | Path,
    classes: Sequence[str],
    min_area_ha: float = 0.0,
    strip_rows: int = STRIP_ROWS,
) -> tuple[Path, Path]:
    """Write the polygons of ``classes`` to a GeoPackage and per-class totals to JSON.

    Args:
        classes_path: a class map written by prediction (its ``class_<id>`` tags name the ids).
        out_path: the GeoPackage (layer ``polygons``: class, class_id, area_ha, geometry); the
            totals go beside it (:func:`totals_path`: ``prediction_totals.json``).
        classes: the class names to trace.
        min_area_ha: polygons smaller than this are dropped (and left out of the totals).

    Returns:
        The GeoPackage and the totals file.
    """
    classes_path, out_path = Path(classes_path), Path(out_path)
    with rasterio.open(classes_path) as src:
        lookup = _class_lookup(src.tags())
        crs, transform, bounds = src.crs, src.transform, tuple(src.bounds)
    unknown = [c for c in classes if c not in lookup]
    if unknown:
        raise InputDataError(
            f"predict.polygons names {unknown}, which the class map '{classes_path}' does not hold; "
            f"its classes are {sorted(lookup)}."
        )
    ids = [lookup[c] for c in classes]
    traced = _trace(classes_path, ids, strip_rows)
    names, class_ids, geoms = [], [], []
    for name, class_id in zip(classes, ids, strict=True):
        for poly in traced[class_id]:
            names.append(name)
            class_ids.append(class_id)
            geoms.append(poly)
    coeffs = [transform.a, transform.b, transform.d, transform.e, transform.xoff, transform.yoff]
    geoseries = gpd.GeoSeries([shapely.affinity.affine_transform(g, coeffs) for g in geoms], crs=crs)
    area_ha = geoseries.to_crs(_equal_area_crs(crs, bounds)).area.to_numpy() / 10_000.0
    frame = gpd.GeoDataFrame({"class": names, "class_id": np.asarray(class_ids, dtype=np.int32),
                              "area_ha": area_ha}, geometry=geoseries, crs=crs)
    frame = frame[frame["area_ha"] >= min_area_ha].reset_index(drop=True)
    totals = {
        name: {"class_id": class_id, "polygons": int((frame["class"] == name).sum()),
               "area_ha": float(frame.loc[frame["class"] == name, "area_ha"].sum())}
        for name, class_id in zip(classes, ids, strict=True)
    }
    with atomic_path(out_path, keep_suffix=True) as tmp:  # OGR picks the driver by the suffix
        frame.to_file(tmp, driver="GPKG", layer="polygons")
    totals_file = totals_path(out_path)
    summary = {"min_area_ha": min_area_ha, "crs": str(crs), "classes": totals}
    write_text_atomic(totals_file, json.dumps(summary, indent=2))
    return out_path, totals_file


def totals_path(polygons_path: str | Path) -> Path:
    """``prediction_polygons.gpkg`` → ``prediction_totals.json``."""
    polygons_path = Path(polygons_path)
    stem = polygons_path.stem.removesuffix("_polygons")
    return polygons_path.with_name(f"{stem}_totals.json")
