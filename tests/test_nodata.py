"""Nodata as GDAL decides it: every band nodata, or the file's mask; overridable; strict on request."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from deepgeo_runner.geo.raster_io import mask_source, read_valid, valid_mask
from tests.helpers import write_image


def _stretched(h: int = 16, w: int = 16) -> np.ndarray:
    """uint8 'stretched' red/nir/swir: water has nir = swir = 0 but red > 0; a corner is all 0."""
    data = np.full((3, h, w), 120, dtype=np.uint8)
    data[1:, :, : w // 2] = 0  # water: NIR and SWIR stretched to 0
    data[0, :, : w // 2] = 35
    data[:, :4, :4] = 0  # the real nodata corner: every band 0
    return data


def test_a_value_equal_to_nodata_in_some_bands_is_data():
    data = _stretched()
    valid = valid_mask(data, 0)
    assert valid[8, 2] and valid[8, 12]  # water and land
    assert not valid[:4, :4].any() and valid.sum() == 16 * 16 - 16
    strict = valid_mask(data, 0, rule="any_band")
    assert not strict[8, 2]  # the old rule drops the water
    assert strict.sum() == 16 * 8


def test_per_band_nodata_and_bands_without_nodata():
    data = _stretched()
    # a band without nodata always holds data: nothing is masked under the gdal rule
    assert valid_mask(data, [0, 0, None]).sum() == 16 * 16
    # per band: red 35 is "nodata" only in band 1, not enough under the gdal rule
    assert valid_mask(data, [35, 0, 0]).sum() == 16 * 16 - 16 * 8 + 16  # water (35,0,0) masked, corner kept
    with pytest.raises(Exception, match="3 bands"):
        valid_mask(data, [0, 0])


def _internally_masked(path, data: np.ndarray, masked_cols: int, nodata: float | None = None):
    """A GeoTIFF with an internal mask band hiding its first ``masked_cols`` columns."""
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                           dtype=data.dtype, nodata=nodata, crs="EPSG:32722",
                           transform=rasterio.transform.from_origin(0, 80, 10, 10)) as dst:
            dst.write(data)
            mask = np.full(data.shape[1:], 255, dtype=np.uint8)
            mask[:, :masked_cols] = 0
            dst.write_mask(mask)
    return path


def test_the_files_internal_mask_decides_when_it_has_one(tmp_path):
    path = _internally_masked(tmp_path / "masked.tif", np.full((2, 8, 8), 7, dtype=np.uint8), 3)
    with rasterio.open(path) as src:
        got = read_valid(src, src.read())
        assert "mask band" in mask_source(src)
        # an explicit data.nodata replaces the file's mask
        assert read_valid(src, src.read(), nodata=7).sum() == 0
    assert got[:, :3].sum() == 0 and got[:, 3:].all()


def test_data_nodata_overrides_the_declared_value(tmp_path):
    data = _stretched().astype(np.int16)
    data[:, 12:, 12:] = -1  # the product's real fill
    path = write_image(tmp_path / "declared0.tif", data, nodata=0)
    with rasterio.open(path) as src:
        declared = read_valid(src, src.read())
        override = read_valid(src, src.read(), nodata=-1)
        assert "declared by the file" in mask_source(src) and "overrides" in mask_source(src, -1)
    assert not declared[:4, :4].any() and declared[12:, 12:].all()
    assert override[:4, :4].all() and not override[12:, 12:].any()


def test_a_time_stack_is_judged_date_by_date():
    """A pixel where one date is all fill is nodata, though the other date holds data there."""
    stack = np.array([100, 120, 90, 0, 0, 0], dtype=np.uint16).reshape(6, 1, 1)
    assert valid_mask(stack, 0).all()  # one image of six bands: some data, valid
    assert not valid_mask(stack, 0, dates=2).any()  # two dates of three bands: date 2 missing
    stack[3:, 0, 0] = [5, 0, 0]  # date 2 holds data in one band
    assert valid_mask(stack, 0, dates=2).all()


def test_any_band_keeps_the_files_mask(tmp_path):
    data = np.full((2, 8, 8), 7, dtype=np.uint8)
    data[0, :, 6:] = 0  # one band at nodata on the right
    path = _internally_masked(tmp_path / "masked.tif", data, 2, nodata=0)
    with rasterio.open(path) as src:
        strict = read_valid(src, src.read(), rule="any_band")
    assert not strict[:, :2].any() and not strict[:, 6:].any() and strict[:, 2:6].all()


def test_one_nodata_for_a_mosaic():
    from deepgeo_runner.core.errors import InputDataError
    from deepgeo_runner.geo.nodata import one_nodata

    assert one_nodata([0, 0, 0]) == 0 and one_nodata(None) is None and np.isnan(one_nodata([np.nan, np.nan]))
    with pytest.raises(InputDataError, match=r"one value for every band"):
        one_nodata([0, 255])
