"""Stage ``rasterize``: ground truth onto the prepared grid, as a colour-tabled label GeoTIFF."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from deepgeo_runner.geo.raster_io import Grid, valid_mask, write_raster
from deepgeo_runner.geo.rasterize import NODATA, class_colormap, read_labels

log = logging.getLogger(__name__)


def rasterize_labels(
    labels: str | Path,
    prepared: str | Path,
    out_path: str | Path,
    classes: Sequence[str],
    class_colors: Sequence[str],
    class_column: str = "class",
    class_values: Sequence[int] | None = None,
) -> Path:
    """Write ``labels.tif``: 0 background, 1..N classes, 255 where the image has no data."""
    with rasterio.open(prepared) as src:
        grid = Grid(src.crs, src.transform, src.width, src.height)
        valid = valid_mask(src.read(), src.nodata)
    ids = read_labels(labels, grid, class_column, classes, class_values)
    ids[~valid] = NODATA
    counts = np.bincount(ids.ravel(), minlength=256)
    for class_id, name in enumerate(classes, start=1):
        log.info("rasterize: %s → id %d, %d px", name, class_id, counts[class_id])
        if counts[class_id] == 0:
            log.warning("rasterize: class '%s' has no labelled pixel inside the image", name)
    tags = {f"class_{i}": name for i, name in enumerate(classes, start=1)}
    tags["class_0"] = "background"
    return write_raster(out_path, ids, grid, NODATA, ["class"], class_colormap(class_colors), tags)
