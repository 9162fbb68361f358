"""The minimum mapping unit applied to a class map (``predict.mmu_ha``): the map rewritten in place,
sieved so that no patch smaller than the unit is left, the areas before and after returned.

PRODES maps no patch under 6.25 ha; a map compared with it is sieved the same way
(:mod:`deepgeo_runner.geo.sieve`). The pixel area comes from the map's grid
(:func:`deepgeo_runner.assess.area.pixel_area`: exact per row in a geographic CRS). GDAL's sieve counts
pixels, so it runs with the fewest pixels that can reach the unit anywhere on the map (the largest
pixel); where pixel areas vary by row (a geographic CRS), the patches still under the unit in hectares
are then given, one by one, the class that surrounds them most.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from deepgeo_runner.assess.area import pixel_area
from deepgeo_runner.core.atomic import output_errors, temp_path
from deepgeo_runner.geo.raster_io import rewrite_as_cog
from deepgeo_runner.geo.sieve import mmu_pixels, sieve_classes

log = logging.getLogger(__name__)

_EIGHT = np.ones((3, 3), dtype=bool)


def class_areas(classes: np.ndarray, row_ha: np.ndarray, nodata: int | None) -> dict[int, float]:
    """Hectares of each class id of ``classes`` (2-D), pixels weighted by their row's area."""
    out: dict[int, float] = {}
    for value in np.unique(classes):
        if nodata is not None and value == nodata:
            continue
        out[int(value)] = round(float(((classes == value).sum(axis=1) * row_ha).sum()), 4)
    return out


def _merge_small_patches(classes: np.ndarray, row_ha: np.ndarray, mmu_ha: float, nodata: int | None) -> int:
    """In place: every 8-connected patch under ``mmu_ha`` hectares takes the commonest class around it
    (nodata never absorbs a patch and is never changed). Returns the patches merged."""
    pixel_ha = np.broadcast_to(row_ha[:, None], classes.shape)
    merged = 0
    for value in np.unique(classes):
        if nodata is not None and value == nodata:
            continue
        patches, n = ndimage.label(classes == value, structure=_EIGHT)
        if n == 0:
            continue
        area = ndimage.sum_labels(pixel_ha, patches, index=np.arange(1, n + 1))
        for index in np.flatnonzero(area < mmu_ha - 1e-9) + 1:
            patch = patches == index
            ring = ndimage.binary_dilation(patch, structure=_EIGHT) & ~patch
            around = classes[ring]
            if nodata is not None:
                around = around[around != nodata]
            if around.size == 0:
                continue
            classes[patch] = np.bincount(around).argmax()
            merged += 1
    return merged


def sieve_map(prediction: str | Path, mmu_ha: float, cog: bool = True) -> dict:
    """Rewrite ``prediction`` (a class map, uint8) with no patch under ``mmu_ha`` hectares, atomically,
    keeping its CRS, transform, nodata, colour table, tags and band description (a COG with ``cog``).

    Returns what provenance records: the unit, the pixel threshold, the pixel area, the pixels changed
    and each class id's area (hectares) before and after.
    """
    prediction = Path(prediction)
    with rasterio.open(prediction) as src:
        classes = src.read(1)
        crs, transform, nodata = src.crs, src.transform, src.nodata
        try:
            colormap = src.colormap(1)
        except ValueError:  # no colour table
            colormap = None
        tags, description = src.tags(), src.descriptions[0]
    nodata = None if nodata is None else int(nodata)
    areas = pixel_area(crs, transform, classes.shape[0])
    min_pixels = mmu_pixels(mmu_ha, float(areas.row_ha.max()))
    sieved = sieve_classes(classes, min_pixels, nodata)
    merged = 0 if areas.constant else _merge_small_patches(sieved, areas.row_ha, mmu_ha, nodata)
    changed = int((sieved != classes).sum())
    record = {
        "mmu_ha": float(mmu_ha), "min_pixels": int(min_pixels), **areas.describe(),
        "pixels_changed": changed, "area_ha_before": class_areas(classes, areas.row_ha, nodata),
        "area_ha_after": class_areas(sieved, areas.row_ha, nodata),
    }
    if merged:
        record["patches_merged_by_area"] = merged
    profile = {"driver": "GTiff", "width": classes.shape[1], "height": classes.shape[0], "count": 1,
               "dtype": classes.dtype, "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate"}
    if classes.shape[0] >= 256 and classes.shape[1] >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if colormap:
        profile["photometric"] = "palette"
    tmp = temp_path(prediction)
    try:
        with output_errors(prediction):
            with rasterio.open(tmp, "w", **profile) as dst:
                if colormap:  # before the pixels: GDAL cannot change the colour model once writing
                    dst.write_colormap(1, colormap)
                dst.write(sieved, 1)
                if description:
                    dst.set_band_description(1, description)
                dst.update_tags(**tags, MMU_HA=str(mmu_ha))
            if cog:
                rewrite_as_cog(tmp, "nearest")
            os.replace(tmp, prediction)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("predict.mmu_ha=%g: patches under %d pixels sieved, %d pixels changed (%s)", mmu_ha, min_pixels,
             changed, prediction)
    return record
