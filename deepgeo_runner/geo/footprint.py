"""Where a raster lies: CRS, bounds, pixel size and size, plus its outline in longitude/latitude.

A model card records the training scene's footprint (what the model has seen); a STAC item needs
the same footprint in WGS 84.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
from rasterio.warp import transform_bounds


def raster_footprint(path: str | Path) -> dict[str, Any]:
    """``crs`` (WKT-free text: ``EPSG:n`` when it has a code), ``bounds`` [left, bottom, right, top] in
    that CRS, ``resolution`` [x, y] in its units, ``width``/``height`` in pixels, ``dtype`` and
    ``lonlat_bounds`` (None without a CRS)."""
    with rasterio.open(path) as src:
        crs = src.crs
        bounds = [float(v) for v in src.bounds]
        lonlat = None
        if crs is not None:
            try:
                lonlat = [float(v) for v in transform_bounds(crs, "EPSG:4326", *bounds, densify_pts=21)]
            except Exception:  # a CRS PROJ cannot transform: the outline is left out, not the card
                lonlat = None
        epsg = crs.to_epsg() if crs is not None else None
        return {
            "crs": f"EPSG:{epsg}" if epsg else (crs.to_string() if crs is not None else None),
            "bounds": bounds, "resolution": [abs(float(src.res[0])), abs(float(src.res[1]))],
            "width": int(src.width), "height": int(src.height), "dtype": str(src.dtypes[0]),
            "lonlat_bounds": lonlat,
        }


def image_nodata(path: str | Path | None) -> list[float | None] | None:
    """The nodata value the file declares for each band (None where it declares none; NaN as None too,
    since NaN is nodata anyway); None when there is no single file."""
    if path is None or not Path(path).is_file():
        return None
    with rasterio.open(path) as src:
        return [None if v is None or v != v else float(v) for v in src.nodatavals]
