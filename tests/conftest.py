"""The fixtures every test may ask for: a tiny scene made by code and the config composer.
What tests share besides fixtures is in ``tests/helpers``."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest

from tests.helpers import CRS, compose_config, pixel_box, write_image


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


@pytest.fixture
def compose():
    """``compose(*overrides, hydra_config=False)``: the run config as ``deepgeo OVERRIDES`` composes it,
    the one way tests compose configs (lightning-hydra-template's ``cfg_train_global``, per call)."""
    return compose_config


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: on a busy 2-core machine two threads contend and run many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` skip, saying why, on a machine without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (none here)")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
