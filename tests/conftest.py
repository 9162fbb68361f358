"""Tiny deterministic geo fixtures made by code: seeded, small, explicit CRS and transform."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely.geometry import Polygon, box

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CRS = "EPSG:32722"
ORIGIN = (600_000.0, 9_600_000.0)
PIXEL = 30.0


def write_image(path: Path, data: np.ndarray, nodata: float | None = -9999.0, crs: str = CRS,
                transform: Affine | None = None) -> Path:
    transform = transform or Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(data)
    return path


def write_tile(path: Path, data: np.ndarray, col: int, row: int, crs: str = CRS) -> Path:
    """A nodata-0 raster on the fixture lattice whose top-left pixel is (row, col) of the fixture grid."""
    t = Affine(PIXEL, 0, ORIGIN[0] + col * PIXEL, 0, -PIXEL, ORIGIN[1] - row * PIXEL)
    return write_image(path, data, nodata=0, transform=t, crs=crs)


def pixel_box(row0: int, col0: int, row1: int, col1: int) -> Polygon:
    """A polygon covering pixel rows [row0, row1) and cols [col0, col1) of the fixture grid."""
    x0, y0 = ORIGIN[0] + col0 * PIXEL, ORIGIN[1] - row0 * PIXEL
    x1, y1 = ORIGIN[0] + col1 * PIXEL, ORIGIN[1] - row1 * PIXEL
    return box(x0, y1, x1, y0)


@pytest.fixture
def tiny_scene(tmp_path: Path) -> dict:
    """A 48×48, 4-band reflectance image and polygons inside, on the edge and outside it.

    Left half 'forest' (high NIR), right half 'clearing' (high red); a nodata corner.
    """
    rng = np.random.default_rng(0)
    h = w = 48
    data = np.empty((4, h, w), dtype=np.float32)
    data[0] = 0.03 + 0.005 * rng.standard_normal((h, w))  # blue
    data[1] = 0.05 + 0.005 * rng.standard_normal((h, w))  # green
    data[2] = np.where(np.arange(w) < 24, 0.03, 0.12)[None, :] + 0.005 * rng.standard_normal((h, w))
    data[3] = np.where(np.arange(w) < 24, 0.35, 0.20)[None, :] + 0.01 * rng.standard_normal((h, w))
    data[:, :4, :4] = -9999.0
    image = write_image(tmp_path / "image.tif", data)
    polygons = gpd.GeoDataFrame(
        {"class": ["forest", "clearing", "clearing", "forest", "water"]},
        geometry=[
            pixel_box(8, 2, 40, 20),     # inside, forest
            pixel_box(8, 28, 40, 46),    # inside, clearing
            pixel_box(-10, 40, 6, 60),   # crosses the scene edge
            pixel_box(100, 100, 120, 120),  # outside the scene
            pixel_box(44, 0, 47, 4),     # a class not asked for
        ],
        crs=CRS,
    )
    labels = tmp_path / "labels.gpkg"
    polygons.to_file(labels, driver="GPKG")
    return {"image": image, "labels": labels, "data": data, "band_names": ["blue", "green", "red", "nir"]}


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or a clear skip when the folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (expected at ../shared/data)")
    return path


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` skip, saying why, on a machine without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
