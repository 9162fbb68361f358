"""Ground truth onto the image grid: vector polygons or a label raster → class ids.

Encoding of the label raster: 0 background (outside every class of interest), 1..N the
classes of interest in configured order, 255 nodata (no image data or no label data).
Where polygons of several classes overlap, the class listed last in ``classes`` wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
from rasterio.warp import Resampling, reproject

from deepgeo_runner.errors import InputDataError
from deepgeo_runner.geo.raster_io import Grid

BACKGROUND = 0
NODATA = 255
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


def _match_values(classes: Sequence[str], class_values: Sequence[int] | None) -> list:
    if class_values is not None and len(class_values) != len(classes):
        raise InputDataError(
            f"data.class_values has {len(class_values)} values for {len(classes)} data.classes; "
            "give one value per class, in the same order."
        )
    return list(class_values) if class_values is not None else list(classes)


def rasterize_vector(
    path: str | Path,
    grid: Grid,
    class_column: str,
    classes: Sequence[str],
    class_values: Sequence[int] | None = None,
    all_touched: bool = False,
) -> np.ndarray:
    """Burn the polygons of each class of interest onto ``grid`` as uint8 class ids.

    The layer is reprojected to the grid's CRS and invalid geometries are repaired, so
    that a shapefile from another tool or projection lines up without manual work.
    """
    path = Path(path)
    try:
        layer = gpd.read_file(path)
    except Exception as exc:
        raise InputDataError(f"cannot read labels '{path}' as a vector file: {exc}") from exc
    if class_column not in layer.columns:
        raise InputDataError(
            f"labels '{path}' have no column '{class_column}' (data.class_column). "
            f"Columns: {[c for c in layer.columns if c != 'geometry']}."
        )
    if layer.crs is None:
        raise InputDataError(f"labels '{path}' have no CRS: set one (e.g. with ogr2ogr -a_srs).")
    layer = layer[layer.geometry.notna() & ~layer.geometry.is_empty]
    layer = layer.to_crs(grid.crs)
    layer["geometry"] = layer.geometry.make_valid()
    values = _match_values(classes, class_values)
    source = layer[class_column]
    if class_values is None:
        source = source.astype(str)
    present = set(source.unique().tolist())
    if not present & set(values):
        raise InputDataError(
            f"none of the classes {values} appears in column '{class_column}' of '{path}'; "
            f"its values are {sorted(map(str, present))[:20]}. Check data.classes / data.class_values."
        )
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for class_id, value in enumerate(values, start=1):
        shapes = [(geom, class_id) for geom in layer.geometry[source == value]]
        if shapes:
            rasterio.features.rasterize(
                shapes,
                out=labels,
                transform=grid.transform,
                all_touched=all_touched,
                dtype=np.uint8,
            )
    return labels


def read_label_raster(
    path: str | Path,
    grid: Grid,
    n_classes: int,
    class_values: Sequence[int] | None = None,
) -> np.ndarray:
    """Map a label GeoTIFF onto ``grid`` (nearest neighbour) and recode it to class ids.

    Values listed in ``class_values`` (default 1..N) become 1..N, the file's nodata becomes
    255, everything else background 0.
    """
    path = Path(path)
    values = list(class_values) if class_values is not None else list(range(1, n_classes + 1))
    if len(values) != n_classes:
        raise InputDataError(
            f"data.class_values has {len(values)} values for {n_classes} data.classes."
        )
    try:
        with rasterio.open(path) as src:
            source = np.full(grid.shape, np.nan, dtype=np.float64)
            src_nodata = src.nodata
            reproject(
                rasterio.band(src, 1),
                source,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(f"cannot read labels '{path}' as a raster: {exc}") from exc
    labels = np.zeros(grid.shape, dtype=np.uint8)
    for class_id, value in enumerate(values, start=1):
        labels[source == value] = class_id
    missing = ~np.isfinite(source)
    if src_nodata is not None:
        missing |= source == src_nodata
    labels[missing] = NODATA
    return labels


def read_labels(
    path: str | Path,
    grid: Grid,
    class_column: str,
    classes: Sequence[str],
    class_values: Sequence[int] | None = None,
) -> np.ndarray:
    """Labels from either a vector file or a label raster, chosen by the file suffix."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(
            f"labels file not found: '{path}'. Set data.labels to a vector file "
            f"({', '.join(VECTOR_SUFFIXES)}) or a label GeoTIFF."
        )
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return read_label_raster(path, grid, len(classes), class_values)
    if suffix in VECTOR_SUFFIXES or path.is_dir():
        return rasterize_vector(path, grid, class_column, classes, class_values)
    raise InputDataError(
        f"labels '{path}': unknown format '{suffix}'. Expected a vector file "
        f"({', '.join(VECTOR_SUFFIXES)}) or a raster ({', '.join(RASTER_SUFFIXES)})."
    )


def class_colormap(
    colors: Sequence[str], first_id: int = 1
) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table for a class raster: ids first_id.. in the given '#rrggbb' colours."""
    table: dict[int, tuple[int, int, int, int]] = {BACKGROUND: (0, 0, 0, 255), NODATA: (0, 0, 0, 0)}
    for class_id, hex_color in enumerate(colors, start=first_id):
        h = hex_color.lstrip("#")
        table[class_id] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    return table
